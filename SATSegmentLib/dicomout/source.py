"""The DICOM series a result is written against: its instances' headers, their identity and their grid.

DICOM SEG and RTSTRUCT objects live in the source's study and Frame of Reference and point at its
instances by SOP Instance UID, so what they need is checked here, from the headers alone (no pixel data),
before any compute: one single-frame image series with Study, Series and Frame of Reference UIDs, one
patient, and instances that form one regular grid. The files, their order along the slice normal (never
file name or InstanceNumber) and the geometry checks are the image reader's (`dicomseries.SeriesOrder`):
the images referenced are exactly the slices the scan was stacked from. `frames` maps a mask onto them
through physical space.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dicomseries import SeriesOrder, order_files, order_series
from ..slicegeometry import MAX_MISPLACEMENT, SliceHeader, require_geometry, slice_normal
from ..errors import InputError

#: Attributes of the Patient, General Study and Patient Study modules copied from the source into new objects.
PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDsSequence",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
)
_GRID_TOLERANCE = 0.01  # of a voxel: index-space agreement between a mask's grid and the source's
_REFETCH_HINT = ("Export the series again from the scanner or PACS (with its UIDs), or write -o OUT.seg.nrrd "
                 "instead of DICOM outputs.")


@dataclass(frozen=True)
class SourceSeries:
    """Headers of the source image series, in slice order, and what the user should know about them."""

    instances: tuple  # pydicom Datasets without pixel data, ordered along the slice normal
    slices: tuple[SliceHeader, ...]  # the same files as the image reader ordered and checked them (their geometry)
    notes: tuple[str, ...] = ()

    @property
    def first(self):
        return self.instances[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, rows, columns): the array shape of one mask on the source's grid."""
        return len(self.instances), int(self.first.Rows), int(self.first.Columns)

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping an index (column, row, frame) of the source grid to LPS millimetres."""
        first, last = self.slices[0], self.slices[-1]
        row_dir, col_dir = first.orientation[:3], first.orientation[3:]
        row_spacing, col_spacing = first.pixel_spacing
        affine = np.eye(4)
        affine[:3, 0] = row_dir * col_spacing  # along a row: the column index grows
        affine[:3, 1] = col_dir * row_spacing
        affine[:3, 2] = (last.position - first.position) / (len(self.slices) - 1) if len(self.slices) > 1 else \
            slice_normal(first.orientation) * float(getattr(self.first, "SliceThickness", 1) or 1)
        affine[:3, 3] = first.position
        return affine

    def frames(self, mask: np.ndarray, mask_affine: np.ndarray) -> np.ndarray:
        """`mask` (z, y, x; voxel (x, y, z) at `mask_affine` in LPS mm) as (frame, row, column) of the source.

        The mask's grid must be the source's, up to the order and direction of its axes (a scan read by
        SimpleITK, or its copy reoriented to RAS); anything else is refused rather than resampled.
        """
        return _to_grid(np.asarray(mask), mask_affine, self.affine(), self.shape)


def read_source_series(source: SeriesOrder | str | os.PathLike | Sequence[str | os.PathLike],
                       series_uid: str | None = None) -> SourceSeries:
    """Headers of a DICOM series checked for what DICOM SEG and RTSTRUCT objects need (InputError with a hint
    otherwise). `source`: the `SeriesOrder` the scan was read in (`imageio.read_image`'s `series_order`), whose
    files, order and geometry checks are taken as they are; or a folder (the series with `series_uid` if it
    holds several) or files, ordered and checked the way the image reader does it."""
    import pydicom

    order = source if isinstance(source, SeriesOrder) else _series_order(source, series_uid)
    notes: list[str] = []
    headers = []
    for path in order.files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InputError(f"Cannot read the DICOM header of {path}: {exc}.", _REFETCH_HINT) from None
    _require_single_frame(headers, order.files)
    if not order.geometry_checked:
        require_geometry(order.slices)
    filled = _fill_uids_from_file_meta(headers)
    if filled:
        notes.append(f"{filled} of the {len(headers)} DICOM files have no SOP Instance UID in their data set, only in "
                     "their file header (as some anonymisers leave them); the DICOM outputs reference that one.")
    _require_uids(headers)
    for keyword, what in (("StudyInstanceUID", "studies"), ("SeriesInstanceUID", "series"),
                          ("FrameOfReferenceUID", "Frames of Reference"), ("PatientID", "patients")):
        _require_one(headers, keyword, what)
    series = SourceSeries(tuple(headers), order.slices, tuple(notes))
    _require_regular(series)
    return series


def _series_order(source, series_uid: str | None) -> SeriesOrder:
    """The image reader's order and checks of a series folder or of a list of files."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InputError(f"DICOM outputs need the DICOM series the scan came from; {folder} is not a folder.",
                             "Give the folder of the DICOM series, or write -o OUT.seg.nrrd for a NIfTI/NRRD scan.")
        return order_series(folder, series_uid)
    files = [str(f) for f in source]
    if not files:
        raise InputError("No DICOM files were given for the source series.", "Give the files of the image series.")
    return order_files(files)


