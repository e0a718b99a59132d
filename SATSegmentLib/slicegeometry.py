"""Whether the slices of one DICOM series form one regular 3D grid, and their order along it.

After a missing slice every later slice of a uniformly stacked series is misplaced, and every volume in
millilitres is off; so the slice headers are checked before any pixel is stacked:

* every slice has a position and an orientation, and all share one image size, pixel spacing and
  orientation;
* positions projected on the slice normal are distinct: a file repeated at one position (same
  SOPInstanceUID, or identical pixels) is dropped with a note, two different images at one position
  are refused;
* the positions lie along the slice normal (no gantry tilt) and are evenly spaced (no missing slice,
  no varying spacing): on the uniform grid no slice may move more than `MAX_MISPLACEMENT` of a slice
  spacing from where it was acquired.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: On the uniform grid, a slice may sit at most this fraction of the slice spacing from its true position.
MAX_MISPLACEMENT = 0.1
#: A step this many times the typical one means slices are missing there.
GAP_RATIO = 1.5
#: Slices closer than this along the normal (mm) are at the same position.
SAME_POSITION_MM = 0.01

CORRUPT_FILE_HINT = "The file is corrupt or incomplete; export or copy the series again."
_NOT_ONE_VOLUME_HINT = (
    "Keep only the slices of one 3D volume in the folder (a localizer, a reformat or a second "
    "acquisition may have been exported with it), or export the volume again from your viewer."
)
_REGULARIZE = (
    "load the series in 3D Slicer with Application settings > DICOM > Acquisition geometry regularization set to "
    "'harden regularization transform' (it resamples the slices onto a regular grid), save the volume as NRRD or "
    "NIfTI and segment that file."
)
_IRREGULAR_HINT = "To segment it anyway, " + _REGULARIZE


@dataclass(frozen=True)
class SliceHeader:
    """What the series checks need from the header of one DICOM file (read without its pixels)."""

    path: str
    size: tuple[int, ...]  # Columns, Rows (and frames)
    sop_uid: str
    modality: str
    description: str
    position: np.ndarray | None  # ImagePositionPatient (LPS mm)
    orientation: np.ndarray | None  # ImageOrientationPatient: row direction then column direction
    pixel_spacing: np.ndarray | None

    @property
    def name(self) -> str:
        return Path(self.path).name


def slice_order(headers: Sequence[SliceHeader]) -> tuple[list[str], list[str]]:
    """The files of one series in slice order with repeated files dropped, and notes for the user.

    Slices are sorted along the slice normal (as GDCM sorts them). Raises InputError when the slices
    do not form one regular 3D grid; see the module docstring for the rules.
    """
    if len(headers) < 2:
        return [h.path for h in headers], []  # a single (possibly multi-frame) file: nothing to stack
    require_geometry(headers)
    _require_same(headers, "image sizes", lambda h: h.size, show=_show_size)
    _require_same(headers, "pixel spacings", lambda h: h.pixel_spacing, close=_same_vector, show=_mm_values)
    _require_same(headers, "orientations", lambda h: h.orientation, close=_same_vector, show=_show_orientation)
    normal = slice_normal(headers[0].orientation)
    slices = _drop_repeated(sorted(headers, key=lambda h: float(normal @ h.position)), normal)
    if len(slices) > 1:
        offsets = np.array([h.position - slices[0].position for h in slices])
        _require_along_normal(offsets, normal)
        _require_even_spacing(offsets @ normal)
    notes = []
    if len(slices) < len(headers):
        notes.append(
            f"The DICOM series holds {len(headers) - len(slices)} repeated file(s) (the same slice twice, e.g. copied "
            f"twice into the folder); each slice was used once ({len(slices)} slices)."
        )
    return [h.path for h in slices], notes


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal of the slices: row direction × column direction (the direction GDCM sorts along)."""
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def require_geometry(headers: Sequence[SliceHeader]) -> None:
    """Refuse slices without position, orientation or pixel spacing: readers would silently assume 1 mm and axial."""
    lacking = [h for h in headers if not _has_geometry(h)]
    if lacking:
        raise InputError(
            f"{len(lacking)} of the {len(headers)} DICOM files (e.g. {lacking[0].name}) have no valid slice position, "
            "orientation or pixel spacing (ImagePositionPatient, ImageOrientationPatient, PixelSpacing), so where "
            "their voxels lie is unknown.",
            "Export the series again as a standard CT/MR/PET image series (not secondary captures or screenshots), "
            "or convert it to NIfTI/NRRD with the software that made it.",
        )


def _has_geometry(header: SliceHeader) -> bool:
    return (header.position is not None and header.pixel_spacing is not None and header.orientation is not None
            and bool(np.cross(header.orientation[:3], header.orientation[3:]).any()))


def _require_same(
    headers: Sequence[SliceHeader],
    what: str,
    value: Callable[[SliceHeader], Any],
    close: Callable[[Any, Any], bool] = operator.eq,
    show: Callable[[Any], str] = str,
) -> None:
    """Refuse a series whose slices differ in `value` (e.g. image size): they are not one volume."""
    first = value(headers[0])
    odd = [h for h in headers if not close(value(h), first)]
    if odd:
        raise InputError(
            f"The DICOM series mixes {what}: {odd[0].name} has {show(value(odd[0]))} where {headers[0].name} has "
            f"{show(first)} ({len(odd)} of {len(headers)} files differ), so its slices are not one 3D volume.",
            _NOT_ONE_VOLUME_HINT,
        )


