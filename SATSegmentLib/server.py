"""The JSON-lines worker `satsegment serve` (docs/worker-protocol.md): message parsing and the protocol loop.

Jobs run through `job.Worker`, the same path as `satsegment segment`.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from dataclasses import fields
from queue import Queue
from typing import TextIO

from . import __version__
from .errors import CancelledError, InputError, SATSegmentError, as_user_error
from .job import SegmentRequest, Worker


class BadRequestError(InputError):
    """A worker request that is not valid JSON or lacks required fields."""

    code = "bad_request"


def parse_segment_request(message: dict) -> SegmentRequest:
    """Build a `SegmentRequest` from a worker `segment` message, rejecting missing or ill-typed fields."""
    options = message.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequestError("'options' must be an object.")
    known = {f.name for f in fields(SegmentRequest)}
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
        default = getattr(SegmentRequest, name, None)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise BadRequestError(f"Option '{name}' must be true or false.")
        if isinstance(default, str) and not isinstance(value, str):
            raise BadRequestError(f"Option '{name}' must be a string.")
    roi = options.get("roi")
    if roi is not None and not (isinstance(roi, list) and len(roi) == 6 and all(isinstance(v, (int, float)) for v in roi)):
        raise BadRequestError("Option 'roi' must be a list of six numbers [x0, y0, z0, x1, y1, z1] (RAS mm).")
    return SegmentRequest(input=message["input"], prompts=prompts, output=message["output"],
                          modality=message.get("modality") or "auto", **options)


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
            request = parse_segment_request(message)
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


def serve(stdin: TextIO | None = None, stdout: TextIO | None = None, feature_cache_mb: float | None = None,
          max_memory: str | None = None) -> int:
    """Run the JSON-lines worker until `shutdown` or end of input; returns the exit status (0).

    While it runs, `sys.stdout` points at stderr, so a stray print from any library cannot corrupt the protocol.
    """
    protocol_out = stdout or sys.stdout
    server = _Server(stdin or sys.stdin, protocol_out, Worker(feature_cache_mb, max_memory))
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        reader = threading.Thread(target=server.read_requests, name="satsegment-stdin", daemon=True)
        reader.start()
        server.run_jobs()
    finally:
        sys.stdout = saved
    return 0