def _require_single_frame(headers, files) -> None:
    multi = [f for f, h in zip(files, headers) if int(getattr(h, "NumberOfFrames", 1) or 1) > 1]
    if multi:
        raise InputError(f"{Path(multi[0]).name} is a multi-frame (enhanced) image; DICOM SEG and RTSTRUCT output "
                         "is written for classic single-frame series only.",
                         "Convert the series to single-frame images (e.g. dcmtk's or dicom3tools' converters, or "
                         "Slicer's DICOM export), or write -o OUT.seg.nrrd.")


def _fill_uids_from_file_meta(headers) -> int:
    """Take SOP Instance/Class UIDs from the file meta information where the data set lacks them; count them."""
    filled = 0
    for header in headers:
        meta = getattr(header, "file_meta", None)
        for keyword, meta_keyword in (("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
                                      ("SOPClassUID", "MediaStorageSOPClassUID")):
            if not str(header.get(keyword, "") or "").strip() and meta is not None and meta.get(meta_keyword):
                setattr(header, keyword, meta.get(meta_keyword))
                filled += keyword == "SOPInstanceUID"
    return filled


def _require_uids(headers) -> None:
    """Refuse a series whose objects could not be referenced: no Study/Series/Frame of Reference/SOP UIDs."""
    for keyword, why in (("StudyInstanceUID", "new objects belong to the source's study"),
                         ("SeriesInstanceUID", "they reference the source series"),
                         ("SOPInstanceUID", "they reference each source image"),
                         ("SOPClassUID", "they reference each source image"),
                         ("FrameOfReferenceUID", "their coordinates are in the source's Frame of Reference")):
        lacking = [h for h in headers if not str(h.get(keyword, "") or "").strip()]
        if lacking:
            raise InputError(f"{len(lacking)} of the {len(headers)} files of the DICOM series have no {keyword} "
                             f"(e.g. {_name(lacking[0])}); DICOM SEG and RTSTRUCT need it: {why}. The series was "
                             "probably anonymised with its UIDs removed.", _REFETCH_HINT)


def _require_one(headers, keyword: str, what: str) -> None:
    values = {str(h.get(keyword, "") or "") for h in headers}
    if len(values) > 1:
        raise InputError(f"The DICOM series mixes {len(values)} {what} ({keyword} differs between its files), so "
                         "one DICOM SEG or RTSTRUCT cannot reference it.",
                         "Put the files of one series in a folder of their own, or write -o OUT.seg.nrrd.")


def _require_regular(series: SourceSeries) -> None:
    """Each instance must sit at its frame of the regular grid (ImagePositionPatient within a tenth of a voxel),
    so that frame k of a mask is the image at that position."""
    to_index = np.linalg.inv(series.affine())
    for frame, header in enumerate(series.slices):
        index = (to_index @ np.append(header.position, 1.0))[:3]
        if np.abs(index - (0, 0, frame)).max() > MAX_MISPLACEMENT:
            raise InputError(f"The images of the DICOM series are not one evenly spaced stack: {header.name} lies "
                             f"{np.abs(index - (0, 0, frame)).max():.2f} voxels from its place (slice {frame + 1} of "
                             f"{len(series.slices)}).", "Check that every file of the series is there, or write "
                             "-o OUT.seg.nrrd instead of DICOM outputs.")


def _name(header) -> str:
    return Path(str(getattr(header, "filename", "") or "a file")).name


def _to_grid(mask: np.ndarray, mask_affine: np.ndarray, grid_affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Reorder the axes of `mask` (z, y, x) onto a grid of `shape` (frame, row, column) holding the same voxels.

    The index map between both grids must be a signed permutation with whole-voxel offsets that covers the
    grid exactly; every source frame is then checked to sit at its ImagePositionPatient by `grid_affine`.
    """
    index_map = np.linalg.inv(grid_affine) @ np.asarray(mask_affine, dtype=float)
    linear, offset = index_map[:3, :3], index_map[:3, 3]
    permutation = np.round(linear)
    size = np.array(mask.shape[::-1])  # (x, y, z)
    grid_size = np.array(shape[::-1])  # (column, row, frame)
    ok = (np.allclose(linear, permutation, atol=_GRID_TOLERANCE) and np.allclose(offset, np.round(offset), atol=_GRID_TOLERANCE)
          and sorted(np.abs(permutation).sum(axis=0)) == [1, 1, 1] and sorted(np.abs(permutation).sum(axis=1)) == [1, 1, 1])
    if ok:
        axis = np.abs(permutation).argmax(axis=1)  # mask axis (x, y, z) feeding each grid axis (column, row, frame)
        sign = permutation[np.arange(3), axis]
        start = np.where(sign > 0, 0, size[axis] - 1)
        ok = np.array_equal(size[axis], grid_size) and np.allclose(offset, -sign * start, atol=_GRID_TOLERANCE)
    if not ok:
        raise InputError("The masks are not on the grid of the DICOM source series (other voxel positions, "
                         "spacing or extent), so they cannot be written against its images.",
                         "Write DICOM outputs from the scan read from this series (its own grid), not a resampled copy.")
    numpy_axis = 2 - axis  # numpy axes of `mask` are (z, y, x)
    frames = np.transpose(mask, (numpy_axis[2], numpy_axis[1], numpy_axis[0]))
    flips = [i for i, s in enumerate(sign[::-1]) if s < 0]
    return np.flip(frames, axis=flips) if flips else frames
