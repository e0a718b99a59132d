"""`modality_warnings` tells CT from MR and PET intensities on real scans, both ways."""

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.imageio import modality_warnings


@pytest.fixture(scope="module")
def voxels(examples_dir):
    def read(name):
        return sitk.GetArrayFromImage(sitk.ReadImage(str(examples_dir / name))).astype(np.float32)
    return {"ct": read("example_ct.nii.gz"), "ct_sm": read("example_ct_sm.nii.gz"), "mr": read("example_mr_sm.nii.gz")}


@pytest.mark.parametrize("scan, modality, warned", [
    ("ct", "ct", False),
    ("ct_sm", "ct", False),
    ("mr", "mri", False),
    ("mr", "pet", False),
    ("ct", "mri", True),
    ("ct_sm", "pet", True),
    ("mr", "ct", True),  # 1 % of its voxels are at -2 or below: a "no negative values" rule let it pass as CT
])
def test_real_scans(voxels, scan, modality, warned):
    assert bool(modality_warnings(modality, {}, voxels[scan])) == warned


def test_the_ct_warning_says_why(voxels):
    (warning,) = modality_warnings("ct", {}, voxels["mr"])
    assert "0.0% of the voxels are below -500 (air) and 0.0% between -200 and -30 (fat)" in warning
    assert "--modality" in warning


def test_ct_cropped_to_the_abdomen_with_little_air_is_not_warned_about(voxels):
    """Under 0.5 % of this crop is air, so an air-only rule would warn; its fat shows it is CT."""
    crop = voxels["ct_sm"][:, 40:61, 40:82]
    assert np.mean(crop < -500) < 0.005
    assert modality_warnings("ct", {}, crop) == []


def test_normalised_mr_is_not_taken_for_ct(voxels):
    """z-scored intensities sit within a few units of 0: no air, no fat."""
    mr = voxels["mr"]
    assert modality_warnings("ct", {}, (mr - mr.mean()) / mr.std())


@pytest.mark.parametrize("tag, modality", [("MR", "ct"), ("CT", "mri"), ("PT", "ct")])
def test_dicom_header_that_disagrees_is_the_warning(voxels, tag, modality):
    (warning,) = modality_warnings(modality, {"modality": tag}, voxels["ct"])
    assert f"The DICOM header says {tag} but the job runs as {modality.upper()}" in warning


def test_dicom_header_that_agrees_leaves_the_intensity_check(voxels):
    assert modality_warnings("ct", {"modality": "CT"}, voxels["mr"])
    assert modality_warnings("ct", {"modality": "CT"}, voxels["ct"]) == []