def _same_vector(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(np.allclose(a, b, rtol=0, atol=1e-4))


def _drop_repeated(ordered: Sequence[SliceHeader], normal: np.ndarray) -> list[SliceHeader]:
    """Keep one slice per position; refuse two different images at one position."""
    kept = [ordered[0]]
    for header in ordered[1:]:
        if abs(float(normal @ (header.position - kept[-1].position))) > SAME_POSITION_MM:
            kept.append(header)
        elif not _same_slice(kept[-1], header):
            raise InputError(
                f"The DICOM series has two different images at the same position ({kept[-1].name} and {header.name}, "
                f"{_mm(float(normal @ header.position))} along the slice normal): the folder mixes several acquisitions "
                "(time points, echoes, phases or a repeated scan).",
                "Put the slices of one acquisition in a folder of their own (sort by AcquisitionNumber, EchoTime or "
                "TemporalPositionIdentifier), or export the volume you want from your viewer.",
            )
    return kept


def _same_slice(a: SliceHeader, b: SliceHeader) -> bool:
    """Same SOPInstanceUID, or (anonymised files without one) the same pixels."""
    if a.sop_uid and a.sop_uid == b.sop_uid:
        return True
    return np.array_equal(_pixels(a.path), _pixels(b.path))


def _pixels(path: str) -> np.ndarray:
    try:
        return sitk.GetArrayFromImage(sitk.ReadImage(path))
    except RuntimeError:
        raise InputError(f"Cannot read the pixels of {path}.", CORRUPT_FILE_HINT) from None


def _require_along_normal(offsets: np.ndarray, normal: np.ndarray) -> None:
    """Refuse slices shifted sideways along the stack (gantry tilt): a regular grid cannot hold them."""
    along = offsets @ normal
    sideways = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    spacing = along[-1] / (len(along) - 1)
    worst = int(np.argmax(sideways))
    if sideways[worst] > MAX_MISPLACEMENT * spacing:
        tilt = math.degrees(math.atan2(sideways[worst], along[worst]))
        raise InputError(
            f"The slices of the DICOM series are not stacked along their normal: slice {worst + 1} is shifted "
            f"{_mm(sideways[worst])} sideways (a gantry tilt of {tilt:.1f}°). On a regular 3D grid the anatomy "
            "would be sheared.",
            _IRREGULAR_HINT,
        )


def _require_even_spacing(along: np.ndarray) -> None:
    """Refuse missing slices and uneven spacing; `along` holds the sorted, distinct positions on the normal."""
    steps = np.diff(along)
    typical = float(np.median(steps))
    gaps = steps > GAP_RATIO * typical
    if 0 < gaps.sum() <= max(1, len(steps) // 4):  # a few jumps in an otherwise even series: slices are missing
        raise InputError(_missing_slices_message(steps, typical), "Check that every file of the series was copied "
                         "(export it again from the scanner or PACS). If the scan itself has gaps, " + _REGULARIZE)
    uniform = along[-1] / (len(along) - 1)
    misplaced = np.abs(along - uniform * np.arange(len(along)))
    if misplaced.max() > MAX_MISPLACEMENT * uniform:
        raise InputError(
            f"The slice spacing of the DICOM series varies from {_mm(steps.min())} to {_mm(steps.max())}: on a regular "
            f"3D grid some slices would be {_mm(misplaced.max())} from where they were acquired.",
            _IRREGULAR_HINT,
        )


def _missing_slices_message(steps: np.ndarray, typical: float) -> str:
    """E.g. 'slice 11 of 20 is missing: positions jump by 6 mm where the others are 3 mm apart'."""
    missing: list[int] = []
    jumps: list[float] = []
    number = 1  # number of the slice before the current step, counting the missing ones
    for step in steps:
        skipped = max(1, round(step / typical) - 1) if step > GAP_RATIO * typical else 0
        missing.extend(range(number + 1, number + 1 + skipped))
        if skipped:
            jumps.append(float(step))
        number += skipped + 1
    which = f"slice {missing[0]}" if len(missing) == 1 else f"slices {_enumerate(missing)}"
    verb = "is" if len(missing) == 1 else "are"
    return (f"DICOM series: {which} of {number} {verb} missing: positions jump by "
            f"{_enumerate([_mm(j) for j in dict.fromkeys(jumps)])} where the others are {_mm(typical)} apart.")


def _enumerate(items: Sequence[Any], limit: int = 8) -> str:
    words = [str(i) for i in items[:limit]] + (["…"] if len(items) > limit else [])
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _mm(value: float) -> str:
    return f"{round(float(value), 2):g} mm"


def _show_size(size: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in (size if len(size) > 2 and size[2] > 1 else size[:2]))


def _mm_values(values: np.ndarray | None) -> str:
    return "none" if values is None else " x ".join(_mm(v) for v in values)


def _show_orientation(values: np.ndarray | None) -> str:
    return "none" if values is None else "\\".join(f"{v:g}" for v in np.round(values, 4))
