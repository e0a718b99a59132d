"""Fixtures for the Slicer module's tests: a real MRML scene (slicer-core) holding the real sample CT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "SATSegment"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # SATSegmentSlicerLib, as Slicer puts the module folder on sys.path


@pytest.fixture(scope="session")
def segmentation_converters():
    """Register the labelmap/surface conversion rules, as Slicer's Segmentations module does at startup."""
    slicer = pytest.importorskip("slicer", reason="the slicer-core wheel provides Slicer's MRML layer")
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
            factory.RegisterConverterRule(rule())
    return factory


@pytest.fixture
def scene(segmentation_converters):
    import slicer

    return slicer.vtkMRMLScene()


@pytest.fixture
def ct_path(examples_dir: Path) -> Path:
    return examples_dir / "example_ct_sm.nii.gz"


@pytest.fixture
def ct_volume(scene, ct_path):
    """The real CT as a scalar volume node, read by Slicer's own volume storage node."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(ct_path))
    assert storage.ReadData(volume), f"Slicer could not read {ct_path}"
    volume.SetAndObserveStorageNodeID(storage.GetID())
    return volume
