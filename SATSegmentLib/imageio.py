"""Read a 3D scan (NIfTI, NRRD, MHA or a DICOM series folder) with SimpleITK and check it is usable.

Every problem a user can cause (missing file, link loop, named pipe, corrupt gzip, 2D or 4D image,
complex voxels, bad spacing, NaN voxels, folder without DICOM or with several series, irregular
DICOM slices) becomes an `errors.InputError` saying what was wrong and what to do; what can be read
but may be wrong becomes a note for the user in the metadata. The DICOM series checks live in
`dicomseries`, the NIfTI header checks in `nifti`, the MetaImage/NRRD negative voxel sizes in
`negative_spacing`. Also here: `modality_warnings` (do the intensities fit the modality?) and
`processed_grid_voxels` (how large SAT's resampled grid will be).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .dicomseries import itk_error_detail, read_dicom_series
from .errors import InputError
from .negative_spacing import negative_spacing_notes
from .nifti import AFFINE_DISAGREEMENT_NOTE, check_nifti_finite, check_nifti_header, nibabel_affine
from .vocabulary import normalize_modality

#: Spacing outside this range (mm) is almost certainly a broken header, not a real scan.
MIN_SPACING_MM = 0.01
MAX_SPACING_MM = 50.0

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: DICOM Modality (0008,0060) values SAT has a modality for.
DICOM_MODALITIES = {"CT": "ct", "MR": "mri", "PT": "pet"}


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> tuple[sitk.Image, dict[str, Any]]:
    """Read a scan file or DICOM series folder as a validated float32 `SimpleITK.Image` plus metadata.

    `series_uid` chooses one series (by SeriesInstanceUID) in a DICOM folder that holds several;
    without it such a folder is refused with a list of its series. It is refused for a file.

    Metadata keys: `path`, `format` ('nifti' | 'nrrd' | 'metaimage' | 'dicom' | other), `identity`
    (hash of voxels and geometry, for caches), `modality` (DICOM Modality tag, upper-case, or None),
    `ras_affine` (4x4 voxel→RAS mm, as nibabel reads a NIfTI header, else from the SimpleITK geometry),
    `notes` (warnings to show the user: the image was read, but something about it may be wrong, e.g.
    repeated DICOM files dropped or a NIfTI axis flipped) and, for DICOM, `series_uid` and `n_files`.
    """
    path = Path(path).expanduser()
    if _input_kind(path) == "folder":
        image, meta = read_dicom_series(path, series_uid)
    elif series_uid is not None:
        raise InputError(
            f"A DICOM series UID ({series_uid}) was given, but {path} is a file, not a DICOM folder.",
            "Give the folder of the DICOM series with --series, or drop --series for a NIfTI/NRRD/MHA file.",
        )
    else:
        image, meta = _read_file(path)
    meta["path"] = str(path)
    image = validate_image(image, source=str(path))
    meta.setdefault("ras_affine", ras_affine_of(image))
    meta["identity"] = image_fingerprint(image, meta["ras_affine"])
    return image, meta


#: What `stat` calls the kinds of path that are neither a regular file nor a folder.
_SPECIAL_FILES = {stat.S_IFIFO: "named pipe (FIFO)", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
                  stat.S_IFBLK: "block device"}


def _input_kind(path: Path) -> str:
    """'folder' or 'file'. Refuses, before anything opens it, what could hang or only confuse a reader."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise _unreachable(path, exc) from None
    if stat.S_ISDIR(mode):
        _refuse_special_entries(path)
        return "folder"
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{path} is a {_SPECIAL_FILES.get(stat.S_IFMT(mode), 'special file')}, not a regular file: "
            "reading it could wait forever for data.",
            "Save the scan to a regular file (NIfTI, NRRD, MHA) or a DICOM folder and give that path.",
        )
    return "file"


