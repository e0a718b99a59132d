"""NIfTI checks that SimpleITK's reader does not make, each turned into an InputError or a note for the user.

SimpleITK silently zero-fills a truncated file, turns NaN and Inf into 0, reads a voxel size
(pixdim) of 0 as 1 mm and a negative one as a flipped axis; nibabel, which the official SAT
pipeline uses, replaces both by their absolute value or 1 mm. A 0 would make every volume wrong
(e.g. 3 mm slices read as 1 mm: a third of the real volume), so it is refused; a negative size or a
header without any orientation is read the way 3D Slicer reads it, with a note saying so. Headers are
read with nibabel; NIfTI-2, which SimpleITK cannot read, is refused with a way out; other files are left
to SimpleITK's own checks.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .negative_spacing import AXES as _AXES
from .negative_spacing import flipped_axis_note

_LONGEST_HEADER = 540  # NIfTI-2; NIfTI-1 has 348


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that these checks need, as the file gives them."""

    version: int  # 1 or 2
    shape: tuple[int, ...]
    data_offset: int
    itemsize: int
    pixdim: tuple[float, ...]  # voxel size along each axis of `shape`
    qform_code: int
    sform_code: int

    @classmethod
    def parse(cls, raw: bytes) -> NiftiHeader | None:
        """The header at the start of `raw` (read by nibabel, unchecked so that nothing is 'fixed'), or None
        when `raw` does not start with a NIfTI header nibabel understands."""
        import nibabel

        magics = {b"n+1": nibabel.Nifti1Header, b"ni1": nibabel.Nifti1Header,
                  b"n+2": nibabel.Nifti2Header, b"ni2": nibabel.Nifti2Header}
        kind = magics.get(raw[344:347]) or magics.get(raw[4:7])  # NIfTI-1 keeps its magic at 344, NIfTI-2 at 4
        size = kind.template_dtype.itemsize if kind else 0
        if kind is None or len(raw) < size:
            return None
        try:
            header = kind(raw[:size], check=False)
            if int(header["sizeof_hdr"]) != size:
                return None
            shape = header.get_data_shape()
            return cls(version=1 if kind is nibabel.Nifti1Header else 2, shape=tuple(max(int(d), 1) for d in shape), data_offset=int(header.get_data_offset()),
                       itemsize=header.get_data_dtype().itemsize,
                       pixdim=tuple(float(v) for v in header["pixdim"][1:len(shape) + 1]),
                       qform_code=int(header["qform_code"]), sform_code=int(header["sform_code"]))
        except (nibabel.spatialimages.HeaderDataError, ValueError, OverflowError):
            return None  # e.g. an unknown data type code: SimpleITK judges the file alone

    @property
    def file_size(self) -> int:
        """Bytes the file must hold: the data offset plus every voxel."""
        return self.data_offset + math.prod(self.shape) * self.itemsize


def check_nifti_header(path: Path) -> list[str]:
    """Check a NIfTI file before SimpleITK reads it; returns notes for the user.

    Raises InputError when the file is shorter than its header says or a spatial voxel size is 0 or
    not finite. Notes: a negative voxel size (read as a flipped axis) and a header without orientation.
    """
    header = _read_header(path)
    if header is None:
        return []  # not NIfTI (e.g. an Analyze header): SimpleITK judges it alone
    if header.version == 2:
        raise InputError(f"{path} is a NIfTI-2 file; SATSegment reads NIfTI-1 (its image reader, SimpleITK, does "
                         "not read NIfTI-2).",
                         "Save the scan as NIfTI-1 or NRRD, e.g. with nibabel: "
                         "nibabel.save(nibabel.Nifti1Image(img.dataobj, img.affine), 'scan.nii.gz').")
    _check_complete(path, header)
    _check_voxel_size(path, header)
    return _geometry_notes(header)


def _read_header(path: Path) -> NiftiHeader | None:
    try:
        with _open(path) as f:
            return NiftiHeader.parse(f.read(_LONGEST_HEADER))
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(
            f"Cannot read {path}: {exc or 'not a valid NIfTI file'}.",
            "The file is corrupt or not a (gzip-compressed) NIfTI file; export or copy it again.",
        ) from None


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _check_complete(path: Path, header: NiftiHeader) -> None:
    """Raise InputError if the file (plain or gzip) holds fewer bytes than its header declares."""
    if _data_bytes(path, header.file_size) < header.file_size:
        raise InputError(
            f"{path} is truncated or corrupt (the data is shorter than its header says).",
            "The file was not completely written or copied; export or copy it again.",
        )


def _data_bytes(path: Path, expected: int) -> int:
    """Uncompressed size of the file; for gzip, the trailer is trusted when it records `expected`."""
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        if int.from_bytes(f.read(4), "little") == expected % 2**32:
            return expected  # the gzip trailer records the full size: the common, cheap path
    size = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(2**24):
                size += len(chunk)
    except (OSError, EOFError, zlib.error):
        return size
    return size


def _check_voxel_size(path: Path, header: NiftiHeader) -> None:
    """Refuse a spatial voxel size of 0 (or NaN): every reader would silently take 1 mm instead."""
    for axis, size in zip(_AXES, header.pixdim):
        if not (math.isfinite(size) and size != 0):
            raise InputError(
                f"{path} gives a voxel size of {size:g} mm along its {axis} axis (NIfTI pixdim), so the size of the "
                "voxels is unknown; it would be read as 1 mm and every volume measured on it would be wrong.",
                "Fix the header with the real voxel size (e.g. nibabel's header.set_zooms), or convert the original "
                "scan (e.g. the DICOM series) again.",
            )


def _geometry_notes(header: NiftiHeader) -> list[str]:
    notes = [flipped_axis_note("NIfTI header", axis, size, " (nibabel ignores the sign)")
             for axis, size in zip(_AXES, header.pixdim[:3]) if size < 0]
    if header.qform_code <= 0 and header.sform_code <= 0:
        notes.append(
            "The NIfTI header does not say how the image lies in the body (qform_code and sform_code are 0); it is "
            "read as 3D Slicer reads it, which may be mirrored or rotated. Check left and right in the result."
        )
    return notes


def check_nifti_finite(path: Path) -> None:
    """Raise InputError if a floating-point NIfTI holds NaN or infinite voxels (SimpleITK reads them as 0)."""
    import nibabel

    try:
        nifti = nibabel.load(str(path))
        if nifti.get_data_dtype().kind != "f":
            return  # integer voxels cannot be NaN
        finite = np.isfinite(np.asanyarray(nifti.dataobj)).all()
    except Exception:  # unreadable for nibabel: SimpleITK read it, its own checks apply
        return
    if not finite:
        raise InputError(f"{path} contains NaN or infinite voxel values.", "Fix or re-export the image; SAT needs finite intensities.")


def nibabel_affine(path: Path) -> np.ndarray | None:
    """The voxel→RAS affine nibabel reads (what the official pipeline sees), or None if nibabel cannot read the file."""
    import nibabel

    try:
        return np.asarray(nibabel.load(str(path)).affine, dtype=float)
    except Exception:  # header readable by SimpleITK but not nibabel: fall back to SimpleITK's geometry
        return None


#: Shown when nibabel and SimpleITK read different geometries and no header note explains why.
AFFINE_DISAGREEMENT_NOTE = (
    "The NIfTI header's two descriptions of the geometry (qform and sform) place the image differently; it is "
    "read as 3D Slicer reads it. If the result looks shifted, rotated or mirrored, fix the header so both agree."
)
