"""One segmentation job, shared by `satsegment segment` and the JSON-lines worker `satsegment serve`.

`Worker` keeps the loaded model and its `pipeline.Segmenter` (text-embedding, preprocessed-volume and
backbone-feature caches) between jobs. A job checks everything it can before heavy work, in the
order the README documents: prompts, outputs, device, model files, image, modality, vocabulary.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import CancelledError, InputError
from .modelsource import ModelSource
from .prompts import check_prompts, resolve_prompts
from .vocabulary.tg263 import check_name_scheme, missing_names_warning, structure_name

Emit = Callable[[dict], None]

MODALITIES = ("ct", "mri", "pet")
FALLBACK_FEATURE_CACHE_MB = 4096
FEATURE_CACHE_RAM_SHARE = 0.4  # a full-size SAT-Nano window's features are ~2 GB
# Share of the whole job per stage, for `fraction` and `eta` in progress events.
_STAGE_SHARE = {"load_model": 0.05, "embed_vocabulary": 0.0, "load": 0.02, "preprocess": 0.05, "embed": 0.02,
                "inference": 0.80, "map_back": 0.04, "write": 0.02}


def default_feature_cache_mb() -> float:
    """Feature-cache cap when none is given: a share of the physical RAM (fallback 4096 MB where it is unknown)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_FEATURE_CACHE_MB
    return round(ram * FEATURE_CACHE_RAM_SHARE / 2**20)


@dataclass
class SegmentRequest:
    """One segmentation job: the fields of a worker `segment` request / the `segment` command's options."""

    input: str
    prompts: list[str]
    output: str | None  # .seg.nrrd; optional when a DICOM output is asked for
    modality: str = "auto"
    model: str = "nano"
    checkpoint: str | None = None
    text_encoder_checkpoint: str | None = None
    variant: str | None = None
    device: str = "auto"
    precision: str = "auto"
    max_memory: str | int | None = None
    series: str | None = None
    orientation: str = "RAS"
    roi: list[float] | None = None
    split_dir: str | None = None
    overwrite: bool = False
    allow_free_text: bool = False
    allow_download: bool = False
    dicom_seg: str | None = None  # DICOM SEG file (.dcm), for a DICOM series input
    rtstruct: str | None = None  # RTSTRUCT file (.dcm), for a DICOM series input
    names: str = "sat"  # structure names in every output: 'sat' terms or 'tg263' names

    def __post_init__(self) -> None:
        if self.series is not None and not isinstance(self.series, str):
            raise InputError("'series' must be a SeriesInstanceUID (a string).")
        if isinstance(self.max_memory, bool) or not isinstance(self.max_memory, (str, int, float, type(None))):
            raise InputError("'max_memory' must be a size like '4.5GB' or a number of bytes.")
        self.names = check_name_scheme(self.names)

    def model_source(self) -> ModelSource:
        return ModelSource.from_options(self.model, self.checkpoint, self.text_encoder_checkpoint, self.variant,
                                        self.allow_download)


