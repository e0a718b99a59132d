"""What Slicer's DICOM export needs from the output segmentation of a volume loaded from DICOM.

Slicer's *Export to DICOM* writes DICOM SEG through QuantitativeReporting's DICOMSegmentationPlugin and
RTSTRUCT through SlicerRT's DicomRtImportExportPlugin. Read in their sources:

* DICOMSegmentationPlugin offers a segmentation for export only when its subject hierarchy item has the
  `DICOM.ReferencedInstanceUIDs` attribute (SOP instance UIDs found in Slicer's DICOM database), and writes
  the SEG against the volume its `referenceImageGeometryRef` node reference names (that volume's
  `DICOM.instanceUIDs`);
* SlicerRT exports the items of one study: the segmentation must be in the study of its CT/MR series.

So the module puts the segmentation in the volume's study and sets both references. `dicomSeries` reads the same
links the other way, for a server run: the series a volume was loaded from. Needs only MRML.
"""

from __future__ import annotations

import slicer

INSTANCE_UIDS = "DICOM.instanceUIDs"  # the volume node attribute Slicer's DICOM loader sets
SERIES_UID_TAG = "0020,000E"


def _hierarchy(node: slicer.vtkMRMLNode) -> slicer.vtkMRMLSubjectHierarchyNode | None:
    scene = node.GetScene()
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None


def dicomStudyItem(volumeNode: slicer.vtkMRMLNode | None) -> int:
    """The subject hierarchy study item of a volume loaded from DICOM (it has instance UIDs); 0 otherwise."""
    if volumeNode is None or not volumeNode.GetAttribute(INSTANCE_UIDS):
        return 0
    hierarchy = _hierarchy(volumeNode)
    item = hierarchy.GetItemByDataNode(volumeNode) if hierarchy is not None else 0
    if not item:
        return 0
    return hierarchy.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())


def linkToSource(segmentationNode: slicer.vtkMRMLSegmentationNode, volumeNode: slicer.vtkMRMLScalarVolumeNode) -> bool:
    """Reference `volumeNode` from the segmentation; when it came from DICOM, also put the segmentation in its
    study with the referenced instance UIDs, so Slicer's DICOM export offers DICOM SEG and RTSTRUCT.
    Returns True when the DICOM references were set."""
    segmentationNode.SetNodeReferenceID(segmentationNode.GetReferenceImageGeometryReferenceRole(), volumeNode.GetID())
    study = dicomStudyItem(volumeNode)
    if not study:
        return False
    hierarchy = _hierarchy(segmentationNode)
    item = hierarchy.GetItemByDataNode(segmentationNode) or hierarchy.CreateItem(study, segmentationNode)
    if hierarchy.GetItemParent(item) != study:
        hierarchy.SetItemParent(item, study)
    hierarchy.SetItemAttribute(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMReferencedInstanceUIDsAttributeName(),
                               volumeNode.GetAttribute(INSTANCE_UIDS))
    return True


def exportItem(segmentationNode: slicer.vtkMRMLSegmentationNode | None) -> int:
    """The subject hierarchy item to open Slicer's DICOM export dialog on: the segmentation's, when it is
    linked to a DICOM source (in a study, with referenced instance UIDs); 0 when it cannot be exported."""
    if segmentationNode is None or segmentationNode.GetScene() is None:
        return 0
    hierarchy = _hierarchy(segmentationNode)
    item = hierarchy.GetItemByDataNode(segmentationNode)
    referenced = hierarchy.GetItemAttribute(
        item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMReferencedInstanceUIDsAttributeName()) if item else ""
    study = hierarchy.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()) if item else 0
    return item if referenced and study else 0


def whyNotExportable(segmentationNode: slicer.vtkMRMLSegmentationNode | None) -> str:
    """Why Export to DICOM is unavailable for the segmentation, as a code for the widget's words ('' when it is
    available): 'no_segments', 'not_linked' (its volume came from DICOM, but no result linked it yet) or 'not_dicom'."""
    if segmentationNode is None or segmentationNode.GetScene() is None \
            or not segmentationNode.GetSegmentation().GetNumberOfSegments():
        return "no_segments"
    if exportItem(segmentationNode):
        return ""
    reference = segmentationNode.GetNodeReference(segmentationNode.GetReferenceImageGeometryReferenceRole())
    return "not_linked" if dicomStudyItem(reference) else "not_dicom"


def dicomSeries(volumeNode: slicer.vtkMRMLScalarVolumeNode) -> tuple[str, int] | None:
    """(SeriesInstanceUID, number of instances) of a volume Slicer loaded from DICOM and that is unchanged since
    (its voxels and grid are the series'); None otherwise. The UID is the subject hierarchy's, else the database's."""
    instances = (volumeNode.GetAttribute(INSTANCE_UIDS) or "").split()
    if not instances or volumeNode.GetModifiedSinceRead():
        return None
    hierarchy = _hierarchy(volumeNode)
    item = hierarchy.GetItemByDataNode(volumeNode) if hierarchy is not None else 0
    uid = hierarchy.GetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName()) if item else ""
    database = getattr(slicer, "dicomDatabase", None)
    if not uid and database is not None:
        uid = database.instanceValue(instances[0], SERIES_UID_TAG)
    return (uid, len(instances)) if uid else None
