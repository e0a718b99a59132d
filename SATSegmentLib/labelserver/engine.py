"""The server's engine: one `job.Worker` (model loaded once, text embeddings and backbone features
cached) shared by every client, running one job at a time, turns shared round-robin across clients (`jobs`).

`InferEngine.infer` takes a client's params and an image path and returns the result file and the
JSON that goes back with it: the label names and values, the segments, warnings, timings, cache use.
The job follows the engine's progress (`Job.fraction`, for its status). An image fetched from the PACS that
cannot be read is answered `series_unreadable`, apart from the client's own errors, so a client can upload instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import CancelledError, InputError, SATSegmentError
from ..job import Worker
from .jobs import Job, JobQueue, cancelled
from .labelmap import write_labelmap
from .params import InferParams, ServerSettings, parse_params


class SeriesUnreadableError(SATSegmentError):
    """A series the server fetched from its PACS cannot be read as one volume (a slice missing, mixed sizes...)."""

    code = "series_unreadable"
    exit_code = 2


class InferEngine:
    """Runs `sat` requests on one shared Worker, one at a time; `jobs` queues them and lets clients cancel them."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.worker = Worker(settings.feature_cache_mb, settings.max_memory)
        self.jobs = JobQueue()

    def infer(self, params: dict, image: str, job_id: str | None = None, series: str | None = None) -> tuple[str, dict]:
        """Segment `image` as `params` ask, as the registered job `job_id` (None: a new anonymous job; one that has
        already ended is refused, never run); `series` is the PACS series UID `image` was fetched as (None for an
        upload). Returns (result file path, result JSON). The file is a temporary file the caller removes; nothing
        else the job wrote is left. Raises SATSegmentError (BadRequestError for params, CancelledError when
        cancelled, SeriesUnreadableError when `series` cannot be read)."""
        job = self.jobs.claim(job_id) if job_id else self.jobs.submit(None, "local")
        state = "failed"
        try:
            answer = self._run(job, params, image, series)
            state = "done"
            return answer
        except CancelledError:
            state = "cancelled"
            raise cancelled(job) from None
        finally:
            self.jobs.finish(job, state)

    def _run(self, job: Job, params: dict, image: str, series: str | None) -> tuple[str, dict]:
        workdir = Path(tempfile.mkdtemp(prefix="satsegment-infer-"))
        try:
            request = parse_params(params, image, workdir, self.settings)
            warnings: list[dict] = []
            with self.jobs.turn(job):
                if series is not None:
                    self._read_series(image, series)
                result = self.worker.run(request.request, _follower(job, warnings), job.cancel)
            path, overlap = _result_file(request, result, workdir)
            return _move_out(path), {**_result_json(request, result, warnings), "overlap_voxels": overlap, "job_id": job.id}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


    def _read_series(self, image: str, series: str) -> None:
        """Read the series fetched from the PACS (the worker keeps it for the run); SeriesUnreadableError if it
        cannot be read, which a client answers by uploading the volume it holds."""
        try:
            self.worker.read(image)
        except InputError as exc:
            raise SeriesUnreadableError(f"The server cannot read series {series[:80]} from its PACS: {exc.message}",
                                        "Upload the volume instead (the Slicer module does so by itself); the PACS "
                                        "copy of the series may be incomplete, ask the administrator.") from None


def _move_out(path: str) -> str:
    """The result file moved out of the job's folder (removed with everything else the job wrote) to a
    temporary file of its own, which MONAI Label deletes once it is sent."""
    suffix = ".seg.nrrd" if path.endswith(".seg.nrrd") else ".nii.gz"
    handle, target = tempfile.mkstemp(prefix="satsegment-result-", suffix=suffix)
    os.close(handle)
    shutil.move(path, target)
    return target


def _follower(job: Job, warnings: list[dict]):
    """The worker's event callback: progress advances the job's fraction, warnings are kept for the answer."""
    def follow(event: dict) -> None:
        if event.get("event") == "progress" and event.get("fraction") is not None:
            job.advance(event["fraction"])
        elif event.get("event") == "warning":
            warnings.append({key: event[key] for key in ("message", "suggestions") if key in event})
    return follow


def _result_file(job: InferParams, result: dict, workdir: Path) -> tuple[str, int]:
    """The file sent back (the job's .seg.nrrd, or one label image built from its split masks) and the
    number of voxels the label image could not give to every mask that holds them."""
    if job.output_format == "seg.nrrd":
        return result["outputs"]["segmentation"], 0
    split = result["outputs"]["split"]
    path, overlap = write_labelmap(workdir / "labels.nii.gz", [split[s["prompt"]] for s in result["segments"]])
    return str(path), overlap


def _result_json(job: InferParams, result: dict, warnings: list[dict]) -> dict:
    """What the client gets with the file: label names → values, the segments and the run's report."""
    segments = [{**segment, "label": value} for value, segment in enumerate(result["segments"], start=1)]
    return {"label_names": {s["name"]: s["label"] for s in segments}, "segments": segments,
            "output_format": job.output_format, "warnings": warnings, "sat_model": job.model_name,
            "modality": result["modality"], "device": result["device"], "timings": result["timings"],
            "cache": result["cache"], "satsegment_version": __version__}
