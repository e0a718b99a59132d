"""The input side of a run: the exported volume keeps voxels and geometry, the modality comes from the
DICOM header, the ROI is expressed in the exported volume's space, and dependencies are checked
without importing them."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from SATSegmentSlicerLib import dependencies, volumes  # noqa: E402


def test_exported_volume_has_the_voxels_and_geometry_of_the_node(ct_volume, ct_path, tmp_path):
    exported = tmp_path / "input.nrrd"
    volumes.exportVolume(ct_volume, str(exported))
    written, original = sitk.ReadImage(str(exported)), sitk.ReadImage(str(ct_path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)


class FakeDicomDatabase:
    def __init__(self, modality: str):
        self.modality = modality
        self.asked = []

    def fileForInstance(self, uid: str) -> str:
        return {"1.2.3": "/dicom/1.dcm"}.get(uid, "")

    def fileValue(self, fileName: str, tag: str) -> str:
        self.asked.append((fileName, tag))
        return self.modality


@pytest.mark.parametrize("dicom, expected", [("CT", "ct"), ("MR", "mri"), ("PT", "pet"), ("US", None), ("", None)])
def test_modality_from_dicom_header(ct_volume, dicom, expected):
    database = FakeDicomDatabase(dicom)
    ct_volume.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert volumes.modalityFromDicom(ct_volume, database) == expected
    assert database.asked == [("/dicom/1.dcm", "0008,0060")]


def test_no_modality_without_dicom(ct_volume):
    assert volumes.modalityFromDicom(ct_volume, FakeDicomDatabase("CT")) is None  # not loaded from DICOM
    ct_volume.SetAttribute("DICOM.instanceUIDs", "9.9.9")
    assert volumes.modalityFromDicom(ct_volume, FakeDicomDatabase("CT")) is None  # instance not in the database
    assert volumes.modalityFromDicom(ct_volume, None) is None  # no DICOM database


def test_roi_is_given_in_the_volume_space(scene, ct_volume):
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenter(10, 20, 30)
    roi.SetSize(40, 50, 60)
    assert volumes.roiBoundsInVolumeSpace(roi, ct_volume) == pytest.approx([-10, -5, 0, 30, 45, 60])
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 100.0)  # the volume is moved 100 mm to the right (R = +x)
    shift.SetMatrixTransformToParent(matrix)
    ct_volume.SetAndObserveTransformNodeID(shift.GetID())
    assert volumes.roiBoundsInVolumeSpace(roi, ct_volume) == pytest.approx([-110, -5, 0, -70, 45, 60])


def test_requirements_are_checked_without_importing(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnumpy>=1.0  # bundled\n\nnumpy>=999\nno-such-package-xyz>=1\n")
    monkeypatch.delitem(sys.modules, "slicerio", raising=False)
    lines = dependencies.readRequirements(requirements) + ["slicerio>=1.0"]
    assert lines == ["numpy>=1.0", "numpy>=999", "no-such-package-xyz>=1", "slicerio>=1.0"]
    assert dependencies.missingRequirements(lines) == ["numpy>=999", "no-such-package-xyz>=1"]
    assert "slicerio" not in sys.modules, "checking a requirement imported the package"
    assert dependencies.torchMissing() is False  # torch 2.x is installed here


def test_device_description_and_memory_needs_next_to_the_device_choice():
    from SATSegmentLib.model import SATConfig
    from SATSegmentLib.model.memory import estimate_run
    from SATSegmentLib.model.plans import BackbonePlan
    from SATSegmentSlicerLib import devices

    described = devices.describeDevices()
    assert described["torch"] and described["cuda"] is bool(described["gpus"])
    needs = devices.memoryNeeds("pro")
    lean_gpu = estimate_run(SATConfig.pro(), BackbonePlan.lean(8), "cuda", "fp16", 1).needed / 1e9
    assert needs["gpu_gb"] == pytest.approx(lean_gpu) and needs["gpu_gb"] < needs["gpu_fastest_gb"] < 34
    small = [{"name": "Quadro P1000", "memory_gb": 4.0}]
    advice = devices.memoryAdvice(small, "pro")
    assert advice["gpu_gb"] == needs["gpu_gb"] and advice["cpu_gb"] == needs["cpu_gb"]
    assert advice["smallGpu"] == small[0]
    assert devices.memoryAdvice([{"name": "RTX 3060", "memory_gb": 12.0}], "pro")["smallGpu"] is None
    assert devices.memoryAdvice(small, None) is None