def _refuse_special_entries(folder: Path) -> None:
    """Refuse named pipes and other special files in a DICOM folder, before GDCM scans it.

    GDCM opens every entry of the folder; with a named pipe among the 20 files of the real CT series
    it returned 3 of them, or none, depending on the pipe's name, without a word.
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                kind = _SPECIAL_FILES.get(stat.S_IFMT(entry.stat().st_mode))
            except OSError:
                continue  # a dangling or looping link is no file to open
            if kind:
                raise InputError(
                    f"Folder {folder} contains a {kind}, {entry.name}: scanning it for DICOM files could miss "
                    "files of the series or wait forever.",
                    "Remove it, or copy the DICOM files of the series into a folder of their own.",
                )


def _unreachable(path: Path, exc: OSError) -> InputError:
    """The InputError for a path that `stat` cannot follow: missing, a dangling or looping link, no permission."""
    if exc.errno == errno.ELOOP:
        return InputError(f"{path} is a symbolic link loop (a link that leads back to itself).",
                          "Give the path of the real file or folder, or fix the link.")
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return InputError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist.",
                          "Give the path of the real file or folder, or fix the link.")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"Input image not found: {path}", "Check the path; give a NIfTI/NRRD/MHA file or a DICOM folder.")
    return InputError(f"Cannot open {path}: {exc.strerror or exc}.", "Check the path and its permissions.")


def image_fingerprint(image: sitk.Image, ras_affine: np.ndarray) -> str:
    """Hash of the voxels and geometry: the same scan exported twice (new path, new mtime) hits the caches."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection())).encode())
    digest.update(np.ascontiguousarray(ras_affine, dtype=np.float64).tobytes())
    digest.update(memoryview(sitk.GetArrayViewFromImage(image)).cast("B"))
    return digest.hexdigest()


def resolve_modality(modality: str, metadata: dict[str, Any]) -> str:
    """'auto' takes the DICOM Modality tag (CT/MR/PT); anything else goes through SAT's own modality rule."""
    modality = str(modality or "auto").strip().lower()
    if modality != "auto":
        return normalize_modality(modality)
    tag = (metadata.get("modality") or "").upper()
    if tag in DICOM_MODALITIES:
        return DICOM_MODALITIES[tag]
    what = f"DICOM Modality '{tag}'" if tag else "no DICOM Modality tag"
    raise InputError(f"Cannot tell the modality of the image ({what}).", "Give it explicitly: --modality ct, mri or pet.")


def validate_image(image: sitk.Image, source: str = "the image") -> sitk.Image:
    """Check that `image` is a usable single-channel 3D volume and return it cast to float32."""
    if not isinstance(image, sitk.Image):
        raise InputError(f"Expected a SimpleITK.Image for {source}, got {type(image).__name__}.", "Pass a file path or a SimpleITK.Image.")
    dim = image.GetDimension()
    if dim == 4:
        raise InputError(
            f"{source} is a 4D image (size {image.GetSize()}): SAT segments one 3D volume.",
            "Extract a single 3D volume (one time point or phase) and segment that.",
        )
    if dim != 3:
        raise InputError(f"{source} is a {dim}D image: SAT needs a 3D volume.", "Give a 3D scan (a volume file or a whole DICOM series).")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{source} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image).",
            "Give a single-channel (greyscale) CT, MR or PET volume.",
        )
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(
            f"{source} has complex-valued voxels; SAT needs real intensities.",
            "Give the magnitude image (e.g. the magnitude reconstruction of the MR series), not complex raw data.",
        )
    size = image.GetSize()
    if min(size) == 0:
        raise InputError(f"{source} has an empty axis (size {size}).", "The file is incomplete; export the volume again.")
    if min(size) < 2:
        raise InputError(
            f"{source} has a single slice along one axis (size {size}): that is a 2D image.",
            "SAT segments 3D volumes; load the whole series or volume.",
        )
    _check_spacing(image.GetSpacing(), source)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"{source} contains NaN or infinite voxel values.", "Fix or re-export the image; SAT needs finite intensities.")
    return image


