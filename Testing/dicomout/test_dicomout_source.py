"""The source series of DICOM outputs: what it must have (UIDs, one series, a regular grid) and how a mask
is mapped onto its images; every refusal is an InputError that says why and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from SATSegmentLib.dicomout import read_source_series
from SATSegmentLib.errors import InputError


def test_instances_are_ordered_by_position_not_by_file_name(ct_series, independent):
    series = read_source_series(ct_series)
    positions = [float(h.ImagePositionPatient[2]) for h in series.instances]
    assert positions == sorted(positions) and len(positions) == 20  # along the normal (0, 0, 1): foot to head
    assert {str(h.SOPInstanceUID) for h in series.instances} == set(independent.source_headers(ct_series))
    assert series.notes == ()


def test_the_anonymised_series_without_uids_is_refused(examples_dir):
    with pytest.raises(InputError, match="StudyInstanceUID") as info:
        read_source_series(examples_dir / "example_ct_dicom")
    assert "anonymised" in str(info.value) and "-o OUT.seg.nrrd" in info.value.hint


def edited_copy(ct_series, folder, index: int, edit) -> Path:
    """Copy the series to `folder`, change its `index`-th file (by name) with `edit(dataset)`; that file's path."""
    shutil.copytree(ct_series, folder)
    path = sorted(folder.iterdir())[index]
    dataset = pydicom.dcmread(path)
    edit(dataset)
    dataset.save_as(path)
    return path


def test_sop_instance_uids_only_in_the_file_meta_are_used_with_a_note(ct_series, tmp_path):
    folder = tmp_path / "CT"
    edited_copy(ct_series, folder, 0, lambda dataset: delattr(dataset, "SOPInstanceUID"))
    series = read_source_series(folder)
    assert "1 of the 20" in series.notes[0]
    assert {str(h.SOPInstanceUID) for h in series.instances} == {pydicom.dcmread(p).file_meta.MediaStorageSOPInstanceUID
                                                                for p in folder.iterdir()}


def test_a_missing_slice_and_a_second_patient_are_refused(ct_series, tmp_path):
    gap = tmp_path / "gap"
    shutil.copytree(ct_series, gap)
    files = sorted(gap.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    files[9].unlink()
    with pytest.raises(InputError, match="slice 10 of 20 is missing"):  # the image reader's check (dicomseries)
        read_source_series([str(p) for p in files if p.exists()])
    mixed = tmp_path / "mixed"
    edited_copy(ct_series, mixed, 3, lambda dataset: setattr(dataset, "PatientID", "someone else"))
    with pytest.raises(InputError, match="2 patients"):
        read_source_series(mixed)


def test_a_slice_shifted_sideways_by_0_15_mm_is_read_but_not_referenced(ct_series, tmp_path):
    """The image reader allows a tenth of the slice spacing (0.2 mm here); a frame of a SEG or RTSTRUCT must sit
    within a tenth of a pixel of its image (0.1 mm), so a slice shifted 0.15 mm sideways is read, not referenced."""
    from SATSegmentLib.imageio import read_image

    def shift(dataset) -> None:
        dataset.ImagePositionPatient[0] = float(dataset.ImagePositionPatient[0]) + 0.15

    folder = tmp_path / "shifted"
    path = edited_copy(ct_series, folder, 7, shift)
    _, meta = read_image(folder)
    with pytest.raises(InputError, match="not one evenly spaced stack") as info:
        read_source_series(meta["series_order"])
    assert f"{path.name} lies 0.15 voxels from its place" in str(info.value)


def test_a_mask_on_a_reoriented_copy_of_the_grid_comes_back_unchanged(ct_series):
    series = read_source_series(ct_series)
    mask = (np.random.default_rng(0).random((20, 512, 512)) > 0.5).astype(np.uint8)  # frame, row, column
    assert np.array_equal(series.frames(mask, series.affine()), mask)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = 511  # index (x, y, z) of the flipped copy -> (511 - x, 511 - y, z) of the source
    assert np.array_equal(series.frames(mask[:, ::-1, ::-1], series.affine() @ flip), mask)
    swapped = np.eye(4)[[1, 0, 2, 3]]  # x and y exchanged
    assert np.array_equal(series.frames(mask.transpose(0, 2, 1), series.affine() @ swapped), mask)


def test_a_file_or_a_resampled_mask_is_refused(ct_series, tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        read_source_series(tmp_path / "ct.nii.gz")
    series = read_source_series(ct_series)
    affine = series.affine()
    mask = np.zeros((20, 512, 512), np.uint8)
    half = affine.copy()
    half[:3, :3] *= 2  # every other pixel: another grid
    with pytest.raises(InputError, match="not on the grid"):
        series.frames(np.zeros((10, 256, 256), np.uint8), half)
    shifted = affine.copy()
    shifted[:3, 3] += 0.4 * affine[:3, 0]  # 0.4 pixel off
    with pytest.raises(InputError, match="not on the grid"):
        series.frames(mask, shifted)



def test_a_folder_with_two_series_needs_the_series_uid(ct_series, tmp_path):
    folder = tmp_path / "two"
    shutil.copytree(ct_series, folder)
    for path in sorted(ct_series.iterdir()):  # a second series in the same study: same images, other UIDs
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.77.9"
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID + ".9"
        dataset.save_as(folder / f"second-{path.name}")
    with pytest.raises(InputError, match="1.2.826.0.1.3680043.2.1125.77.9"):
        read_source_series(folder)
    chosen = read_source_series(folder, "1.2.826.0.1.3680043.2.1125.77.9")
    assert len(chosen.instances) == 20 and all(str(h.SOPInstanceUID).endswith(".9") for h in chosen.instances)


def test_a_single_image_without_position_is_refused(ct_series, tmp_path):
    """The image reader checks the geometry of two or more files; for one file read_source_series asks it to."""
    path = edited_copy(ct_series, tmp_path / "one", 5, lambda dataset: delattr(dataset, "ImagePositionPatient"))
    with pytest.raises(InputError, match="no valid slice position"):
        read_source_series([path])
    assert len(read_source_series([sorted(ct_series.iterdir())[5]]).instances) == 1
