"""Closed planar contours of mask slices, in patient coordinates, for RTSTRUCT.

Contours are scikit-image's marching squares at the 0.5 level of the binary slice, padded with one empty
pixel so that every contour closes. The line runs half-way between pixel centres inside and outside the
mask, so a pixel centre lies inside the contours exactly when the pixel is in the mask: rasterising the
contours at pixel centres (with holes as separate contours, even-odd) gives the mask back voxel for voxel,
single-pixel structures included, and no vertex lies beyond the outer edge of the image's pixels.
"""

from __future__ import annotations

import numpy as np

DECIMALS = 3  # contour coordinates in mm: a micrometre, far below any pixel size


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a 2D binary mask as (n, 2) arrays of (row, column) pixel indices (first point not
    repeated, collinear points removed). Holes are contours of their own."""
    from skimage.measure import find_contours

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    top, left = rows[0], cols[0]
    window = np.pad(mask[top:rows[-1] + 1, left:cols[-1] + 1] > 0, 1).astype(np.uint8)  # a border of 0: closed contours
    return [_without_collinear(contour[:-1]) + (top - 1, left - 1) for contour in find_contours(window, 0.5)]


def _without_collinear(points: np.ndarray) -> np.ndarray:
    """Drop vertices lying on the straight line between their neighbours (most marching-squares vertices)."""
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[np.abs(turn) > 1e-9]


def contour_data(contour: np.ndarray, instance) -> list[float]:
    """ContourData of one contour on the slice of `instance`: x, y, z patient coordinates (mm), flattened."""
    from highdicom.spatial import ImageToReferenceTransformer

    to_patient = ImageToReferenceTransformer(image_position=instance.ImagePositionPatient,
                                             image_orientation=instance.ImageOrientationPatient,
                                             pixel_spacing=instance.PixelSpacing)
    # highdicom's image coordinates are (column, row) with the centre of the first pixel at (0.5, 0.5)
    points = to_patient(contour[:, ::-1] + 0.5)
    return [float(v) for v in np.round(points, DECIMALS).ravel()]
