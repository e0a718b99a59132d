"""Voxel sizes written with a minus sign, which SimpleITK reads as a flipped axis without a word.

NIfTI's pixdim (checked in `nifti`), MetaImage's ElementSpacing (or ElementSize when ElementSpacing is
absent) and NRRD's per-axis `spacings` can hold a negative number. ITK's readers (SimpleITK's, and 3D
Slicer's, which reads scalar volumes with ITK) take its absolute value as the voxel size and reverse that
axis' direction, so the image comes out mirrored along it (checked with SimpleITK 2.5 / ITK 5.4); nibabel,
which the official SAT pipeline uses for NIfTI, drops the sign instead. Neither is wrong by the formats' texts, and a header written from a flipped matrix's
diagonal is a classic bug, so the image is read as ITK reads it (the masks land on it as the user sees it
in Slicer) and a note names the axis. NRRD `space directions` are vectors whose sign *is* the
orientation (their lengths, the voxel sizes, are never negative): nothing to say about them.
"""

from __future__ import annotations

from pathlib import Path

AXES = "ijk"
_METAIMAGE_HEADER_BYTES = 1 << 16  # the text header; binary data follows ElementDataFile = LOCAL


def flipped_axis_note(header: str, axis: str, size: float, besides: str = "") -> str:
    """The note for a negative voxel size `size` (mm) along `axis` in a `header` (e.g. 'NIfTI header')."""
    return (f"The {header} gives a negative voxel size along the {axis} axis ({size:g} mm); like 3D Slicer, it is "
            f"read as {abs(size):g} mm with that axis flipped{besides}. If left/right or head/foot look swapped in "
            "the result, fix the header.")


def negative_spacing_notes(path: Path, fmt: str) -> list[str]:
    """Notes for the negative voxel sizes of a MetaImage (`fmt` 'metaimage') or NRRD ('nrrd') header."""
    if fmt == "metaimage":
        field, sizes = _metaimage_spacing(path)
        header = f"MetaImage header ({field})"
    elif fmt == "nrrd":
        header, sizes = "NRRD header (spacings)", _nrrd_spacings(path)
    else:
        return []
    return [flipped_axis_note(header, axis, size) for axis, size in zip(AXES, sizes) if size < 0]


def _metaimage_spacing(path: Path) -> tuple[str, list[float]]:
    """('ElementSpacing' or 'ElementSize', its numbers) from a .mha/.mhd header; ITK takes the first if both."""
    fields: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            text = f.read(_METAIMAGE_HEADER_BYTES).decode("latin-1")
    except OSError:
        return "ElementSpacing", []  # SimpleITK's own error follows
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    for key in ("ElementSpacing", "ElementSize"):
        if key in fields:
            return key, _floats(fields[key])
    return "ElementSpacing", []


def _nrrd_spacings(path: Path) -> list[float]:
    """The per-axis `spacings` of a .nrrd/.nhdr header (pynrrd), empty when it has none or cannot be parsed."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # pynrrd raises NRRDError, ValueError, StopIteration... on a malformed header
        return []  # SimpleITK's own checks judge the file
    return [float(v) for v in header.get("spacings", [])]


def _floats(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split()]
    except ValueError:
        return []
