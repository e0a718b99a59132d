"""Writing DICOM outputs: the Python API, and the checks and writers a segmentation job uses.

Files are written like the job's other outputs (`outputs.StagedOutputs`): under a temporary name next to
their destination, renamed when complete, never over an existing file unless `overwrite`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .source import SourceSeries, read_source_series
from .structures import Algorithm, Structure

DICOM_SUFFIX = ".dcm"
Writer = Callable[[Path], object]  # writes one output file at the (temporary) path it is given


def structures_for(terms: Iterable[str], names: str = "sat") -> list[Structure]:
    """One Structure per SAT term (or free text), named per `names` ('sat' or 'tg263')."""
    from ..vocabulary import structure_name

    return [Structure.for_term(term, name=structure_name(term, names)) for term in terms]


def write_dicom_seg(path: str | os.PathLike, result, source: SourceSeries | str | os.PathLike, *, names: str = "sat",
                    algorithm: Algorithm | None = None, overwrite: bool = False) -> Path:
    """Write `result` (a `pipeline.SegmentationResult` of the series) as a DICOM SEG file; returns its path."""
    from .seg import encode_seg

    return _write(path, result, source, names, algorithm, overwrite, encode_seg)


def write_rtstruct(path: str | os.PathLike, result, source: SourceSeries | str | os.PathLike, *, names: str = "sat",
                   algorithm: Algorithm | None = None, overwrite: bool = False) -> Path:
    """Write `result` (a `pipeline.SegmentationResult` of the series) as an RTSTRUCT file; returns its path."""
    from .rtstruct import encode_rtstruct

    return _write(path, result, source, names, algorithm, overwrite, encode_rtstruct)


def _write(path, result, source, names: str, algorithm: Algorithm | None, overwrite: bool, encode) -> Path:
    from ..imageio import lps_affine_of
    from ..outputs import StagedOutputs, check_output_path

    target = check_output_path(path, overwrite, suffix=DICOM_SUFFIX)
    series = source if isinstance(source, SourceSeries) else read_source_series(source)
    dataset = encode(result.masks, lps_affine_of(result.reference), structures_for(result.masks, names), series,
                     algorithm or Algorithm())
    with StagedOutputs(overwrite) as staged:
        save(dataset, staged.temp_path(target))
        staged.commit()
    return target


def save(dataset, path: Path) -> Path:
    """Write a data set as a DICOM Part 10 file (preamble, file meta information)."""
    dataset.save_as(str(path), enforce_file_format=True)
    return path


# ---- what a segmentation job uses ----------------------------------------------------------------

@dataclass(frozen=True)
class DicomTargets:
    """The DICOM files a job writes (None: not asked for)."""

    dicom_seg: Path | None = None
    rtstruct: Path | None = None

    def __bool__(self) -> bool:
        return self.dicom_seg is not None or self.rtstruct is not None


def require_dicom_libraries() -> None:
    """Refuse DICOM outputs, before any compute, when the optional libraries that write them are missing."""
    import importlib.util

    missing = [name for name in ("pydicom", "highdicom", "skimage") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"DICOM SEG and RTSTRUCT outputs need libraries that are not installed ({', '.join(missing)}).",
                         "Install SATSegment's DICOM extra: pip install \"SATSegmentLib[dicom]\"")


def check_dicom_targets(input_path: str, dicom_seg: str | None, rtstruct: str | None, overwrite: bool,
                        others: Iterable[Path | None] = ()) -> DicomTargets:
    """Validate the DICOM output paths before any compute: a DICOM series as input, `.dcm` names in writable
    folders outside the series folder, no existing file unless `overwrite`, no two outputs on one path."""
    from ..outputs import check_output_path

    if not (dicom_seg or rtstruct):
        return DicomTargets()
    require_dicom_libraries()
    series_folder = Path(input_path).expanduser()
    if not series_folder.is_dir():
        raise InputError(f"DICOM SEG and RTSTRUCT outputs reference the DICOM series the scan came from, and {input_path} "
                         "is a file, not a DICOM series folder.",
                         "Segment the DICOM series folder itself, or write -o OUT.seg.nrrd for a NIfTI/NRRD/MHA scan.")
    targets = DicomTargets(*(check_output_path(p, overwrite, suffix=DICOM_SUFFIX) if p else None for p in (dicom_seg, rtstruct)))
    taken = {Path(p).resolve() for p in others if p}
    for path in (targets.dicom_seg, targets.rtstruct):
        if path is None:
            continue
        if path.resolve().parent == series_folder.resolve():
            raise InputError(f"{path} would be written into the folder of the source series, which would then hold "
                             "two series.", "Write DICOM outputs to another folder.")
        if path.resolve() in taken:
            raise InputError(f"{path} is given for two outputs.", "Give each output its own file name.")
        taken.add(path.resolve())
    return targets


def dicom_writers(targets: DicomTargets, masks: Mapping[str, np.ndarray], mask_affine: np.ndarray,
                  structures: Sequence[Structure], source: SourceSeries, algorithm: Algorithm) -> list[tuple[str, Path, Writer]]:
    """(result key, final path, writer) for each DICOM output of a job, for `outputs.write_job_outputs`."""
    from .rtstruct import encode_rtstruct
    from .seg import encode_seg

    writers = []
    for key, path, encode in (("dicom_seg", targets.dicom_seg, encode_seg), ("rtstruct", targets.rtstruct, encode_rtstruct)):
        if path is not None:
            writers.append((key, path, lambda temp, encode=encode: save(encode(masks, mask_affine, structures, source, algorithm), temp)))
    return writers
