"""SAT's official preprocessing (spec §4.3) with the geometry of every step kept, and its inverse.

Forward: reorient to RAS (or ASR), resample to 1x1x3 mm, crop to the bounding box of raw > 0,
normalise intensities. The first three steps are MONAI's own transforms (`Orientation`, `Spacing`,
foreground bounding box), exactly as the official pipeline runs them, so the processed grid is the
official one, including MONAI's corner- versus centre-aligned grid choice for oblique directions.

Inverse: `ProcessedGrid` records the voxel→RAS affine of the resampled grid and the crop box, so any
array in processed space maps back onto the input's own grid through physical space
(`to_input_grid`, `mask_to_input_grid`): crop is undone by zero padding, resampling and reorientation
by trilinear interpolation at the input voxel centres (edge-clamped like MONAI's "border" padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .imageio import LPS_TO_RAS, ras_affine_of

#: Target voxel spacing of SAT's processed space, in mm along the reoriented array axes.
TARGET_SPACING = (1.0, 1.0, 3.0)
#: CT intensity window of the official normalisation.
CT_CLIP = (-500.0, 1000.0)
#: Percentiles clipped for every non-CT modality.
PERCENTILE_CLIP = (0.5, 99.5)

_AXIS_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})
#: nibabel's axis labels (what the official MONAI version used): RAS+ means index grows toward R, A, S.
_NIBABEL_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class ProcessedGrid:
    """Where SAT's processed array lives, relative to the input image.

    `resampled_affine` maps an index of the reoriented, resampled (not yet cropped) array to RAS mm;
    the processed array is `[crop_start:crop_stop]` of that array. The input grid is kept as
    SimpleITK geometry (LPS), so `to_input_grid` can rebuild arrays on exactly that grid.
    """

    input_size: tuple[int, int, int]
    input_origin: tuple[float, float, float]
    input_spacing: tuple[float, float, float]
    input_direction: tuple[float, ...]
    orientation: str
    resampled_shape: tuple[int, int, int]
    resampled_affine: np.ndarray
    crop_start: tuple[int, int, int]
    crop_stop: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (H, W, D) of the processed array."""
        return tuple(int(b - a) for a, b in zip(self.crop_start, self.crop_stop))

    @property
    def affine(self) -> np.ndarray:
        """Voxel index → RAS mm of the processed (cropped) array."""
        shift = np.eye(4)
        shift[:3, 3] = self.crop_start
        return self.resampled_affine @ shift

    def input_lps_affine(self) -> np.ndarray:
        """Input voxel index (SimpleITK x, y, z) → LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.input_direction, dtype=float).reshape(3, 3) * np.asarray(self.input_spacing)
        affine[:3, 3] = self.input_origin
        return affine


@dataclass
class PreprocessedVolume:
    """The normalised processed array (H, W, D float32) and its geometry."""

    array: np.ndarray
    grid: ProcessedGrid


def check_orientation(code: str) -> str:
    """Validate an axis code such as 'RAS' or 'ASR' (one letter of each of R/L, A/P, S/I)."""
    code = str(code).upper()
    if len(code) != 3 or sorted(_pair_index(c) for c in code) != [0, 1, 2]:
        raise InputError(f"Invalid orientation code {code!r}.", "Use 'RAS' (default) or 'ASR' for sagittal scans.")
    return code


def _pair_index(letter: str) -> int:
    for i, pair in enumerate(_AXIS_PAIRS):
        if letter in pair:
            return i
    return -1


def preprocess(
    image: sitk.Image,
    modality: str,
    orientation: str = "RAS",
    ras_affine: np.ndarray | None = None,
) -> PreprocessedVolume:
    """Run SAT's preprocessing on a validated float32 image (see module docstring).

    `ras_affine` overrides the voxel→RAS matrix (the reader passes nibabel's NIfTI affine, which is
    what the official pipeline sees); by default it comes from the SimpleITK geometry.
    """
    orientation = check_orientation(orientation)
    resampled, affine = reorient_and_resample(image, orientation, ras_affine)
    start, stop = foreground_box(resampled)
    cropped = np.ascontiguousarray(resampled[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]])
    resampled_shape = tuple(int(n) for n in resampled.shape)
    del resampled
    grid = ProcessedGrid(
        input_size=tuple(image.GetSize()),
        input_origin=tuple(image.GetOrigin()),
        input_spacing=tuple(image.GetSpacing()),
        input_direction=tuple(image.GetDirection()),
        orientation=orientation,
        resampled_shape=resampled_shape,
        resampled_affine=affine,
        crop_start=start,
        crop_stop=stop,
    )
    return PreprocessedVolume(normalise(cropped, modality), grid)


def sat_resampling(orientation: str = "RAS", lazy: bool = False) -> list:
    """SAT's MONAI resampling: `Orientation(axcodes)` then `Spacing((1, 1, 3), bilinear, border)`; `lazy` only
    tracks the shape and affine (for sizing a volume before resampling it)."""
    from monai.transforms import Orientation, Spacing

    return [Orientation(axcodes=check_orientation(orientation), labels=_NIBABEL_LABELS, lazy=lazy),
            Spacing(pixdim=TARGET_SPACING, mode="bilinear", padding_mode="border", lazy=lazy)]


def reorient_and_resample(
    image: sitk.Image, orientation: str = "RAS", ras_affine: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """MONAI `Orientation(axcodes)` then `Spacing((1, 1, 3), bilinear, border)`, as the official pipeline.

    Returns the (H, W, D) float32 array and its voxel→RAS affine (float64).
    """
    from monai.data import MetaTensor

    affine = ras_affine_of(image) if ras_affine is None else np.asarray(ras_affine, dtype=float)
    voxels = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)  # SimpleITK (z, y, x) → (i, j, k)
    tensor = MetaTensor(np.ascontiguousarray(voxels, dtype=np.float32)[None], affine=affine)
    for transform in sat_resampling(orientation):
        tensor = transform(tensor)
    array = tensor.array[0] if hasattr(tensor, "array") else np.asarray(tensor)[0]
    return np.ascontiguousarray(array, dtype=np.float32), np.asarray(tensor.affine, dtype=float)


def foreground_box(array: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Bounding box [start, stop) of voxels > 0 (MONAI's `CropForeground` default, margin 0)."""
    from monai.transforms.utils import generate_spatial_bounding_box

    check_foreground(array)
    start, stop = generate_spatial_bounding_box(array[None])
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def check_foreground(array: np.ndarray) -> None:
    """Refuse an image without a voxel above 0: SAT's foreground crop would be empty. Resampling cannot
    create such a voxel, so the input image can be checked before any heavy work."""
    if not (np.asarray(array) > 0).any():
        raise InputError(
            "The image has no voxel above 0, so SAT's foreground crop (voxels > 0) is empty.",
            "SAT expects CT in Hounsfield units or MR/PET with a positive signal; check the intensities and rescale slope.",
        )


