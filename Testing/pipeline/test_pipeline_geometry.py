"""Masks computed in SAT's processed space land back on the same anatomy of the input grid."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.imageio import read_image, validate_image
from SATSegmentLib.preprocess import (
    mask_to_input_grid,
    preprocess,
    reorient_and_resample,
    roi_input_mask,
    roi_to_processed_box,
    to_input_grid,
)


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def round_trip(image, ras_affine, threshold, orientation="RAS"):
    """Threshold the raw intensities in processed space, map back, compare with the rule in input space."""
    grid = preprocess(image, "mri", orientation, ras_affine).grid
    raw, _ = reorient_and_resample(image, orientation, ras_affine)
    (h0, w0, d0), (h1, w1, d1) = grid.crop_start, grid.crop_stop
    processed_mask = raw[h0:h1, w0:w1, d0:d1] > threshold
    mapped = mask_to_input_grid(processed_mask, grid)
    assert mapped.dtype == np.uint8 and mapped.shape == image.GetSize()[::-1]
    out = sitk.GetImageFromArray(mapped)
    out.CopyInformation(image)  # raises if the sizes differ
    expected = sitk.GetArrayViewFromImage(image) > threshold
    return dice(mapped, expected), grid


@pytest.mark.parametrize("name, threshold", [("example_ct.nii.gz", -300), ("example_ct.nii.gz", 150),
                                             ("example_mr_sm.nii.gz", 200), ("example_ct_dicom", -300),
                                             ("example_ct_dicom", 0)])
def test_real_volumes_round_trip(examples_dir, name, threshold):
    image, meta = read_image(examples_dir / name)
    score, grid = round_trip(image, meta["ras_affine"], threshold)
    assert grid.input_size == image.GetSize() and grid.input_direction == image.GetDirection()
    assert score >= 0.95, score


def phantom(size, spacing, direction, origin=(12.0, -30.0, 55.0)):
    """Two ellipsoids defined in physical (LPS) space, sampled on the given grid."""
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3).T
    m = np.asarray(direction).reshape(3, 3) * np.asarray(spacing)
    centre = m @ (np.asarray(size) / 2) + np.asarray(origin)
    p = (m @ idx).T + np.asarray(origin) - centre
    body = ((p / [40, 30, 45]) ** 2).sum(1) < 1
    organ = (((p - [10, 5, 8]) / [12, 9, 15]) ** 2).sum(1) < 1
    values = np.where(organ, 300.0, np.where(body, 80.0, -200.0)).reshape(size)
    image = sitk.GetImageFromArray(values.transpose(2, 1, 0).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    return image


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return tuple((rz @ ry @ rx).ravel())


@pytest.mark.parametrize("direction, spacing, orientation", [
    (rotation(0.35, -0.2, 0.5), (0.9, 1.3, 2.2), "RAS"),          # oblique, anisotropic
    ((1, 0, 0, 0, -1, 0, 0, 0, -1), (1.1, 0.7, 2.5), "RAS"),      # flipped axes
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), (1.5, 0.8, 1.7), "RAS"),         # permuted (sagittal-like)
    ((0, 0, 1, 1, 0, 0, 0, 1, 0), (1.5, 0.8, 1.7), "ASR"),
])
def test_synthetic_oblique_and_flipped_round_trip(direction, spacing, orientation):
    image = validate_image(phantom((70, 60, 44), spacing, direction))
    for threshold in (0, 200):  # body and the small organ
        score, _ = round_trip(image, None, threshold, orientation)
        assert score >= 0.95, (threshold, score)


def test_processed_grid_input_maps_back_exactly():
    """An input already in processed space (RAS, 1x1x3 mm, all > 0) comes back unchanged."""
    rng = np.random.default_rng(0)
    values = rng.uniform(1, 100, (9, 20, 17)).astype(np.float32)  # (z, y, x)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((1.0, 1.0, 3.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    image.SetOrigin((4.0, -2.0, 7.0))
    processed = preprocess(image, "mri")
    assert processed.grid.shape == (17, 20, 9)
    raw, _ = reorient_and_resample(image)
    np.testing.assert_allclose(raw, values.transpose(2, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(to_input_grid(raw, processed.grid), values, rtol=1e-5)
    mask = raw > 50
    np.testing.assert_array_equal(mask_to_input_grid(mask, processed.grid), (values > 50).astype(np.uint8))


def test_roi_box_and_input_mask():
    image = validate_image(phantom((40, 30, 20), (1.0, 1.0, 3.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1), origin=(0.0, 0.0, 0.0)))
    grid = preprocess(image, "mri").grid
    # input voxel (i, j, k) is at RAS (i, j, 3k); ROI x∈[5,10], y∈[2,8], z∈[9,30]
    roi = (10, 2, 9, 5, 8, 30)
    inside = roi_input_mask(roi, grid)
    k, j, i = np.nonzero(inside)
    assert (i.min(), i.max(), j.min(), j.max(), k.min(), k.max()) == (5, 10, 2, 8, 3, 10)
    start, stop = roi_to_processed_box(roi, grid)
    lo = np.array(grid.crop_start)
    assert np.all(np.array(start) + lo <= [5, 2, 3]) and np.all(np.array(stop) + lo >= [11, 9, 11])