class Worker:
    """Runs segmentation jobs, keeping one loaded model and its caches between them."""

    def __init__(self, feature_cache_mb: float | None = None, max_memory: str | int | None = None) -> None:
        from .budget import parse_size

        self.feature_cache_bytes = int((default_feature_cache_mb() if feature_cache_mb is None else feature_cache_mb) * 2**20)
        self.max_memory = parse_size(max_memory)
        self._model_key: tuple | None = None
        self._segmenter = None
        self._last_read_key: tuple | None = None
        self._last_read = None

    def run(self, request: SegmentRequest, emit: Emit, cancel: threading.Event | None = None) -> dict:
        """Run one job; `emit` receives `progress` and `warning` events (without `id`). Returns the
        `result` event fields. Raises SATSegmentError (CancelledError when `cancel` is set)."""
        from .imageio import modality_warnings, resolve_modality  # SimpleITK: imported only when a job runs
        from .budget import parse_size
        from .outputs import segment_spec, split_paths, write_job_outputs

        cancel = cancel or threading.Event()
        started = time.monotonic()
        progress = _ProgressReporter(emit, started)

        def warn(message: str, suggestions: list[str]) -> None:
            emit({"event": "warning", "message": message, **({"suggestions": suggestions} if suggestions else {})})

        prompts = check_prompts(request.prompts)
        output, dicom = _check_outputs(request)
        max_memory = parse_size(request.max_memory) if request.max_memory is not None else self.max_memory
        terms = None
        if request.modality in MODALITIES:  # fail fast on prompts, before torch is even imported
            terms = resolve_prompts(prompts, request.modality, request.allow_free_text, warn)
        source = request.model_source()  # fails fast; a download waits for a valid image
        image, meta = self.read(request.input, request.series)
        for note in meta.get("notes", []):
            warn(note, [])
        modality = resolve_modality(request.modality, meta)
        _check_image_content(image, meta, request.roi)
        source_series = _read_source_series(meta, warn) if dicom else None
        device = _check_device(request.device, request.precision)  # the first step that imports torch
        for warning in modality_warnings(modality, meta, _array_view(image)):
            warn(warning, [])
        if terms is None:
            terms = resolve_prompts(prompts, modality, request.allow_free_text, warn)
        split_paths(request.split_dir, terms, request.overwrite, protect=(request.input,))  # existing split files: refuse before any compute
        unique_terms = list(dict.fromkeys(terms.values()))
        if request.names == "tg263" and (missing := missing_names_warning(unique_terms)):
            warn(missing, [])
        run = self._plan(request, source, device, max_memory, len(unique_terms), image, meta)
        for warning in run.warnings:
            warn(warning, [])
        source = source.download(progress, cancel)
        segmenter = self._segmenter_for(source, run, progress)
        _check_cancel(cancel)
        # The image read above, with its metadata: the pipeline keys its volume cache on its content fingerprint.
        result = segmenter.segment(image, unique_terms, modality, orientation=request.orientation,
                                   roi=request.roi, progress=progress, cancel=cancel, metadata=meta,
                                   plan=run.estimate.plan)
        _check_cancel(cancel)
        progress("write", 0, 1, "writing outputs")
        specs = [replace(spec, name=structure_name(spec.key, request.names))
                 for spec in (segment_spec(prompt, term, source.label) for prompt, term in terms.items())]
        extra = _dicom_writers(dicom, result, specs, source_series, source.label, segmenter.loaded.fingerprint) if dicom else ()
        written = write_job_outputs(output, split_paths(request.split_dir, terms, request.overwrite, protect=(request.input,)), result.masks,
                                    result.reference, specs, request.overwrite, extra)
        progress("write", 1, 1, "done")
        segments = [{**_segment_summary(spec.prompt, spec.key, result), "name": spec.name} for spec in specs]
        timings = {**result.timings, "total": round(time.monotonic() - started, 3)}
        cache = {**result.cache, "feature_cache_mb": round(segmenter.feature_cache.nbytes / 2**20, 1),
                 "feature_cache_cap_mb": round(segmenter.feature_cache.max_bytes / 2**20, 1)}
        return {"outputs": written, "segments": segments, "timings": timings, "cache": cache,
                "modality": modality, "model": source.label, "device": str(run.device), "precision": run.precision,
                "memory": {"plan": str(run.estimate.plan), "estimate_mb": round(run.estimate.needed / 2**20),
                           "budget_mb": None if run.budget is None else round(run.budget / 2**20)}}

    def read(self, path: str, series: str | None = None):
        """Read (and validate) the image, reusing the last one when the file and series are unchanged (so a caller
        that reads before `run`, as the server does to tell a series it cannot read from a bad request, reads once)."""
        from .imageio import read_image

        key = (_file_key(path), series)
        if key[0] is None or key != self._last_read_key:
            self._last_read, self._last_read_key = None, None  # a failed read must not leave the old key on no image
            self._last_read = read_image(path, series_uid=series)
            self._last_read_key = key
        return self._last_read

    def _plan(self, request: SegmentRequest, source: ModelSource, device, max_memory: int | None, prompts: int,
              image, meta: dict):
        """Where and how the run goes (budget.plan_run), decided from the model config before loading anything."""
        from .budget import plan_run
        from .imageio import processed_grid_shape
        from .model.memory import VolumeSize

        volume = VolumeSize(math.prod(image.GetSize()), processed_grid_shape(image, request.orientation, meta["ras_affine"]))
        cached = self._segmenter.feature_cache.nbytes if self._segmenter is not None else 0
        return plan_run(source.config(), device, request.precision, prompts, max_memory, volume,
                        device_requested=request.device, reclaimable=cached)

    def _segmenter_for(self, source: ModelSource, run, progress):
        """The Segmenter for `source` on the run's device and precision, loading the model if needed;
        its feature cache is capped so that cache and run fit the budget together."""
        key = (source, str(run.device), run.precision)
        if key != self._model_key:
            from .pipeline import Segmenter

            self._segmenter = self._model_key = None  # free the previous model first
            progress("load_model", 0, 1, f"loading {source.label}")
            loaded = source.load(str(run.device))
            self._segmenter = Segmenter(loaded, str(run.device), self.feature_cache_bytes, run.precision)
            self._model_key = key
            progress("load_model", 1, 1, f"{source.label} loaded")
            _embed_vocabulary(loaded, progress)
        spare = run.budget - run.estimate.needed if run.budget is not None and run.device.type == "cpu" else None
        self._segmenter.feature_cache.limit(self.feature_cache_bytes if spare is None else min(self.feature_cache_bytes, spare))
        return self._segmenter


