"""The segmentation job runner shared by `satsegment segment` and the JSON-lines worker `satsegment serve`.

`Worker` keeps the loaded model and its `pipeline.Segmenter` (text-embedding, preprocessed-volume and
backbone-feature caches) between jobs; `serve()` speaks the protocol of docs/worker-protocol.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from queue import Queue
from typing import Any, Callable, TextIO

import numpy as np

from . import __version__
from .errors import (CancelledError, InputError, ModelError, OutOfMemoryError, SATSegmentError,
                     UnknownPromptError)

Emit = Callable[[dict], None]

MAX_PROMPT_CHARS = 200
FALLBACK_FEATURE_CACHE_MB = 4096
FEATURE_CACHE_RAM_SHARE = 0.4  # a full-size SAT-Nano window's features are ~2 GB; the model itself needs ~11 GB on CPU


def default_feature_cache_mb() -> float:
    """Feature-cache cap when none is given: a share of the physical RAM (fallback 4096 MB where it is unknown)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_FEATURE_CACHE_MB
    return round(ram * FEATURE_CACHE_RAM_SHARE / 2**20)
MODALITIES = ("ct", "mri", "pet")
# Share of the whole job per stage, for `fraction` and `eta` in progress events.
_STAGE_SHARE = {"load_model": 0.05, "embed_vocabulary": 0.0, "load": 0.02, "preprocess": 0.05, "embed": 0.02, "inference": 0.80,
                "map_back": 0.04, "write": 0.02}


class BadRequestError(InputError):
    """A worker request that is not valid JSON or lacks required fields."""

    code = "bad_request"


