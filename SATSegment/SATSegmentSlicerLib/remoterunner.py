"""One SAT run on a SATSegment server (MONAI Label): export the volume, upload it (or name its series when the
server's datastore is the PACS it came from), import the result.

The volume goes only to the server the user typed. A volume loaded from DICOM and unchanged since is not
uploaded when the server's datastore is a DICOMweb server holding its series with as many instances as Slicer
loaded (`GET /sat/images/{SeriesInstanceUID}`): the server reads the series itself, on the same grid (and the
volume is uploaded after all when it cannot). The request blocks in a worker thread
(`remote.LabelServerClient`, standard library HTTP); a second thread asks the server where the job is
(`status`: queued with n jobs ahead, running). `poll()`, called from the GUI's timer, delivers progress and
the end in the main thread, where the result goes through exactly the import of local results
(`RunnerBase._importResult`: names, terminology, colours, conflict policy, undo). No Qt here.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from typing import Callable

from .dicomlinks import dicomSeries
from .remote import LabelServerClient, RemoteError, RemoteResult, new_job_id
from .runner import RESULT_FILE, FinishedCallback, ProgressCallback, RunnerBase, RunRequest

STATUS_INTERVAL_S = 1.0
# what the server answers when it cannot read a series from its PACS (cannot read it, its PACS failed, no longer has
# it): the volume is uploaded instead; never on the user's own errors (bad_input: e.g. an ROI outside the image)
PACS_FAILURES = ("series_unreadable", "datastore_error", "not_found")
CANCEL_GRACE_S = 5.0  # a run whose server has not ended the request this long after Cancel is left behind (and a
# cancel lost on the network is sent again for that long)


def errorEvent(exc: RemoteError) -> dict:
    """The run's error event from a server error: its code, message, hint and suggestions."""
    return {"event": "error", "code": exc.code, "message": exc.message, "hint": exc.hint,
            "suggestions": list(exc.suggestions), "status": exc.status}