#: Hounsfield units below which a voxel is air or lung (-1000 to -700 HU); MR and PET intensities are not.
AIR_HU = -500.0
#: Hounsfield range of fat (about -100 HU), widened for partial volume with soft tissue.
FAT_HU = (-200.0, -30.0)
#: Told CT: warn when fewer voxels than this are air *and* fewer than `CT_MIN_FAT` are fat.
CT_MIN_AIR = 0.005
CT_MIN_FAT = 0.01
#: Told MRI or PET: warn when at least this fraction of voxels is air in Hounsfield units.
NON_CT_MAX_AIR = 0.01


def modality_warnings(modality: str, meta: dict, array: np.ndarray) -> list[str]:
    """Warnings when the image does not look like the modality SAT is told it is (`modality`: ct, mri, pet).

    1. A DICOM Modality tag (`meta["modality"]`) naming another modality: that warning alone.
    2. Told CT: a warning when under 0.5 % of the voxels are air (below -500 HU) *and* under 1 % are fat
       (-200 to -30 HU). A CT in Hounsfield units has air around the body, in the lungs or the bowel,
       or fat under the skin and around the organs; MR and PET intensities have neither: they are
       positive apart from noise near 0 (the bundled MR has 1 % of voxels at -2 or below, which fooled
       a "no negative values" rule), and z-scored values lie within a few units of 0. The false
       positive accepted: a CT cropped inside one organ, without air or fat, is warned about.
    3. Told MRI or PET: a warning when at least 1 % of the voxels are below -500, like CT air in
       Hounsfield units; MR and PET intensities are not that negative.

    Fractions are of all voxels of `array` (any shape), so padding outside the scanned field counts as air.
    """
    dicom = DICOM_MODALITIES.get((meta.get("modality") or "").upper())
    if dicom and dicom != modality:
        return [f"The DICOM header says {meta['modality']} but the job runs as {modality.upper()}; "
                f"SAT's results depend on the modality (use --modality {dicom} if the header is right)."]
    values = np.asarray(array)
    air = np.count_nonzero(values < AIR_HU) / max(values.size, 1)
    if modality == "ct":
        fat = np.count_nonzero((values >= FAT_HU[0]) & (values <= FAT_HU[1])) / max(values.size, 1)
        if air < CT_MIN_AIR and fat < CT_MIN_FAT:
            return [f"Only {air:.1%} of the voxels are below {AIR_HU:g} (air) and {fat:.1%} between {FAT_HU[0]:g} and "
                    f"{FAT_HU[1]:g} (fat), so the intensities do not look like CT Hounsfield units (air is -1000, fat "
                    "about -100); check --modality (or the rescale slope/intercept of the file)."]
    elif air >= NON_CT_MAX_AIR:
        return [f"{air:.0%} of the voxels are below {AIR_HU:g}, like air in a CT scan in Hounsfield units; "
                f"is this really {modality.upper()}? Check --modality."]
    return []


def processed_grid_shape(
    image: sitk.Image, orientation: str = "RAS", ras_affine: np.ndarray | None = None
) -> tuple[int, int, int]:
    """Shape of the array SAT's preprocessing resamples `image` to (1x1x3 mm, before its foreground crop).

    Runs the same MONAI `Orientation` and `Spacing` as `preprocess.reorient_and_resample`, lazily on a
    zero-stride tensor: nothing of the image's size is allocated, and the shape is the one
    preprocessing will allocate (float32, plus MONAI's intermediate copies). `ras_affine` as there.
    """
    import torch
    from monai.data import MetaTensor

    from .preprocess import sat_resampling

    affine = ras_affine_of(image) if ras_affine is None else np.asarray(ras_affine, dtype=float)
    voxels = MetaTensor(torch.zeros(()).expand(1, *image.GetSize()), affine=torch.as_tensor(affine))
    for transform in sat_resampling(orientation, lazy=True):
        voxels = transform(voxels)
    return tuple(int(n) for n in voxels.peek_pending_shape())


