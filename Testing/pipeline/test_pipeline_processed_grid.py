"""`processed_grid_shape` predicts the resampled grid of preprocessing without allocating it."""

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk

from SATSegmentLib.imageio import processed_grid_shape, processed_grid_voxels
from SATSegmentLib.preprocess import reorient_and_resample


def geometry(size, spacing, direction=None, origin=(10.0, -20.0, 30.0)):
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return image


def _oblique():
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    return q


@pytest.mark.parametrize("image", [
    geometry((13, 9, 7), (0.8, 0.8, 2.5)),
    geometry((12, 11, 6), (1.7, 0.6, 4.0), direction=[[0, 0, 1], [-1, 0, 0], [0, -1, 0]]),  # sagittal, flipped
    geometry((9, 14, 8), (1.3, 2.2, 3.1), direction=_oblique()),
])
@pytest.mark.parametrize("orientation", ["RAS", "ASR"])
def test_shape_is_the_one_preprocessing_allocates(image, orientation):
    resampled, _ = reorient_and_resample(image, orientation)
    assert processed_grid_shape(image, orientation) == resampled.shape


def test_shape_follows_an_explicit_ras_affine():
    image = geometry((10, 10, 10), (1.0, 1.0, 1.0))
    affine = np.diag([2.0, 2.0, 6.0, 1.0])
    resampled, _ = reorient_and_resample(image, "RAS", affine)
    assert processed_grid_shape(image, ras_affine=affine) == resampled.shape == (19, 19, 19)


def test_coarse_volume_is_counted_without_allocating_it():
    """100x100x50 voxels at 20 mm: about 41 GB to resample, which the caller should refuse up front."""
    started = time.monotonic()
    voxels = processed_grid_voxels(geometry((100, 100, 50), (20.0, 20.0, 20.0)))
    assert voxels == 1981 * 1981 * 328 and time.monotonic() - started < 5
    assert voxels == math.prod(processed_grid_shape(geometry((100, 100, 50), (20.0, 20.0, 20.0))))
