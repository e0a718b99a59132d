"""The SATSegment MONAI Label app: `monailabel start_server --app <this folder> --studies <folder or DICOMweb URL>`.

`satsegment server` finds this folder and starts MONAI Label with it. `--conf models nano,pro`, `--conf device
cuda`, `--conf max_memory 40GB` and `--conf feature_cache_mb 8192` set what the server runs (docs/server.md).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import traceback

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

from SATSegmentLib import __version__
from SATSegmentLib.labelserver import auth, routes
from SATSegmentLib.labelserver.engine import InferEngine
from SATSegmentLib.labelserver.httperrors import not_found
from SATSegmentLib.labelserver.images import datastore_failed
from SATSegmentLib.labelserver.params import ServerSettings
from SATSegmentLib.labelserver.task import JOB_KEY, SERIES_KEY, SATInferTask

logger = logging.getLogger(__name__)


class SATSegmentApp(MONAILabelApp):
    """One infer task, `sat`, backed by one engine (model loaded once, caches shared by all clients), served
    by our own routes (off the event loop, with a job queue and cancel) and a working token check."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        from monailabel.app import app

        self.settings = ServerSettings.from_conf(conf or {})
        self.engine = InferEngine(self.settings)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf or {}, name="SATSegment",
                         description="Text-prompted 3D segmentation with SAT", version=__version__)
        routes.install(app, self.engine.jobs)
        auth.install(app)
        _answer_request_errors(app)
        _stop_jobs_on_signals(self.engine.jobs)

    def init_infers(self) -> dict:
        return {"sat": SATInferTask(self.engine)}

    def infer(self, request: dict, datastore=None) -> dict:
        """Run as the job our route registered for this request (None: the engine makes one), telling the engine
        which PACS series the image is (a series it cannot read is answered apart from the client's errors);
        refuse an image id the datastore does not hold (MONAI Label would run on an empty path)."""
        job = self.engine.jobs.current()
        image = request.get("image")
        store = datastore or self.datastore()
        stored = isinstance(image, str) and bool(image) and not os.path.exists(image)
        if stored and not _known(store, image):
            status, body = not_found(f"The server's datastore has no image {image[:80]!r}.",
                                     "List the images with GET /datastore/?output=all, or upload the image with the request.")
            raise HTTPException(status_code=status, detail=body)
        series = image if stored and isinstance(store, DICOMWebDatastore) else None
        return super().infer({**request, JOB_KEY: job.id if job else None, SERIES_KEY: series}, datastore)

    def _download_dcmqi_tools(self) -> None:
        """MONAI Label would download dcmqi into the installed package for DICOM SEG output, which this app does
        not offer (results go back as a label image or .seg.nrrd); nothing is downloaded."""


def _answer_request_errors(app) -> None:
    """Answer what MONAI Label leaves as a bare 500 with our kind of body: params that are not JSON (400), an
    unknown infer task or other invalid input (400)."""
    async def bad_json(request: Request, exc: json.JSONDecodeError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": {
            "code": "bad_request", "exit_code": 2, "message": f"'params' is not valid JSON: {exc.msg} (column {exc.colno}).",
            "hint": 'Send params as a JSON object, e.g. {"prompts": ["liver"], "modality": "ct"}.'}})

    async def monai_label_error(request: Request, exc: MONAILabelException) -> JSONResponse:
        status = 400 if exc.error == MONAILabelError.INVALID_INPUT else 500
        return JSONResponse(status_code=status, content={"detail": {
            "code": "bad_request" if status == 400 else "internal_error", "exit_code": 2 if status == 400 else 1,
            "message": exc.msg, "hint": "GET /info/ lists the infer tasks of this server (SATSegment serves 'sat')."}})

    async def params_not_an_object(request: Request, exc: Exception) -> JSONResponse:
        if not _raised_by_infer_endpoint(exc):
            raise exc  # anything else stays MONAI Label's internal error
        return JSONResponse(status_code=400, content={"detail": {
            "code": "bad_request", "exit_code": 2, "message": "'params' must be a JSON object.",
            "hint": 'Send params like {"prompts": ["liver"], "modality": "ct"}.'}})

    app.add_exception_handler(json.JSONDecodeError, bad_json)
    app.add_exception_handler(MONAILabelException, monai_label_error)
    app.add_exception_handler(TypeError, params_not_an_object)
    app.add_exception_handler(ValueError, params_not_an_object)
    app.middleware_stack = None  # built at startup, before this app existed: rebuilt with the handlers on the next request


def _stop_jobs_on_signals(jobs) -> None:
    """On Ctrl+C or SIGTERM, cancel every job before uvicorn's own handler starts the shutdown: uvicorn waits for
    every open request, so the queue would otherwise run to its end (or the server be killed, leaving clients
    without an answer); each client now gets 'cancelled (the server is stopping)'. Signals can be caught only on
    the main thread, where MONAI Label builds the app at startup."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(number)
        if callable(previous):
            signal.signal(number, functools.partial(_stop_then, jobs, previous))


def _stop_then(jobs, previous, number, frame) -> None:
    threading.Thread(target=jobs.stop, name="stop-jobs").start()  # not in the handler: it may interrupt a lock holder
    previous(number, frame)


def _raised_by_infer_endpoint(exc: Exception) -> bool:
    """Whether MONAI Label's infer endpoint itself raised `exc` (merging params that are not an object into its request)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.replace(os.sep, "/").endswith("monailabel/endpoints/infer.py")


def _known(store, image_id: str) -> bool:
    """Whether the datastore holds `image_id` (a local folder's file, or a series the DICOMweb server has).

    A DICOMweb server that fails otherwise (unreachable, refuses to send the series) is answered with 502
    and its error, not passed off as an unknown image."""
    try:
        return bool(store.get_image_uri(image_id))
    except IndexError:  # MONAI Label's DICOMweb search found no such series
        return False
    except Exception as exc:  # noqa: BLE001 - whatever the PACS client raises
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            return False
        raise datastore_failed(image_id, exc) from None
