"""The DICOM series a result is written against: its instances' headers, their identity and their grid.

DICOM SEG and RTSTRUCT objects live in the source's study and Frame of Reference and point at its
instances by SOP Instance UID, so what they need is checked here, from the headers alone (no pixel data),
before any compute: one single-frame image series with Study, Series and Frame of Reference UIDs, one
patient, and instances that form one regular grid. Instances are ordered by ImagePositionPatient along the
slice normal, never by file name or InstanceNumber, and `frames` maps a mask to them through physical space.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        row_dir, col_dir = _orientation(self.first)
        row_spacing, col_spacing = (float(v) for v in self.first.PixelSpacing)
        affine = np.eye(4)
        affine[:3, 0] = row_dir * col_spacing  # along a row: the column index grows
        affine[:3, 1] = col_dir * row_spacing
        affine[:3, 2] = _position(self.instances[-1]) - _position(self.first) if len(self.instances) > 1 else \
            np.cross(row_dir, col_dir) * float(getattr(self.first, "SliceThickness", 1) or 1)
        if len(self.instances) > 1:
            affine[:3, 2] /= len(self.instances) - 1
        affine[:3, 3] = _position(self.first)
        return affine

    def frames(self, mask: np.ndarray, mask_affine: np.ndarray) -> np.ndarray:
        """`mask` (z, y, x; voxel (x, y, z) at `mask_affine` in LPS mm) as (frame, row, column) of the source.

        The mask's grid must be the source's, up to the order and direction of its axes (a scan read by
        SimpleITK, or its copy reoriented to RAS); anything else is refused rather than resampled.
        """
        return _to_grid(np.asarray(mask), mask_affine, self.affine(), self.shape)


def read_source_series(source: str | os.PathLike | Sequence[str | os.PathLike],
                       series_uid: str | None = None) -> SourceSeries:
    """Headers of the DICOM series in a folder (the one with `series_uid` if it holds several), or of the
    given files, checked for what DICOM SEG and RTSTRUCT objects need (InputError with a hint otherwise)."""
    import pydicom

    files = _series_files(source, series_uid)
    notes: list[str] = []
    headers = []
    for path in files:
        try:
            headers.append(pydicom.dcmread(path, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise InputError(f"Cannot read the DICOM header of {path}: {exc}.", _REFETCH_HINT) from None
    _require_single_frame(headers, files)
    filled = _fill_uids_from_file_meta(headers)
    if filled:
        notes.append(f"{filled} of the {len(headers)} DICOM files have no SOP Instance UID in their data set, only in "
                     "their file header (as some anonymisers leave them); the DICOM outputs reference that one.")
    _require_uids(headers)
    for keyword, what in (("StudyInstanceUID", "studies"), ("SeriesInstanceUID", "series"),
                          ("FrameOfReferenceUID", "Frames of Reference"), ("PatientID", "patients")):
        _require_one(headers, keyword, what)
    series = SourceSeries(tuple(_slice_order(headers)), tuple(notes))
    _require_regular(series)
    return series


def _series_files(source, series_uid: str | None) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        from ..dicomseries import choose_series, find_series

        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise InputError(f"DICOM outputs need the DICOM series the scan came from; {folder} is not a folder.",
                             "Give the folder of the DICOM series, or write -o OUT.seg.nrrd for a NIfTI/NRRD scan.")
        series = find_series(folder)
        return list(series[choose_series(folder, series, series_uid)])
    files = [str(f) for f in source]
    if not files:
        raise InputError("No DICOM files were given for the source series.", "Give the files of the image series.")
    return files


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


def _slice_order(headers) -> list:
    """Instances sorted along the slice normal, one per position (repeated copies of a file dropped)."""
    lacking = [h for h in headers if not _has_geometry(h)]
    if lacking:
        raise InputError(f"{_name(lacking[0])} has no ImagePositionPatient, ImageOrientationPatient or PixelSpacing, "
                         "so its slice cannot be located.", _REFETCH_HINT)
    row_dir, col_dir = _orientation(headers[0])
    normal = np.cross(row_dir, col_dir)
    ordered = sorted(headers, key=lambda h: float(normal @ _position(h)))
    kept = [ordered[0]]
    for header in ordered[1:]:
        if header.SOPInstanceUID != kept[-1].SOPInstanceUID:
            kept.append(header)
    return kept


def _require_regular(series: SourceSeries) -> None:
    """Each instance must sit at its frame of the regular grid (ImagePositionPatient within a tenth of a voxel),
    so that frame k of a mask is the image at that position."""
    from ..dicomseries import MAX_MISPLACEMENT

    to_index = np.linalg.inv(series.affine())
    for frame, header in enumerate(series.instances):
        index = (to_index @ np.append(_position(header), 1.0))[:3]
        if np.abs(index - (0, 0, frame)).max() > MAX_MISPLACEMENT:
            raise InputError(f"The images of the DICOM series are not one evenly spaced stack: {_name(header)} lies "
                             f"{np.abs(index - (0, 0, frame)).max():.2f} voxels from its place (slice {frame + 1} of "
                             f"{len(series.instances)}).", "Check that every file of the series is there, or write "
                             "-o OUT.seg.nrrd instead of DICOM outputs.")


def _has_geometry(header) -> bool:
    return all(len(getattr(header, k, None) or ()) == n for k, n in
               (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6), ("PixelSpacing", 2)))


def _orientation(header) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([float(v) for v in header.ImageOrientationPatient])
    return values[:3], values[3:]


def _position(header) -> np.ndarray:
    return np.array([float(v) for v in header.ImagePositionPatient])


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