def processed_grid_voxels(image: sitk.Image, orientation: str = "RAS", ras_affine: np.ndarray | None = None) -> int:
    """Number of voxels of SAT's resampled grid for `image` (see `processed_grid_shape`).

    Lets a caller refuse a volume whose resampling would not fit in memory (4 bytes per voxel, several
    copies) before loading the model, e.g. 100x100x50 voxels at 20 mm give about 1.3 billion voxels.
    """
    return math.prod(processed_grid_shape(image, orientation, ras_affine))


def ras_affine_of(image: sitk.Image) -> np.ndarray:
    """4x4 matrix mapping voxel index (i, j, k) = SimpleITK (x, y, z) to RAS millimetres."""
    return LPS_TO_RAS @ lps_affine_of(image)


def lps_affine_of(image: sitk.Image) -> np.ndarray:
    """4x4 matrix mapping voxel index (i, j, k) to SimpleITK's LPS physical millimetres."""
    affine = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=float)
    affine[:3, 3] = image.GetOrigin()
    return affine


#: RAS = diag(-1, -1, 1) · LPS (SimpleITK's physical space is LPS, NIfTI/nibabel/MONAI use RAS).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _check_spacing(spacing: tuple[float, ...], source: str) -> None:
    for s in spacing:
        if not math.isfinite(s) or s <= 0:
            raise InputError(f"{source} has an invalid voxel spacing {spacing}.", "Fix the image header (spacing must be positive and finite).")
        if s < MIN_SPACING_MM or s > MAX_SPACING_MM:
            raise InputError(
                f"{source} has an implausible voxel spacing {tuple(round(v, 4) for v in spacing)} mm "
                f"(expected {MIN_SPACING_MM}–{MAX_SPACING_MM} mm).",
                "The header is probably wrong (e.g. spacing in metres or cm); fix the spacing and try again.",
            )


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".mha", ".mhd")):
        return "metaimage"
    return path.suffix.lstrip(".").lower() or "unknown"


_ZERO_SPACING = re.compile(r"^Refusing to change spacing .* to (?P<itk>.+)$|"
                           r"_nrrdFieldCheck_spacings: axis (?P<axis>\d+) spacing \((?P<teem>[^)]*)\) invalid")


def _read_error(path: Path, detail: str) -> InputError:
    """What to tell the user when SimpleITK cannot read a file."""
    zero = _ZERO_SPACING.search(detail)  # ITK's words, or teem's for an NRRD 'spacings' field, for a voxel size of 0
    if zero:
        sizes = f"{zero.group('itk')} mm" if zero.group("itk") else f"axis {int(zero.group('axis')) + 1}: {zero.group('teem')} mm"
        return InputError(f"{path} gives a voxel size of 0 mm along an axis ({sizes}), so the size of the voxels is "
                          "unknown.",
                          "Fix the header with the real voxel size, or convert the original scan (e.g. the DICOM series) again.")
    return InputError(f"Cannot read {path}: {detail}",
                      "The file is corrupt, truncated or not an image. Supported: NIfTI (.nii, .nii.gz), NRRD, MHA/MHD, "
                      "or a DICOM folder.")


def _read_file(path: Path) -> tuple[sitk.Image, dict[str, Any]]:
    fmt = _format_of(path)
    notes = check_nifti_header(path) if fmt == "nifti" else negative_spacing_notes(path, fmt)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _read_error(path, itk_error_detail(exc)) from None
    meta: dict[str, Any] = {"format": fmt, "modality": None, "notes": notes}
    if fmt == "nifti":
        check_nifti_finite(path)
        affine = nibabel_affine(path) if image.GetDimension() == 3 else None
        # The official pipeline reads NIfTI geometry through nibabel: keep its exact affine unless
        # SimpleITK read another geometry; then stay with SimpleITK's, as 3D Slicer does, and say so.
        if affine is not None and np.allclose(affine, ras_affine_of(image), atol=1e-3):
            meta["ras_affine"] = affine
        elif affine is not None and not notes:
            notes.append(AFFINE_DISAGREEMENT_NOTE)
    return image, meta
