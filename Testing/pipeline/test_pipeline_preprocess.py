"""Preprocessing against MONAI itself (the official pipeline is MONAI) and the spec's formulas."""

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import CropForeground, EnsureChannelFirst, LoadImage, Orientation, Spacing

from SATSegmentLib.errors import InputError
from SATSegmentLib.imageio import read_image
from SATSegmentLib.preprocess import normalise, preprocess


def monai_official(path, orientation="RAS"):
    """LoadImage (nibabel) + EnsureChannelFirst + Orientation + Spacing((1,1,3)) + CropForeground."""
    img = EnsureChannelFirst()(LoadImage(reader="NibabelReader", image_only=True)(str(path)))
    img = Orientation(axcodes=orientation, labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    img = Spacing(pixdim=(1, 1, 3), mode="bilinear")(img)
    return CropForeground()(img)


def assert_matches_monai(path, modality, orientation="RAS"):
    image, meta = read_image(path)
    ours = preprocess(image, modality, orientation, meta["ras_affine"])
    ref = monai_official(path, orientation)
    raw = np.asarray(ref.array[0], dtype=np.float32)
    assert ours.grid.shape == raw.shape
    np.testing.assert_allclose(ours.grid.affine, np.asarray(ref.affine), atol=1e-5)
    np.testing.assert_allclose(ours.array, official_normalisation(raw, modality), atol=1e-5)
    return ours


def official_normalisation(x, modality):
    if modality == "ct":
        x = np.clip(x, -500, 1000)
    else:
        x = np.clip(x, np.percentile(x, 0.5), np.percentile(x, 99.5))
    return (x - np.mean(x)) / np.std(x)


def test_ras_ct_matches_monai_and_size_formula(examples_dir):
    ours = assert_matches_monai(examples_dir / "example_ct.nii.gz", "ct")
    n = (122, 101, 112)
    expected = tuple(round((k - 1) * 3 / t + 1) for k, t in zip(n, (1, 1, 3)))
    assert ours.grid.resampled_shape == expected == (364, 301, 112)
    arr = ours.array
    assert abs(float(arr.mean())) < 1e-4 and abs(float(arr.std()) - 1) < 1e-4


def test_lps_mr_matches_monai(examples_dir):
    ours = assert_matches_monai(examples_dir / "example_mr_sm.nii.gz", "mri")
    assert np.all(np.diag(ours.grid.affine)[:3] == [1, 1, 3])  # RAS+: index grows toward R, A, S


def test_asr_orientation_matches_monai(examples_dir):
    ours = assert_matches_monai(examples_dir / "example_ct_sm.nii.gz", "ct", "ASR")
    a = ours.grid.affine
    assert a[1, 0] > 0 and a[2, 1] > 0 and a[0, 2] > 0  # axis 0 → A, axis 1 → S, axis 2 → R (3 mm)
    assert abs(a[0, 2]) == 3


def _write_nifti(tmp_path, data, affine, name):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _phantom(shape, seed=0):
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    data = 300 * np.exp(-((i - 0.2) ** 2 + j**2 + (k + 0.1) ** 2) * 3) - 100 + rng.normal(0, 5, shape)
    return data.astype(np.float32)


def test_exact_flip_permutation_is_corner_aligned_like_monai(tmp_path):
    affine = np.array([[0, 0, -2.5, 40], [-0.8, 0, 0, 12], [0, 1.3, 0, -7], [0, 0, 0, 1.0]])
    path = _write_nifti(tmp_path, _phantom((30, 25, 12)), affine, "perm.nii.gz")
    ours = assert_matches_monai(path, "ct")
    # reoriented axes: R←input axis 2 (12 x 2.5 mm), A←axis 0 (30 x 0.8), S←axis 1 (25 x 1.3); 28.5 rounds to even
    assert ours.grid.resampled_shape == tuple(round((n - 1) * s / t + 1) for n, s, t in zip((12, 30, 25), (2.5, 0.8, 1.3), (1, 1, 3)))
    corners = [affine @ [i, j, k, 1] for i in (0, 29) for j in (0, 24) for k in (0, 11)]
    first_centre = ours.grid.resampled_affine[:, 3]
    assert min(np.abs(c - first_centre).max() for c in corners) < 1e-6  # corner-aligned grid


@pytest.mark.parametrize("angle, corner_aligned", [(0.3, False), (2e-6, None)])
def test_oblique_and_round_off_directions_follow_monai(tmp_path, angle, corner_aligned):
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.diag([0.9, 1.2, 2.0])
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rot, (-10, 5, 3)
    path = _write_nifti(tmp_path, _phantom((28, 24, 14), seed=1), affine, "oblique.nii.gz")
    ours = assert_matches_monai(path, "mri")
    corners = [affine @ [i, j, k, 1] for i in (0, 27) for j in (0, 23) for k in (0, 13)]
    at_corner = min(np.abs(c - ours.grid.resampled_affine[:, 3]).max() for c in corners) < 1e-4
    if corner_aligned is not None:
        assert at_corner == corner_aligned  # a truly oblique grid is centre-aligned by MONAI


def test_dicom_series_reads_like_a_volume(examples_dir):
    image, meta = read_image(examples_dir / "example_ct_dicom")
    assert meta["modality"] == "CT" and meta["n_files"] == 20
    ours = preprocess(image, "ct", "RAS", meta["ras_affine"])
    sizes = image.GetSize()
    assert ours.grid.resampled_shape == tuple(round((n - 1) * s / t + 1) for n, s, t in zip(sizes, image.GetSpacing(), (1, 1, 3)))
    raw = sitk.GetArrayFromImage(image)
    assert (raw > 0).any()


def test_normalisation_formulas():
    x = np.array([[[-2000, -500, 0, 400, 1000, 3000]]], np.float32)
    ct = normalise(x, "CT")
    clipped = np.clip(x, -500, 1000)
    np.testing.assert_allclose(ct, (clipped - clipped.mean()) / clipped.std(), rtol=1e-6)
    y = np.arange(1000, dtype=np.float32).reshape(10, 10, 10) ** 2
    mr = normalise(y, "mri")
    lo, hi = np.percentile(y, [0.5, 99.5])
    expected = np.clip(y, lo, hi)
    np.testing.assert_allclose(mr, (expected - expected.mean()) / expected.std(), rtol=1e-5, atol=1e-6)


def test_empty_foreground_and_constant_image_are_clear_errors():
    image = sitk.GetImageFromArray(np.full((8, 9, 10), -100, np.float32))
    with pytest.raises(InputError, match="no voxel above 0"):
        preprocess(image, "ct")
    with pytest.raises(InputError, match="constant"):
        normalise(np.ones((3, 3, 3), np.float32), "mri")
    with pytest.raises(InputError, match="orientation"):
        preprocess(image, "ct", orientation="RAR")