def check_roi_overlaps(roi_ras: Sequence[float], ras_affine: np.ndarray, size: Sequence[int]) -> None:
    """Refuse an ROI that is not six finite numbers or lies outside the image (its voxel box, in RAS mm)."""
    lo, hi = _roi_corners(roi_ras)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for k in (-0.5, size[2] - 0.5)]).T
    ras = (np.asarray(ras_affine) @ corners)[:3]
    if (hi <= ras.min(axis=1)).any() or (lo >= ras.max(axis=1)).any():
        raise InputError(f"The ROI {tuple(roi_ras)} (RAS mm) lies outside the image.",
                         "Give the ROI corners in RAS millimetres, inside the image (Slicer shows RAS coordinates).")


def normalise(array: np.ndarray, modality: str) -> np.ndarray:
    """CT: clip to [-500, 1000]; others: clip to the 0.5/99.5 percentiles; then z-score (float32 stats)."""
    array = np.asarray(array, dtype=np.float32)
    if str(modality).lower() == "ct":
        low, high = CT_CLIP
    else:
        low, high = np.percentile(array, PERCENTILE_CLIP)
    clipped = np.clip(array, low, high)
    mean, std = np.mean(clipped), np.std(clipped)
    if not std > 0:
        raise InputError(
            "The image is constant inside its foreground, so it cannot be normalised.",
            "Check the image: SAT needs a scan with varying intensities.",
        )
    clipped -= mean
    clipped /= std
    return clipped


def to_input_grid(array: np.ndarray, grid: ProcessedGrid, fill: float = 0.0) -> np.ndarray:
    """Map an (H, W, D) array in processed space onto the input grid, as float32 (z, y, x).

    Outside the crop box the value is `fill`; values are interpolated trilinearly at each input voxel
    centre, with the resampled grid's edges clamped (as MONAI's border padding does forward).
    """
    return _resample_to_input(array, grid, fill, sitk.sitkFloat32)


