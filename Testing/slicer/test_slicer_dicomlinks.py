"""What Slicer's DICOM export (QuantitativeReporting's DICOM SEG, SlicerRT's RTSTRUCT) needs from the output
segmentation, on the slicer-core scene: a volume placed in the subject hierarchy as Slicer's DICOM loader
places it (patient, study, series item with the instance UIDs)."""

from __future__ import annotations

import pytest

slicer = pytest.importorskip("slicer")

from SATSegmentSlicerLib import dicomlinks, segments  # noqa: E402

INSTANCE_UIDS = "1.2.826.0.1.3680043.8.498.1 1.2.826.0.1.3680043.8.498.2 1.2.826.0.1.3680043.8.498.3"
REFERENCED = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMReferencedInstanceUIDsAttributeName()


def _fromDicom(scene, volume):
    """Put `volume` in a patient/study as DICOMScalarVolumePlugin does; returns (hierarchy, study item)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Anonymous")
    study = hierarchy.CreateStudyItem(patient, "CT study")
    series = hierarchy.CreateItem(study, volume)
    hierarchy.SetItemUID(series, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMInstanceUIDName(), INSTANCE_UIDS)
    volume.SetAttribute("DICOM.instanceUIDs", INSTANCE_UIDS)
    return hierarchy, study


def test_the_output_of_a_dicom_volume_is_in_its_study_and_references_it(scene, ct_volume):
    hierarchy, study = _fromDicom(scene, ct_volume)
    other = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "elsewhere")
    node = segments.createOutputSegmentation(ct_volume)
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(node), other)
    assert dicomlinks.exportItem(node) == 0  # not yet linked: nothing to export
    assert dicomlinks.linkToSource(node, ct_volume)
    item = hierarchy.GetItemByDataNode(node)
    assert hierarchy.GetItemParent(item) == study == dicomlinks.dicomStudyItem(ct_volume)
    assert hierarchy.GetItemAttribute(item, REFERENCED) == INSTANCE_UIDS  # QuantitativeReporting's examineForExport
    assert node.GetNodeReference("referenceImageGeometryRef") is ct_volume  # its exporter's source volume
    assert dicomlinks.exportItem(node) == item


def test_a_volume_not_from_dicom_gets_the_volume_reference_only(scene, ct_volume):
    node = segments.createOutputSegmentation(ct_volume)
    assert dicomlinks.dicomStudyItem(ct_volume) == 0
    assert not dicomlinks.linkToSource(node, ct_volume)
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is ct_volume
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert hierarchy.GetItemAttribute(hierarchy.GetItemByDataNode(node), REFERENCED) == ""
    assert dicomlinks.exportItem(node) == 0 and dicomlinks.exportItem(None) == 0


def test_instance_uids_without_a_study_are_not_enough(scene, ct_volume):
    ct_volume.SetAttribute("DICOM.instanceUIDs", INSTANCE_UIDS)  # e.g. the volume was moved out of its study
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    hierarchy.CreateItem(hierarchy.GetSceneItemID(), ct_volume)
    node = segments.createOutputSegmentation(ct_volume)
    assert not dicomlinks.linkToSource(node, ct_volume) and dicomlinks.exportItem(node) == 0


def test_why_export_is_unavailable(scene, ct_volume, small_ct):
    node = segments.createOutputSegmentation(ct_volume)
    assert dicomlinks.whyNotExportable(None) == dicomlinks.whyNotExportable(node) == "no_segments"
    node.GetSegmentation().AddEmptySegment("", "liver")
    assert dicomlinks.whyNotExportable(node) == "not_dicom"
    _fromDicom(scene, ct_volume)
    assert dicomlinks.whyNotExportable(node) == "not_linked"  # e.g. made in the Segment Editor on the DICOM volume
    dicomlinks.linkToSource(node, ct_volume)
    assert dicomlinks.whyNotExportable(node) == ""
    node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), small_ct.GetID())
    assert dicomlinks.whyNotExportable(node) == ""  # linked once: the study and UIDs stay with the segmentation
