"""The input side of a run: the volume written to a file with its geometry, its modality, the ROI."""

from __future__ import annotations

from typing import Protocol

import slicer
import vtk

# DICOM Modality (0008,0060) -> SAT modality
_DICOM_MODALITIES = {"CT": "ct", "MR": "mri", "PT": "pet"}
MODALITY_TAG = "0008,0060"


class DicomDatabase(Protocol):
    def fileForInstance(self, sopInstanceUID: str) -> str: ...
    def fileValue(self, fileName: str, tag: str) -> str: ...


def exportVolume(volumeNode: slicer.vtkMRMLScalarVolumeNode, path: str) -> None:
    """Write the volume's voxels and geometry (IJK to RAS, without parent transforms) to an image file.

    Results come back on this grid, so the output segmentation goes under the volume's transform.
    """
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)  # the worker reads it once; compressing only costs time
    if not storage.WriteData(volumeNode):
        raise OSError(f"Could not write the volume '{volumeNode.GetName()}' to {path}")


def modalityFromDicom(volumeNode: slicer.vtkMRMLNode, database: DicomDatabase | None) -> str | None:
    """'ct', 'mri' or 'pet' from the DICOM Modality of the volume's first instance, else None."""
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if database is None or not uids:
        return None
    fileName = database.fileForInstance(uids[0])
    if not fileName:
        return None
    return _DICOM_MODALITIES.get((database.fileValue(fileName, MODALITY_TAG) or "").strip().upper())


def roiBoundsInVolumeSpace(roiNode: slicer.vtkMRMLMarkupsROINode, volumeNode: slicer.vtkMRMLNode) -> list[float]:
    """The ROI's box as `[x0, y0, z0, x1, y1, z1]` in the volume's own RAS (the exported file's space).

    The worker expects the ROI in the space of the file it reads; both nodes may be under transforms.
    """
    bounds = [0.0] * 6
    roiNode.GetRASBounds(bounds)  # world
    worldToVolume = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, volumeNode.GetParentTransformNode(), worldToVolume)
    corners = [worldToVolume.TransformPoint([bounds[i], bounds[2 + j], bounds[4 + k]])
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    low = [min(corner[axis] for corner in corners) for axis in range(3)]
    high = [max(corner[axis] for corner in corners) for axis in range(3)]
    return [*low, *high]


def fitRoiToVolume(roiNode: slicer.vtkMRMLMarkupsROINode, volumeNode: slicer.vtkMRMLScalarVolumeNode) -> None:
    """Make a new ROI box cover the whole volume (world coordinates), aligned with the volume's axes,
    so the user only has to shrink it."""
    bounds = [0.0] * 6
    volumeNode.GetRASBounds(bounds)
    roiNode.SetCenter([(bounds[2 * axis] + bounds[2 * axis + 1]) / 2 for axis in range(3)])
    roiNode.SetSize([bounds[2 * axis + 1] - bounds[2 * axis] for axis in range(3)])