class RemoteRunner(RunnerBase):
    """Runs one job at a time on a server and imports its result into the scene."""

    def __init__(self, client: LabelServerClient, onProgress: ProgressCallback | None = None,
                 onFinished: FinishedCallback | None = None, tempRoot: str | None = None,
                 clientVersion: str | None = None) -> None:
        super().__init__(onProgress, onFinished, tempRoot)
        self.client, self.clientVersion = client, clientVersion
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._cancelDeadline: float | None = None
        self._uploadIds: dict[str, str] = {}  # a run's job id -> the id its upload gets when the server cannot read
        # the series from its PACS (the server refuses an id it has seen); made at start so that Cancel covers both
        self._serverIds: dict[str, str] = {}  # a run's job id -> that upload id, once it is sent

    def start(self, request: RunRequest) -> str:
        """Export the volume and send the job from a worker thread; returns the job id. The scene is not changed."""
        inputPath = self._prepare(request)
        jobId = new_job_id()
        self._jobId, self._cancelDeadline, self._done = jobId, None, threading.Event()
        self._uploadIds[jobId] = new_job_id()
        options = {**self._options(request), "series": dicomSeries(request.volumeNode)}
        threading.Thread(target=self._send, args=(jobId, str(inputPath), request, options, self._done), daemon=True).start()
        return jobId

    def _send(self, jobId: str, inputPath: str, request: RunRequest, options: dict, done: threading.Event) -> None:
        """Worker thread: check the server's version, then send the job (with the chosen model when the server
        serves it; the volume or its series' name) and wait for its answer, its status followed meanwhile."""
        try:
            served = self.client.check(self.clientVersion).get("models", [])
            model = request.model if request.model in served else None  # else the server's default model
            image = self._imageOnServer(jobId, options["series"])
            threading.Thread(target=self._watch, args=(jobId, done), daemon=True).start()  # after saying which
            send = functools.partial(self.client.segment, request.prompts, request.modality, roi=options.get("roi"),
                                     sat_model=model, output_format="seg.nrrd", allow_free_text=request.allowFreeText)
            self._events.put((jobId, "result", self._segment(jobId, send, image, inputPath)))
        except RemoteError as exc:
            self._events.put((jobId, "error", exc))
        except Exception as exc:  # noqa: BLE001 - whatever breaks in the thread ends the run as an error
            self._events.put((jobId, "error", RemoteError(f"The request failed: {exc}", code="internal_error")))

    def _segment(self, jobId: str, send: Callable[..., RemoteResult], image: str | None, inputPath: str) -> RemoteResult:
        """Worker thread: the job's request (on the PACS series, else the upload); a job the server did not answer
        in time is cancelled there, so that it does not run for nobody, and the error says so."""
        try:
            return self._fromPacsElseUpload(jobId, send, image, inputPath) if image else send(image_path=inputPath,
                                                                                               job_id=jobId)
        except RemoteError as exc:
            if exc.code != "timed_out" or not self.askCancel(self._serverIds.get(jobId, jobId)):
                raise
            raise RemoteError(f"{exc.message} The job was cancelled on the server.", exc.hint, exc.status, exc.code) from None

    def _imageOnServer(self, jobId: str, series: tuple[str, int] | None) -> str | None:
        """Worker thread: the SeriesInstanceUID to name when the server's datastore is a PACS holding the volume's
        series (the same number of instances), else None (upload); says which as progress."""
        info = None
        if series is not None:
            try:
                info = self.client.image_info(series[0])
            except RemoteError:  # the PACS behind the server failed to answer: the upload needs no PACS
                info = None
        fromPacs = bool(info and info.get("datastore") == "dicomweb" and info.get("exists")
                        and info.get("instances") == series[1])
        self._events.put((jobId, "status", {"state": "reading from the PACS" if fromPacs else "uploading", "position": 0,
                                            "message": "the server reads the series from the PACS" if fromPacs
                                            else "uploading the volume"}))
        return series[0] if fromPacs else None

    def _fromPacsElseUpload(self, jobId: str, send: Callable[..., RemoteResult], image: str, inputPath: str) -> RemoteResult:
        """Worker thread: the job on the series the server reads from its PACS; when it cannot read it, the job
        again on the uploaded volume (under the run's upload id: the server refuses one it has seen)."""
        try:
            return send(image_id=image, job_id=jobId)
        except RemoteError as exc:
            if exc.code not in PACS_FAILURES or self._jobId != jobId or self._cancelDeadline is not None:
                raise
            self._events.put((jobId, "status", {"state": "uploading", "position": 0, "message": "uploading the volume "
                                                f"(the server could not read the series from the PACS: {exc.message})"}))
        self._serverIds[jobId] = self._uploadIds[jobId]  # cancelled with the run's id: refused after Cancel
        return send(image_path=inputPath, job_id=self._serverIds[jobId])

    def _watch(self, jobId: str, done: threading.Event) -> None:
        """Status thread: where the job is on the server, about every second, until it ends."""
        while not done.wait(STATUS_INTERVAL_S):
            status = self.jobStatus(jobId)
            if status is not None:
                self._events.put((jobId, "status", status))

    def jobStatus(self, jobId: str) -> dict | None:
        """The server's {'state', 'position', 'fraction'} for the job, or None when the server cannot tell."""
        try:
            return self.client.status(self._serverIds.get(jobId, jobId))
        except RemoteError:
            return None

    def askCancel(self, serverId: str) -> bool:
        """Ask the server to stop job `serverId`; False when it does not know the id (it then refuses it when it
        arrives) or cannot cancel. A request lost on the network is sent again about every second for CANCEL_GRACE_S."""
        deadline = time.monotonic() + CANCEL_GRACE_S
        while True:
            try:
                return bool(self.client.cancel(serverId))
            except RemoteError as exc:
                if exc.status is not None or time.monotonic() + STATUS_INTERVAL_S > deadline:  # answered, or too late
                    return False
            time.sleep(STATUS_INTERVAL_S)

    def cancel(self) -> None:
        """Stop the run without waiting on the network (the GUI calls this): a thread asks the server to stop the
        job (its id and its upload's); the run ends when the server ends the request, at once when the server
        knows neither id or cannot be asked, and CANCEL_GRACE_S from now at the latest (a late answer is dropped)."""
        jobId = self._jobId
        if not jobId or self._cancelDeadline is not None:
            return
        self._cancelDeadline = time.monotonic() + CANCEL_GRACE_S
        serverIds = (jobId, self._uploadIds[jobId])
        threading.Thread(target=self._sendCancel, args=(jobId, serverIds), name=f"SATSegment cancel {jobId}",
                         daemon=True).start()

    def _sendCancel(self, jobId: str, serverIds: tuple[str, ...]) -> None:
        """Thread: cancel every id of the run on the server; when it knew none (e.g. the upload still arriving), the
        run ends now: the server remembers the ids as cancelled and refuses them when they arrive."""
        known = [self.askCancel(serverId) for serverId in serverIds]  # every id is asked
        if not any(known):
            self._events.put((jobId, "abandoned", None))

    def poll(self) -> None:
        """Deliver what the threads reported, in this (the main) thread."""
        while True:
            try:
                jobId, kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if jobId == self._jobId:
                self._handle(kind, payload)
        if self._cancelDeadline is not None and self._jobId and time.monotonic() > self._cancelDeadline:
            self._events.put((self._jobId, "abandoned", None))

    def _handle(self, kind: str, payload) -> None:
        if kind == "status":
            if payload.get("state") != "unknown":  # not on the server yet (uploading): what was said stays
                self.onProgress({"event": "progress", "stage": "server", "state": payload.get("state", ""),
                                 "position": payload.get("position", 0), "fraction": payload.get("fraction"),
                                 "message": payload.get("message") or _statusText(payload)})
            return
        self._done.set()
        self._serverIds.pop(self._jobId, None)
        self._uploadIds.pop(self._jobId, None)
        if kind == "result":
            (self._workDir / RESULT_FILE).write_bytes(payload.data)
            params = payload.params
            self._warnings.extend({"event": "warning", **warning} for warning in params.get("warnings", []))
            self._end("result", {"segments": params.get("segments", []), "timings": params.get("timings", {})})
        elif kind == "error" and payload.code != "cancelled":
            self._end("error", errorEvent(payload))
        else:  # cancelled by the server, or abandoned
            self._end("cancelled", {})

    def waitUntilFinished(self, timeout: float) -> None:
        """Block (polling) until the current run ends: for scripts and tests, never for the GUI."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            self.poll()
            time.sleep(0.05)

    def shutdown(self) -> None:
        """Cancel a running job (the module closes or the scene is cleared)."""
        if self.busy:
            self.cancel()
            self._events.put((self._jobId, "abandoned", None))
            self.poll()


def _statusText(status: dict) -> str:
    """English progress text for a status (the widget words its own, translatable)."""
    if status.get("state") == "queued":
        return f"waiting: {status.get('position', 0)} jobs ahead"
    return str(status.get("state", ""))