def mask_to_input_grid(mask: np.ndarray, grid: ProcessedGrid) -> np.ndarray:
    """Map a binary processed-space mask onto the input grid as uint8 (z, y, x).

    The mask is interpolated trilinearly and kept where the interpolated value is >= 0.5, which is
    exact where the grids coincide and gives smooth surfaces when the input is finer than 1x1x3 mm.
    """
    values = _resample_to_input(np.asarray(mask, dtype=np.uint8), grid, 0, sitk.sitkFloat32)
    return (values >= 0.5).astype(np.uint8)


def _resample_to_input(array: np.ndarray, grid: ProcessedGrid, fill: float, pixel_type: int) -> np.ndarray:
    if tuple(array.shape) != grid.shape:
        raise ValueError(f"array shape {array.shape} does not match the processed grid {grid.shape}")
    full = np.full(grid.resampled_shape, fill, dtype=array.dtype)
    (h0, w0, d0), (h1, w1, d1) = grid.crop_start, grid.crop_stop
    full[h0:h1, w0:w1, d0:d1] = array
    # One replicated voxel on every side makes SimpleITK's linear interpolator clamp at the edges.
    padded = np.pad(full, 1, mode="edge")
    del full
    source = sitk.GetImageFromArray(padded.transpose(2, 1, 0))
    del padded
    shift = np.eye(4)
    shift[:3, 3] = -1.0
    _set_geometry(source, LPS_TO_RAS @ grid.resampled_affine @ shift)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(grid.input_size)
    resampler.SetOutputOrigin(grid.input_origin)
    resampler.SetOutputSpacing(grid.input_spacing)
    resampler.SetOutputDirection(grid.input_direction)
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(float(fill))
    resampler.SetOutputPixelType(pixel_type)
    return sitk.GetArrayFromImage(resampler.Execute(source))


def _set_geometry(image: sitk.Image, lps_affine: np.ndarray) -> None:
    columns = lps_affine[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (columns / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in lps_affine[:3, 3]))


def roi_to_processed_box(roi_ras: Sequence[float], grid: ProcessedGrid) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Index bounds [start, stop) in processed space of the smallest box holding an RAS-mm ROI.

    `roi_ras` is (x0, y0, z0, x1, y1, z1) in RAS millimetres (corners in any order).
    """
    lo, hi = _roi_corners(roi_ras)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]).T
    index = (np.linalg.inv(grid.affine) @ corners)[:3]
    start = np.maximum(np.floor(index.min(axis=1)).astype(int), 0)
    stop = np.minimum(np.ceil(index.max(axis=1)).astype(int) + 1, grid.shape)
    if (stop <= start).any():
        raise InputError(
            f"The ROI {tuple(roi_ras)} (RAS mm) does not overlap the scanned body.",
            "Give the ROI corners in RAS millimetres, inside the image (Slicer shows RAS coordinates).",
        )
    return tuple(int(v) for v in start), tuple(int(v) for v in stop)


def roi_input_mask(roi_ras: Sequence[float], grid: ProcessedGrid) -> np.ndarray:
    """Boolean (z, y, x) array on the input grid: True where the voxel centre lies inside the RAS ROI."""
    lo, hi = _roi_corners(roi_ras)
    to_ras = LPS_TO_RAS @ grid.input_lps_affine()
    nx, ny, nz = grid.input_size
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")  # (y, x) layout
    inside = np.empty((nz, ny, nx), dtype=bool)
    for k in range(nz):
        points = to_ras[:3, :3] @ np.stack([i.ravel(), j.ravel(), np.full(i.size, k)]) + to_ras[:3, 3:4]
        ok = ((points >= lo[:, None] - 1e-6) & (points <= hi[:, None] + 1e-6)).all(axis=0)
        inside[k] = ok.reshape(ny, nx)
    return inside


def _roi_corners(roi_ras: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(roi_ras, dtype=float)
    if values.shape != (6,) or not np.isfinite(values).all():
        raise InputError(f"Invalid ROI {tuple(roi_ras)}.", "Give six numbers: x0 y0 z0 x1 y1 z1 in RAS millimetres.")
    a, b = values[:3], values[3:]
    if (a == b).any():
        raise InputError(f"The ROI {tuple(roi_ras)} has zero extent along an axis.", "Give two opposite corners of a box.")
    return np.minimum(a, b), np.maximum(a, b)
