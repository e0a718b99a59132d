"""Read one DICOM series from a folder, refusing slices that do not form one regular 3D grid.

SimpleITK's `ImageSeriesReader` stacks whatever files it is given on a uniform grid whose slice
spacing is the distance from the first to the last slice divided by the number of steps. A file
missing from the folder, a file copied twice, a gantry tilt or two acquisitions in one folder
therefore give a volume that looks normal and is wrong: after a missing slice every later slice is
misplaced, and every volume in millilitres is off. So before any pixel is read, each slice header is
checked (GDCM through SimpleITK reads the headers; no other DICOM library is needed):

* the folder holds one series, or the caller chose one by its SeriesInstanceUID;
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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

_SOP_INSTANCE_UID = "0008|0018"
_MODALITY = "0008|0060"
_SERIES_DESCRIPTION = "0008|103e"
_IMAGE_POSITION = "0020|0032"
_IMAGE_ORIENTATION = "0020|0037"
_PIXEL_SPACING = "0028|0030"

_NOT_ONE_VOLUME_HINT = (
    "Keep only the slices of one 3D volume in the folder (a localizer, a reformat or a second "
    "acquisition may have been exported with it), or export the volume again from your viewer."
)
_CORRUPT_FILE_HINT = "The file is corrupt or incomplete; export or copy the series again."
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


@dataclass(frozen=True)
class SeriesOrder:
    """One DICOM series as the image reader stacks it: its slices in order (repeats dropped) and the checks' verdict.

    DICOM outputs reference exactly these files in this order (`dicomout.source`), so the image and the
    SEG/RTSTRUCT written against it can never disagree about which file is slice k.
    """

    series_uid: str | None  # None: files given one by one, not a series chosen in a folder
    slices: tuple[SliceHeader, ...]  # along the slice normal; the image's slice k is slices[k]
    notes: tuple[str, ...] = ()
    geometry_checked: bool = True  # every slice has a position, orientation and spacing, and together one regular grid

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(h.path for h in self.slices)


def read_dicom_series(folder: Path, series_uid: str | None = None) -> tuple[sitk.Image, dict[str, Any]]:
    """Read the DICOM series in `folder` (the one with `series_uid` if several) after checking its geometry.

    Returns the image as SimpleITK reads it and metadata (`format`, `modality`, `series_uid`,
    `n_files`, `notes`, and `series_order`: the `SeriesOrder` the image was stacked in). Raises
    InputError when the folder holds no series, several series and no choice, or slices that do not
    form one regular 3D grid (see the module docstring).
    """
    order = order_series(folder, series_uid)
    image = _read_pixels(folder, order.files)
    modality = order.slices[0].modality.upper() or None
    return image, {"format": "dicom", "modality": modality, "series_uid": order.series_uid, "n_files": len(order.files),
                   "notes": list(order.notes), "series_order": order}


def order_series(folder: Path, series_uid: str | None = None) -> SeriesOrder:
    """The series in `folder` (the one with `series_uid` if several) in slice order, checked as the module docstring says."""
    series = find_series(folder)
    uid = choose_series(folder, series, series_uid)
    return order_files(series[uid], uid)


def order_files(files: Sequence[str], series_uid: str | None = None) -> SeriesOrder:
    """The given DICOM files in slice order, checked as the module docstring says (headers only)."""
    headers = [read_slice_header(str(path)) for path in files]
    ordered, notes = slice_order(headers)
    by_path = {h.path: h for h in headers}
    return SeriesOrder(series_uid, tuple(by_path[path] for path in ordered), tuple(notes), geometry_checked=len(headers) > 1)


def find_series(folder: Path) -> dict[str, tuple[str, ...]]:
    """SeriesInstanceUID → files of every DICOM series directly in `folder`, as GDCM groups them."""
    with itk_warnings_hidden():  # GDCM's "No Series were found" would precede our message
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    if not uids:
        raise InputError(
            f"No DICOM series found in folder {folder}.",
            "Give a folder that directly contains the .dcm files of one series, or a NIfTI/NRRD/MHA file.",
        )
    return {uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def choose_series(folder: Path, series: dict[str, tuple[str, ...]], series_uid: str | None) -> str:
    """The UID of the series to read: the one asked for, or the only one; otherwise an InputError listing them."""
    if series_uid is not None:
        if series_uid.strip() in series:
            return series_uid.strip()
        raise InputError(
            f"Folder {folder} holds no DICOM series with SeriesInstanceUID {series_uid!r}. It holds:\n{_listing(series)}",
            "Pass one of the UIDs listed above with --series.",
        )
    if len(series) == 1:
        return next(iter(series))
    raise InputError(
        f"Folder {folder} holds {len(series)} DICOM series and SAT segments one at a time:\n{_listing(series)}",
        "Choose one with --series UID (a UID listed above), or put each series in its own folder.",
    )


def _listing(series: dict[str, tuple[str, ...]]) -> str:
    """One line per series: description, modality, number of slices and the UID to pass."""
    lines = []
    for uid, files in series.items():
        first = read_slice_header(files[0])
        lines.append(f"  - {first.description or 'no description'} ({first.modality or 'no modality'}, {len(files)} slices): "
                     f"{uid or repr('') + ' (no SeriesInstanceUID)'}")
    return "\n".join(lines)


def read_slice_header(path: str) -> SliceHeader:
    """Read the header of one DICOM file (GDCM, no pixel data, no private tags)."""
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"Cannot read the DICOM header of {path}.", _CORRUPT_FILE_HINT) from None

    def tag(key: str) -> str:
        return reader.GetMetaData(key).strip(" \x00") if reader.HasMetaDataKey(key) else ""

    return SliceHeader(
        path=path,
        size=tuple(reader.GetSize()),
        sop_uid=tag(_SOP_INSTANCE_UID),
        modality=tag(_MODALITY),
        description=tag(_SERIES_DESCRIPTION),
        position=_numbers(tag(_IMAGE_POSITION), 3),
        orientation=_numbers(tag(_IMAGE_ORIENTATION), 6),
        pixel_spacing=_numbers(tag(_PIXEL_SPACING), 2),
    )


def _numbers(value: str, count: int) -> np.ndarray | None:
    """A backslash-separated DICOM decimal string as `count` finite floats, or None if it is not one."""
    try:
        numbers = np.array([float(v) for v in value.split("\\")], dtype=float)
    except ValueError:
        return None
    return numbers if numbers.size == count and np.isfinite(numbers).all() else None


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
        raise InputError(f"Cannot read the pixels of {path}.", _CORRUPT_FILE_HINT) from None


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


def _read_pixels(folder: Path, files: Sequence[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    try:
        with itk_warnings_hidden():  # the geometry was checked above, more precisely than ITK's own warning
            return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Cannot read the DICOM series in {folder}: {itk_error_detail(exc)}",
                         "Check that the series is complete and not corrupt.") from None


def itk_error_detail(exc: BaseException) -> str:
    """The useful line of a SimpleITK exception: ITK messages start with the source location and end with the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextmanager
def itk_warnings_hidden() -> Iterator[None]:
    """Silence ITK's warnings on stderr (they would precede, or repeat, our own clearer messages)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
