"""Read one DICOM series from a folder, refusing slices that do not form one regular 3D grid.

SimpleITK's `ImageSeriesReader` stacks whatever files it is given on a uniform grid whose slice
spacing is the distance from the first to the last slice divided by the number of steps. A file
missing from the folder, a file copied twice, a gantry tilt or two acquisitions in one folder
therefore give a volume that looks normal and is wrong. So before any pixel is read, the folder must
hold one series (or the caller chose one by its SeriesInstanceUID) and each slice header is read
(GDCM through SimpleITK; no other DICOM library is needed) and checked by `slicegeometry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .slicegeometry import CORRUPT_FILE_HINT, SliceHeader, slice_order

_SOP_INSTANCE_UID = "0008|0018"
_MODALITY = "0008|0060"
_SERIES_DESCRIPTION = "0008|103e"
_IMAGE_POSITION = "0020|0032"
_IMAGE_ORIENTATION = "0020|0037"
_PIXEL_SPACING = "0028|0030"


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
        raise InputError(f"Cannot read the DICOM header of {path}.", CORRUPT_FILE_HINT) from None

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