def _embed_vocabulary(loaded, progress) -> None:
    """Embed SAT's whole vocabulary once per model (cached on disk), so known prompts never need the text
    encoder; it is freed afterwards, so its memory is not held beside the backbone's."""
    from . import vocabulary
    from .model import precompute_embeddings

    pairs = [(t.term, m) for t in vocabulary.terms() for m in t.modalities]
    if any(loaded.embeddings.get(term, m) is None for term, m in pairs):
        progress("embed_vocabulary", 0, len(pairs), "embedding SAT's vocabulary once for this model")
        precompute_embeddings(loaded, pairs, progress=lambda done, total: progress("embed_vocabulary", done, total, "embedding SAT's vocabulary"))
        loaded.release_text_encoder()


def _file_key(path: str) -> tuple | None:
    """Identity of an input file or DICOM folder (path, size, modification times), None if unreadable."""
    try:
        target = Path(path).expanduser().resolve()
        entries = sorted(target.iterdir()) if target.is_dir() else [target]
        return (str(target),) + tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())
    except OSError:
        return None


def _check_device(name: str, precision: str):
    """The torch.device of the job; an unavailable device or precision is refused before any heavy work."""
    from .budget import resolve_precision
    from .model import resolve_device

    device = resolve_device(name)
    resolve_precision(precision, device.type)
    return device


def _check_outputs(request: SegmentRequest):
    """The .seg.nrrd path (or None) and the DICOM targets, checked before any compute (at least one output)."""
    from .dicomout import check_dicom_targets
    from .outputs import check_output_dir, check_output_path

    if not (request.output or request.dicom_seg or request.rtstruct):
        raise InputError("No output was given.", "Add -o OUT.seg.nrrd, and/or --dicom-seg OUT.dcm or --rtstruct OUT.dcm "
                         "for a DICOM series.")
    output = check_output_path(request.output, request.overwrite, protect=(request.input,)) if request.output else None
    dicom = check_dicom_targets(request.input, request.dicom_seg, request.rtstruct, request.overwrite, others=[output])
    if request.split_dir:
        check_output_dir(request.split_dir, create=True)
    return output, dicom


def _read_source_series(meta: dict, warn):
    """The DICOM source series' headers, checked for DICOM outputs (UIDs, one patient, single-frame) before compute:
    exactly the files, in the order, that the image was read from (`meta["series_order"]`)."""
    from .dicomout import read_source_series

    series = read_source_series(meta["series_order"])
    for note in series.notes:
        warn(note, [])
    return series


def _dicom_writers(targets, result, specs, source_series, model_label: str, fingerprint: str | None):
    """Writers of the job's DICOM outputs: its masks, structures named as in the .seg.nrrd, the model used."""
    from .dicomout import Algorithm, Structure, dicom_writers
    from .imageio import lps_affine_of

    structures = [Structure.for_term(spec.key, name=spec.name) for spec in specs]
    algorithm = Algorithm(model=model_label, version=(fingerprint or "unknown")[:64])
    return dicom_writers(targets, result.masks, lps_affine_of(result.reference), structures, source_series, algorithm)


def _check_image_content(image, meta: dict, roi: list[float] | None) -> None:
    """What can be refused from the image alone before the model loads: no foreground, an ROI outside it."""
    from .preprocess import check_foreground, check_roi_overlaps

    check_foreground(_array_view(image))
    if roi is not None:
        check_roi_overlaps(roi, meta["ras_affine"], image.GetSize())


def _segment_summary(prompt: str, term: str, result) -> dict:
    mask = result.masks[term]
    voxels = int(np.count_nonzero(mask))
    voxel_ml = float(np.prod(result.reference.GetSpacing())) / 1000.0
    return {"prompt": prompt, "term": term, "name": term, "voxels": voxels,
            "volume_ml": round(voxels * voxel_ml, 3), "empty": voxels == 0}


def _array_view(image) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise CancelledError("The job was cancelled; nothing was written.")


class _ProgressReporter:
    """Turns pipeline progress callbacks into `progress` events with job fraction, elapsed and ETA.

    The ETA extrapolates the windows done so far (the bulk of the work); before the first window it is null.
    """

    def __init__(self, emit: Emit, started: float) -> None:
        self.emit = emit
        self.started = started
        self._inference_started = started
        order = list(_STAGE_SHARE)
        self._offset = {stage: sum(_STAGE_SHARE[s] for s in order[:i]) for i, stage in enumerate(order)}

    def __call__(self, stage: str, current: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        eta = None
        if stage == "inference" and current > 0 and total:
            eta = round((now - self._inference_started) / current * (total - current), 1)
        elif stage != "inference":
            self._inference_started = now
        within = current / total if total else 0.0
        fraction = min(1.0, self._offset.get(stage, 0.0) + _STAGE_SHARE.get(stage, 0.0) * within)
        self.emit({"event": "progress", "stage": stage, "current": current, "total": total,
                   "fraction": round(fraction, 4), "elapsed": round(now - self.started, 2), "eta": eta, "message": message})