@dataclass
class SegmentRequest:
    """One segmentation job: the fields of a `segment` request / the `segment` command's options."""

    input: str
    prompts: list[str]
    output: str
    modality: str = "auto"
    model: str = "nano"
    checkpoint: str | None = None
    text_encoder_checkpoint: str | None = None
    variant: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    orientation: str = "RAS"
    roi: list[float] | None = None
    split_dir: str | None = None
    overwrite: bool = False
    allow_free_text: bool = False
    allow_download: bool = False

    @classmethod
    def from_message(cls, message: dict) -> "SegmentRequest":
        """Build from a worker `segment` request, rejecting missing or ill-typed fields."""
        options = message.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequestError("'options' must be an object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BadRequestError(f"Unknown option(s): {', '.join(unknown)}.", f"Known options: {', '.join(sorted(known - {'input', 'prompts', 'output'}))}.")
        for name in ("input", "output"):
            if not isinstance(message.get(name), str) or not message[name]:
                raise BadRequestError(f"'{name}' must be a non-empty string (a path).")
        prompts = message.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise BadRequestError("'prompts' must be a list of strings.")
        for name, value in options.items():
            default = getattr(cls, name, None)
            if isinstance(default, bool) and not isinstance(value, bool):
                raise BadRequestError(f"Option '{name}' must be true or false.")
            if isinstance(default, str) and not isinstance(value, str):
                raise BadRequestError(f"Option '{name}' must be a string.")
        roi = options.get("roi")
        if roi is not None and not (isinstance(roi, list) and len(roi) == 6 and all(isinstance(v, (int, float)) for v in roi)):
            raise BadRequestError("Option 'roi' must be a list of six numbers [x0, y0, z0, x1, y1, z1] (RAS mm).")
        return cls(input=message["input"], prompts=prompts, output=message["output"],
                   modality=message.get("modality") or "auto", **options)


def check_prompts(prompts: list[str]) -> list[str]:
    """Strip prompts; refuse an empty list, empty prompts and absurdly long ones."""
    cleaned = [" ".join(str(p).split()) for p in prompts]
    if not cleaned:
        raise InputError("No prompts given.", "Add --prompt NAME (e.g. --prompt liver); `satsegment terms` lists what SAT knows.")
    for prompt in cleaned:
        if not prompt:
            raise InputError("A prompt is empty.", "Remove it, or give an anatomy name such as 'liver'.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(
                f"A prompt is {len(prompt)} characters long ('{prompt[:40]}…'); SAT prompts are anatomy names of at most {MAX_PROMPT_CHARS} characters.",
                "Give one structure per prompt, e.g. --prompt liver --prompt 'left kidney'.")
    return cleaned


def modality_warnings(modality: str, meta: dict, array: np.ndarray) -> list[str]:
    """Warnings when the image does not look like the modality SAT is told it is."""
    from .imageio import DICOM_MODALITIES

    dicom = DICOM_MODALITIES.get((meta.get("modality") or "").upper())
    if dicom and dicom != modality:
        return [f"The DICOM header says {meta['modality']} but the job runs as {modality.upper()}; "
                f"SAT's results depend on the modality (use --modality {dicom} if the header is right)."]
    sample = array.ravel()[:: max(1, array.size // 200_000)]
    low, high = np.percentile(sample, [1, 99])
    if modality == "ct" and low >= 0:
        return [f"The intensities ({low:.0f} to {high:.0f} between the 1st and 99th percentile) have no negative values, "
                "so they are not CT Hounsfield units (air is -1000, fat about -100); check --modality "
                "(or the rescale slope/intercept of the file)."]
    if modality != "ct" and low <= -900:
        return [f"Many voxels are at {low:.0f}, like air in a CT scan in Hounsfield units; is this really {modality.upper()}? Check --modality."]
    return []


class Worker:
    """Runs segmentation jobs, keeping one loaded model and its caches between them."""

    def __init__(self, feature_cache_mb: float | None = None) -> None:
        self.feature_cache_bytes = int((default_feature_cache_mb() if feature_cache_mb is None else feature_cache_mb) * 2**20)
        self._model_key: tuple | None = None
        self._segmenter = None
        self._loaded = None
        self._last_read_key: tuple | None = None
        self._last_read = None

    def run(self, request: SegmentRequest, emit: Emit, cancel: threading.Event | None = None) -> dict:
        """Run one job; `emit` receives `progress` and `warning` events (without `id`). Returns the
        `result` event fields. Raises SATSegmentError (CancelledError when `cancel` is set)."""
        from .imageio import resolve_modality  # SimpleITK: imported only when a job runs

        cancel = cancel or threading.Event()
        started = time.monotonic()
        progress = _ProgressReporter(emit, started)
        prompts = check_prompts(request.prompts)
        output = _check_outputs(request)
        _check_device(request.device, request.precision)
        model_source, model_label = _model_source(request)  # fails fast; downloads wait for a valid image
        terms = None
        if request.modality in MODALITIES:  # fail fast on prompts before reading a large image
            terms = self._resolve_prompts(prompts, request.modality, request.allow_free_text, emit)
        image, meta = self._read(request.input)
        modality = resolve_modality(request.modality, meta)
        for warning in modality_warnings(modality, meta, _array_view(image)):
            emit({"event": "warning", "message": warning})
        if terms is None:
            terms = self._resolve_prompts(prompts, modality, request.allow_free_text, emit)
        _split_paths(request, terms)  # existing split files: refuse before any compute
        if model_source is None:
            model_source, model_label = _model_source(request, progress, cancel, download=True)
        segmenter = self._segmenter_for(request, model_source, model_label, progress)
        _check_cancel(cancel)
        unique_terms = list(dict.fromkeys(terms.values()))
        before = _cache_state(segmenter, unique_terms, modality)
        # The image read above, with its metadata: the pipeline keys its volume cache on its content fingerprint.
        result = segmenter.segment(image, unique_terms, modality, orientation=request.orientation,
                                   roi=request.roi, progress=progress, cancel=cancel, metadata=meta)
        _check_cancel(cancel)
        progress("write", 0, 1, "writing outputs")
        written = _write_outputs(request, output, result, terms, model_label)
        progress("write", 1, 1, "done")
        segments = [_segment_summary(prompt, term, result) for prompt, term in terms.items()]
        timings = {**dict(getattr(result, "timings", {}) or {}), "total": round(time.monotonic() - started, 3)}
        return {"outputs": written, "segments": segments, "timings": timings,
                "cache": _cache_report(segmenter, before, result), "modality": modality, "model": model_label}

    # ---- steps -------------------------------------------------------------------------------
    def _read(self, path: str):
        """Read (and validate) the image, reusing the last one when the file is unchanged."""
        from .imageio import read_image

        key = _file_key(path)
        if key is None or key != self._last_read_key:
            self._last_read = None
            self._last_read = read_image(path)
            self._last_read_key = key
        return self._last_read

    @staticmethod
    def _resolve_prompts(prompts: list[str], modality: str, allow_free_text: bool, emit: Emit) -> dict[str, str]:
        """Prompt -> SAT term, dropping duplicates (also after resolution) with a warning."""
        from . import vocabulary

        terms: dict[str, str] = {}
        for prompt in prompts:
            try:
                term = vocabulary.resolve(prompt, modality)
            except UnknownPromptError as exc:
                suggestions = exc.suggestions or _suggest(prompt, modality)
                if not allow_free_text:
                    raise UnknownPromptError(
                        exc.message, "Use one of the suggested terms (`satsegment terms QUERY` lists more), or add "
                        "--allow-free-text to run it anyway (SAT was not trained on it: expect a poor mask).",
                        suggestions) from None
                emit({"event": "warning", "message": f"{exc.message} Running it as free text because --allow-free-text was given; "
                      "SAT was not trained on it, so the mask may be meaningless.", "suggestions": suggestions})
                term = prompt.lower()
            duplicate = next((p for p, t in terms.items() if t == term), None)
            if duplicate is not None:
                same = "is given twice" if duplicate.lower() == prompt.lower() else f"means the same as '{duplicate}' ({term})"
                emit({"event": "warning", "message": f"Prompt '{prompt}' {same}; it is segmented once."})
                continue
            terms[prompt] = term
        return terms

    def _segmenter_for(self, request: SegmentRequest, source: tuple, label: str, progress):
        """The Segmenter for the model files in `source` on the requested device, loading it if needed."""
        key = (source, request.device, request.precision)
        if key != self._model_key:
            from . import model as sat_model
            from .pipeline import Segmenter

            self._segmenter = self._loaded = self._model_key = None  # free the previous model first
            progress("load_model", 0, 1, f"loading {label}")
            if request.checkpoint:
                loaded = sat_model.load_official_checkpoints(request.checkpoint, request.text_encoder_checkpoint,
                                                             request.variant, request.device)
            else:
                loaded = sat_model.load_model_folder(source[0], request.device)
            self._loaded = loaded
            self._segmenter = Segmenter(loaded, request.device, self.feature_cache_bytes, request.precision)
            self._model_key = key
            progress("load_model", 1, 1, f"{label} loaded")
            _embed_vocabulary(loaded, progress)
        return self._segmenter


def _embed_vocabulary(loaded, progress) -> None:
    """Embed SAT's whole vocabulary once per model (cached on disk), so known prompts never need the text encoder."""
    from . import vocabulary
    from .model import precompute_embeddings

    pairs = [(t.term, m) for t in vocabulary.terms() for m in t.modalities]
    if any(loaded.embeddings.get(term, m) is None for term, m in pairs):
        progress("embed_vocabulary", 0, len(pairs), "embedding SAT's vocabulary once for this model")
        precompute_embeddings(loaded, pairs, progress=lambda done, total: progress("embed_vocabulary", done, total, "embedding SAT's vocabulary"))


def _suggest(prompt: str, modality: str, limit: int = 5) -> list[str]:
    """Closest SAT terms for an unknown prompt: completions of the whole prompt, else of its words."""
    from . import vocabulary

    found = [s.term for s in vocabulary.complete(prompt, modality, limit=limit)]
    for word in sorted(prompt.split(), key=len, reverse=True):
        if len(found) >= limit:
            break
        if len(word) >= 3:
            found += [s.term for s in vocabulary.complete(word, modality, limit=limit) if s.term not in found]
    return found[:limit]


def _model_source(request: SegmentRequest, progress=None, cancel: threading.Event | None = None,
                  download: bool = False) -> tuple[tuple | None, str]:
    """What to load: official checkpoint files, a model folder, or an installed registry model.

    A registry model that is missing raises ModelError, unless the request allows downloading: then
    it is downloaded when `download` is true, and the source is None (still to download) otherwise.
    """
    from . import modelstore

    if request.checkpoint or request.text_encoder_checkpoint:
        if not (request.checkpoint and request.text_encoder_checkpoint and request.variant):
            raise InputError("Official checkpoint files need all three of --checkpoint, --text-encoder-checkpoint and --variant.",
                             "Example: --checkpoint nano.pth --text-encoder-checkpoint nano_text_encoder.pth --variant nano")
        paths = (str(Path(request.checkpoint).expanduser()), str(Path(request.text_encoder_checkpoint).expanduser()))
        for path in paths:
            if not Path(path).is_file():
                raise ModelError(f"Checkpoint file not found: {path}", "Check the path of the official .pth file.")
        return paths + (request.variant,), f"SAT-{request.variant.capitalize()} ({Path(paths[0]).name})"
    name = request.model or "nano"
    if name in modelstore.registry():
        if name not in modelstore.installed() and request.allow_download:
            if not download:
                return None, modelstore.entry(name)["display_name"]
            modelstore.download(name, progress=progress, cancel=cancel)
        return (str(modelstore.path_for(name)),), modelstore.entry(name)["display_name"]
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelError(f"'{name}' is neither a model name ({', '.join(modelstore.registry())}) nor a model folder.",
                         "Use --model nano, --model pro, or the path of a folder with sat_config.json, segmentation.pth and text_encoder.pth.")
    return (str(folder.resolve()),), f"model folder {folder.name}"


def _file_key(path: str) -> tuple | None:
    """Identity of an input file or DICOM folder (path, size, modification times), None if unreadable."""
    try:
        target = Path(path).expanduser().resolve()
        entries = sorted(target.iterdir()) if target.is_dir() else [target]
        return (str(target),) + tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())
    except OSError:
        return None


def _cache_state(segmenter, terms: list[str], modality: str) -> dict:
    """What the segmenter holds before a job, to report afterwards what the job reused."""
    from .vocabulary import normalize_modality

    features = segmenter.feature_cache
    embeddings = segmenter.loaded.embeddings
    return {"volume_key": getattr(segmenter, "_volume_key", None), "feature_key": features.key,
            "feature_windows": len(features),
            "embeddings": sum(embeddings.get(t, normalize_modality(modality)) is not None for t in terms)}


def _cache_report(segmenter, before: dict, result) -> dict:
    """The result's `cache` field: what this job took from the worker's caches."""
    volume = before["volume_key"] is not None and before["volume_key"] == getattr(segmenter, "_volume_key", None)
    windows = len(result.processed.backbone_seconds)
    reused = min(before["feature_windows"], windows) if volume and before["feature_key"] == segmenter.feature_cache.key else 0
    return {"preprocessed_volume": volume, "backbone_windows_reused": reused, "backbone_windows_computed": windows - reused,
            "backbone_skipped": windows > 0 and reused == windows, "text_embeddings_reused": before["embeddings"],
            "feature_cache_mb": round(segmenter.feature_cache.nbytes / 2**20, 1)}


def _check_device(name: str, precision: str) -> None:
    """Refuse an unavailable device or precision before reading the image or loading the model."""
    from .model import resolve_device
    from .model.device import PRECISIONS

    device = resolve_device(name)
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision '{precision}'.", f"Use one of: {', '.join(PRECISIONS)}.")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"fp16 autocast needs a CUDA GPU, but the job runs on {device.type}.",
                         "Use --precision fp32 (default) or bf16, or --device cuda on a machine with a GPU.")


def _check_outputs(request: SegmentRequest) -> Path:
    from .outputs import check_output_dir, check_output_path

    output = check_output_path(request.output, request.overwrite)
    if request.split_dir:
        check_output_dir(request.split_dir, create=True)
    return output


def _split_paths(request: SegmentRequest, terms: dict[str, str]) -> dict[str, Path]:
    """Prompt -> NIfTI path in --split-dir (unique names); refuses existing files unless `overwrite`."""
    from .outputs import split_file_name

    if not request.split_dir:
        return {}
    folder, paths = Path(request.split_dir).expanduser(), {}
    for prompt, term in terms.items():
        name, n = split_file_name(term), 1
        while folder / name in paths.values():
            n += 1
            name = split_file_name(f"{term}_{n}")
        paths[prompt] = folder / name
        if paths[prompt].exists() and not request.overwrite:
            raise InputError(f"{paths[prompt]} already exists; it was left untouched.",
                             "Choose another --split-dir, or add --overwrite to replace it.")
    return paths


def _write_outputs(request: SegmentRequest, output: Path, result, terms: dict[str, str], model_label: str) -> dict:
    """Write the .seg.nrrd (and split NIfTI files) atomically; returns the `outputs` field."""
    from . import outputs

    specs = [segment_spec(prompt, term, model_label) for prompt, term in terms.items()]
    split_paths = _split_paths(request, terms)
    with outputs.StagedOutputs(request.overwrite) as staged:
        outputs.write_seg_nrrd(staged.temp_path(output), result.masks, result.reference, specs)
        for spec in specs:
            if spec.prompt in split_paths:
                outputs.write_nifti_mask(staged.temp_path(split_paths[spec.prompt]), result.masks[spec.key], result.reference)
        staged.commit()
    return {"segmentation": str(output), "split": {prompt: str(path) for prompt, path in split_paths.items()}}


def segment_spec(prompt: str, term: str, model_label: str):
    """Segment name, colour and Slicer terminology of a term (defaults for free text)."""
    from . import outputs, vocabulary

    try:
        info = vocabulary.terminology_for(term)
    except UnknownPromptError:  # free-text prompt: no SNOMED entry, a default colour
        return outputs.SegmentSpec(term, term, prompt, tags=outputs.provenance_tags(prompt, term, model_label))
    return outputs.SegmentSpec(term, term, prompt, info.color_rgb, info.slicer_entry,
                               outputs.provenance_tags(prompt, term, model_label))


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


def as_user_error(exc: BaseException) -> SATSegmentError:
    """Map any exception to the error a user sees (out-of-memory recognised; the rest is internal)."""
    if isinstance(exc, SATSegmentError):
        return exc
    if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower():
        return OutOfMemoryError(f"The device ran out of memory: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                                "Use --roi to segment a smaller region, close other programs, or run on --device cpu.")
    return SATSegmentError(f"Internal error: {type(exc).__name__}: {exc}",
                           "This is a bug in SATSegment; please report it with the log shown on stderr.")


# ---- the JSON-lines protocol -----------------------------------------------------------------

class _Server:
    """One worker session: a reader thread for stdin, jobs run one at a time on the calling thread."""

    def __init__(self, stdin: TextIO, stdout: TextIO, worker: Worker) -> None:
        self.stdin, self.stdout, self.worker = stdin, stdout, worker
        self.jobs: Queue = Queue()
        self.lock = threading.Lock()
        self.running: str | None = None
        self.running_cancel: threading.Event | None = None
        self.cancelled_queued: set[str] = set()
        self.queued: set[str] = set()
        self.stopping = threading.Event()
        self.bye_id: str | None = None

    def emit(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False, default=str)
        with self.lock:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def error(self, request_id, exc: SATSegmentError) -> None:
        self.emit({"event": "error", "id": request_id, **exc.to_dict()})

    def read_requests(self) -> None:
        """Reader thread: answers ping/cancel/shutdown at once, queues segment jobs."""
        try:
            for line in self.stdin:
                if line.strip():
                    self.handle_line(line)
                if self.stopping.is_set():
                    return
        except (OSError, ValueError) as exc:  # stdin closed under us
            print(f"satsegment serve: stdin: {exc}", file=sys.stderr)
        self.jobs.put(None)  # end of input: finish the queued jobs, then say bye

    def handle_line(self, line: str) -> None:
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            self.error(None, BadRequestError(f"The line is not valid JSON: {exc.msg} (column {exc.colno}).", "Send one JSON object per line."))
            return
        if not isinstance(message, dict):
            self.error(None, BadRequestError("A request must be a JSON object.", 'Example: {"type": "ping", "id": "1"}'))
            return
        request_id = message.get("id")
        kind = message.get("type")
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            self.error(None, BadRequestError("The request has no 'id' (a string chosen by the client).", 'Example: {"type": "ping", "id": "1"}'))
            return
        handler = {"ping": self.ping, "cancel": self.cancel, "shutdown": self.shutdown, "segment": self.enqueue}.get(kind)
        if handler is None:
            self.error(request_id, BadRequestError(f"Unknown request type {kind!r}.", "Use segment, cancel, ping or shutdown."))
            return
        handler(request_id, message) if kind != "shutdown" else handler(request_id)

    def ping(self, request_id, message: dict) -> None:
        self.emit({"event": "pong", "id": request_id, "version": __version__, "busy": self.running})

    def enqueue(self, request_id, message: dict) -> None:
        try:
            request = SegmentRequest.from_message(message)
        except TypeError as exc:
            self.error(request_id, BadRequestError(f"Invalid segment request: {exc}."))
            return
        except SATSegmentError as exc:
            self.error(request_id, exc)
            return
        if request_id in self.queued or request_id == self.running:
            self.error(request_id, BadRequestError(f"A job with id {request_id!r} is already queued or running.", "Use a new id per request."))
            return
        self.queued.add(request_id)
        self.emit({"event": "accepted", "id": request_id})
        self.jobs.put((request_id, request))

    def cancel(self, request_id, message: dict) -> None:
        target = message.get("target")
        if target is not None and target == self.running and self.running_cancel is not None:
            self.running_cancel.set()  # the job answers `cancelled` when it stops
        elif target in self.queued:
            self.cancelled_queued.add(target)
        else:
            self.error(request_id, BadRequestError(f"No queued or running job has id {target!r}.", "Give the id of a segment request as 'target'."))

    def shutdown(self, request_id) -> None:
        if self.stopping.is_set():
            return
        self.bye_id = request_id
        self.stopping.set()
        self.cancelled_queued.update(self.queued)
        if self.running_cancel is not None:
            self.running_cancel.set()
        self.jobs.put(None)

    def run_jobs(self) -> None:
        """Main loop: runs queued jobs in order until shutdown or end of input."""
        while True:
            item = self.jobs.get()
            if item is None:
                break
            request_id, request = item
            self.running, self.running_cancel = request_id, threading.Event()
            self.queued.discard(request_id)
            if request_id in self.cancelled_queued:
                self.cancelled_queued.discard(request_id)
                self.emit({"event": "cancelled", "id": request_id})
            else:
                self.run_one(request_id, request, self.running_cancel)
            self.running = self.running_cancel = None
        for request_id in sorted(self.cancelled_queued, key=str):
            self.emit({"event": "cancelled", "id": request_id})
        self.emit({"event": "bye", "id": self.bye_id})

    def run_one(self, request_id, request: SegmentRequest, cancel: threading.Event) -> None:
        def emit(event: dict) -> None:
            self.emit({**event, "id": request_id})

        try:
            result = self.worker.run(request, emit, cancel)
        except CancelledError:
            self.emit({"event": "cancelled", "id": request_id})
        except BaseException as exc:  # noqa: BLE001 - a job must never take the worker down
            error = as_user_error(exc)
            if not isinstance(exc, SATSegmentError):
                traceback.print_exc(file=sys.stderr)
            self.error(request_id, error)
        else:
            self.emit({"event": "result", "id": request_id, **result})


def serve(stdin: TextIO | None = None, stdout: TextIO | None = None, feature_cache_mb: float | None = None) -> int:
    """Run the JSON-lines worker until `shutdown` or end of input; returns the exit status (0).

    While it runs, `sys.stdout` points at stderr, so a stray print from any library cannot corrupt the protocol.
    """
    protocol_out = stdout or sys.stdout
    server = _Server(stdin or sys.stdin, protocol_out, Worker(feature_cache_mb))
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        reader = threading.Thread(target=server.read_requests, name="satsegment-stdin", daemon=True)
        reader.start()
        server.run_jobs()
    finally:
        sys.stdout = saved
    return 0
