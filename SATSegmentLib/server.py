"""The JSON-lines worker `satsegment serve` (docs/worker-protocol.md): message parsing and the protocol loop.

Jobs run through `job.Worker`, the same path as `satsegment segment`. Slicer waits on this worker, so it
must never hang or die on input: every request line gets exactly one reply whatever bytes it holds
(blank lines excepted), every accepted job exactly one final reply, and both stay small.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field, fields
from queue import Queue
from typing import BinaryIO, Callable, Iterator, get_args, get_type_hints

from . import __version__
from .errors import CancelledError, InputError, SATSegmentError, as_user_error
from .job import SegmentRequest, Worker

RequestId = str | int

# Limits on input (docs/worker-protocol.md, "Robustness"). A request line holds at most MAX_LINE_BYTES
# (without its newline): several times the largest sensible request, 1,000 prompts of 200 characters even
# \u-escaped; a longer one is refused and skipped without being held in memory.
MAX_LINE_BYTES = 4 * 2**20
MAX_ID_CHARS = 256
MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer id every JSON client (JavaScript, doubles) reads exactly
MAX_INTEGER_DIGITS = 100  # no field needs more; Python itself refuses > 4,300 digits, with a ValueError mid-parse
MAX_TEXT_CHARS = 32_767  # longest string field: the longest Windows path
OPTION_NAMES = tuple(f.name for f in fields(SegmentRequest) if f.name not in ("input", "prompts", "output", "modality"))

_OPTION_TYPES = {name: get_args(hint) or (hint,) for name, hint in get_type_hints(SegmentRequest).items()
                 if name in OPTION_NAMES}
_JSON_WHITESPACE = b" \t\r\n"
_SKIP_CHUNK = 2**16
_SHOWN_CHARS = 60
_SHOWN_ITEMS = 5
_ONE_OBJECT_PER_LINE = "Send one JSON object per line."
_PING = '{"type": "ping", "id": "1"}'
_EXAMPLE = f"Example: {_PING}"
_ID_HINT = f'An id is a string of 1 to {MAX_ID_CHARS} characters or an integer of at most 2**53 - 1 in size, e.g. {_PING}.'
_TYPE_HINT = "Use segment, cancel, ping or shutdown."
_OUTPUT_HINT = ("Give 'output' (the .seg.nrrd to write), or for a DICOM series input options 'dicom_seg' and/or "
                "'rtstruct' (the DICOM files to write) instead.")
_NUMBERS_HINT = "Requests take finite numbers of ordinary size only."
_TARGET_HINT = "Give the id of a segment request as 'target'."


class BadRequestError(InputError):
    """A worker request that is not valid JSON or lacks required fields."""

    code = "bad_request"


# ---- reading and parsing requests ------------------------------------------------------------

def read_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """The lines of `stream` without their newline, holding at most `limit + 1` bytes of one in memory.

    A line longer than `limit` comes back cut to `limit + 1` bytes (so the caller can tell it apart and
    refuse it); the rest of it is read in chunks and dropped, and the next line starts after its newline.
    """
    while line := stream.readline(limit + 1):
        if line.endswith(b"\n"):
            yield line[:-1]
            continue
        if len(line) > limit:
            while (chunk := stream.readline(_SKIP_CHUNK)) and not chunk.endswith(b"\n"):
                pass
        yield line


def decode_request(line: bytes) -> dict:
    """One request line (without its newline) as a JSON object, or BadRequestError saying what is wrong.

    Strict where leniency would go unnoticed: the line must be UTF-8, numbers finite (no NaN or Infinity,
    which are not JSON) and integers at most `MAX_INTEGER_DIGITS` digits long.
    """
    if len(line) > MAX_LINE_BYTES:
        raise BadRequestError(f"The line is longer than {MAX_LINE_BYTES:,} bytes, the limit for one request; it was skipped.",
                              _ONE_OBJECT_PER_LINE)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"The line is not valid UTF-8 (byte 0x{line[exc.start]:02x} at offset {exc.start}).",
                              "Encode requests as UTF-8.") from None
    try:
        message = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"The line is not valid JSON: {exc.msg} (column {exc.colno}).", _ONE_OBJECT_PER_LINE) from None
    except RecursionError:
        raise BadRequestError("The line is nested too deeply to be a request.", _ONE_OBJECT_PER_LINE) from None
    if not isinstance(message, dict):
        raise BadRequestError(f"A request must be a JSON object, got {_kind(message)}.", _EXAMPLE)
    return message


def _parse_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise BadRequestError(f"A number in the request has {digits:,} digits; at most {MAX_INTEGER_DIGITS} are accepted.", _NUMBERS_HINT)
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadRequestError(f"The number {_shown(literal)} is too large.", _NUMBERS_HINT)
    return value


def _refuse_constant(name: str) -> float:
    raise BadRequestError(f"{name} is not a JSON number.", _NUMBERS_HINT)


def required(message: dict, name: str, hint: str) -> object:
    """The field `name` of a request, or BadRequestError if it is absent."""
    if name not in message:
        raise BadRequestError(f"The request has no '{name}'.", hint)
    return message[name]


def check_id(value: object, name: str = "id") -> RequestId:
    """`value` if it is an acceptable request id, else BadRequestError saying exactly what is wrong.

    An id is a non-empty string of at most `MAX_ID_CHARS` characters, or an integer (not a boolean) of at
    most `MAX_SAFE_INTEGER` in size: it is echoed in every reply, so it must be short and read back exactly.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequestError(f"'{name}' must be a string or an integer, got {_kind(value)}.", _ID_HINT)
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        raise BadRequestError(f"'{name}' must be an integer between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER} (2**53 - 1).", _ID_HINT)
    if isinstance(value, str) and not 0 < len(value) <= MAX_ID_CHARS:
        raise BadRequestError(f"'{name}' must be 1 to {MAX_ID_CHARS} characters long, got {len(value):,}.", _ID_HINT)
    return value


def parse_segment_request(message: dict) -> SegmentRequest:
    """Build a `SegmentRequest` from a worker `segment` message, refusing missing or ill-typed fields.

    Only the shape is checked here; the job checks the values (files, prompts, device) as `satsegment segment` does.
    """
    options = message.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise BadRequestError(f"'options' must be an object, got {_kind(options)}.")
    unknown = [name for name in options if name not in OPTION_NAMES]
    if unknown:
        raise BadRequestError(f"Unknown option(s): {_listing(unknown)}.", f"Known options: {', '.join(OPTION_NAMES)}.")
    _check_text("'input'", message.get("input"))
    if message.get("output") is not None or not (options.get("dicom_seg") or options.get("rtstruct")):
        if message.get("output") is None:  # optional only when a DICOM output is asked for
            raise BadRequestError("The request has no 'output'.", _OUTPUT_HINT)
        _check_text("'output'", message["output"])
    modality = message.get("modality")
    if modality is not None:
        _check_text("'modality'", modality)
    prompts = message.get("prompts")
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise BadRequestError("'prompts' must be a list of strings.")
    for name, value in options.items():
        _check_option(name, value)
    return SegmentRequest(input=message["input"], prompts=prompts, output=message.get("output"),
                          modality="auto" if modality is None else modality, **options)


def _check_option(name: str, value: object) -> None:
    """Refuse an option value that does not fit the type of its `SegmentRequest` field (null where that allows None)."""
    allowed = _OPTION_TYPES[name]
    if value is None and type(None) in allowed:
        return
    if name == "roi":
        if not (isinstance(value, list) and len(value) == 6 and all(_is_number(v) for v in value)):
            raise BadRequestError("Option 'roi' must be a list of six numbers [x0, y0, z0, x1, y1, z1] (RAS mm).")
    elif bool in allowed:
        if not isinstance(value, bool):
            raise BadRequestError(f"Option '{name}' must be true or false, got {_kind(value)}.")
    elif int in allowed and _is_number(value):
        return  # a number of bytes (max_memory): its size is the job's to check
    else:
        _check_text(f"Option '{name}'", value)


def _check_text(label: str, value: object) -> None:
    """A string field (a path, a name): non-empty, no NUL character, at most `MAX_TEXT_CHARS` long."""
    if not isinstance(value, str):
        raise BadRequestError(f"{label} must be a non-empty string, got {_kind(value)}.")
    if not value:
        raise BadRequestError(f"{label} must be a non-empty string.")
    if "\0" in value:
        raise BadRequestError(f"{label} contains a NUL character.")
    if len(value) > MAX_TEXT_CHARS:
        raise BadRequestError(f"{label} is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are accepted.")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: object) -> str:
    """What a decoded JSON value is, for messages: 'a list', 'an object', 'null', ..."""
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), "null")


def _shown(text: str) -> str:
    """`text` quoted for a message and cut short: a reply never echoes a huge field."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _listing(names: list[str]) -> str:
    shown = ", ".join(_shown(name) for name in names[:_SHOWN_ITEMS])
    more = len(names) - _SHOWN_ITEMS
    return f"{shown} and {more:,} more" if more > 0 else shown


# ---- the JSON-lines protocol -----------------------------------------------------------------

@dataclass
class _Job:
    """An accepted `segment` request. Setting `cancel` stops it while it runs, or skips it while it is queued."""

    id: RequestId
    request: SegmentRequest
    cancel: threading.Event = field(default_factory=threading.Event)


class _Server:
    """One worker session: a reader thread answers requests as they arrive; the calling thread runs jobs one at a time.

    `lock` guards the state both threads share (`pending`, `running`, `closed`, `bye_id`) and every write
    to stdout, so a change and the reply announcing it are one step: a job's final reply and its removal
    from `pending` happen together, and a cancel either finds the job pending or comes after its final reply.
    """

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, worker: Worker) -> None:
        self.stdin, self.stdout, self.worker = stdin, stdout, worker
        self.lock = threading.RLock()
        self.jobs: Queue[_Job | None] = Queue()  # None: no more jobs
        self.pending: dict[RequestId, _Job] = {}  # accepted and not answered yet: queued or running
        self.running: _Job | None = None
        self.closed = False  # no more requests are read: end of input or shutdown
        self.bye_id: RequestId | None = None
        self.handlers: dict[str, Callable[[RequestId, dict], None]] = {
            "segment": self.enqueue, "cancel": self.cancel, "ping": self.ping, "shutdown": self.shutdown}

    def emit(self, event: dict) -> None:
        """Write one reply line as ASCII-only JSON (\\u escapes): UTF-8 for the client whatever the platform's locale."""
        data = json.dumps(event, default=str).encode("ascii") + b"\n"
        with self.lock:
            self.stdout.write(data)
            self.stdout.flush()

    def error(self, request_id: RequestId | None, exc: SATSegmentError) -> None:
        self.emit({"event": "error", "id": request_id, **exc.to_dict()})

    def read_requests(self) -> None:
        """Reader thread: answers ping, cancel and shutdown at once and queues segment jobs, until shutdown
        or end of input; then the job loop ends once the queued jobs are done."""
        try:
            for line in read_lines(self.stdin, MAX_LINE_BYTES):
                if line.strip(_JSON_WHITESPACE):
                    self.handle_line(line)
                if self.closed:  # by shutdown, on this thread
                    return
        except (OSError, ValueError) as exc:  # stdin closed under us
            print(f"satsegment serve: stdin: {exc}", file=sys.stderr)
        finally:
            self.close()

    def handle_line(self, line: bytes) -> None:
        """Answer one request line; whatever it holds, the reader carries on."""
        request_id: RequestId | None = None
        try:
            message = decode_request(line)
            request_id = check_id(required(message, "id", _ID_HINT))
            self.handler(message)(request_id, message)
        except SATSegmentError as exc:
            self.error(request_id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, not the reader: Slicer waits on it
            traceback.print_exc(file=sys.stderr)
            self.error(request_id, as_user_error(exc))

    def handler(self, message: dict) -> Callable[[RequestId, dict], None]:
        kind = required(message, "type", _TYPE_HINT)
        if not isinstance(kind, str):
            raise BadRequestError(f"'type' must be a string, got {_kind(kind)}.", _TYPE_HINT)
        if kind not in self.handlers:
            raise BadRequestError(f"Unknown request type {_shown(kind)}.", _TYPE_HINT)
        return self.handlers[kind]

    def enqueue(self, request_id: RequestId, message: dict) -> None:
        job = _Job(request_id, parse_segment_request(message))
        with self.lock:
            if request_id in self.pending:
                raise BadRequestError(f"A job with id {request_id!r} is already queued or running.", "Use a new id per request.")
            self.pending[request_id] = job
            self.emit({"event": "accepted", "id": request_id})
            self.jobs.put(job)

    def cancel(self, request_id: RequestId, message: dict) -> None:
        """Stop the target job; it answers `cancelled` (now if it runs, when its turn comes if it is queued)."""
        target = check_id(required(message, "target", _TARGET_HINT), "target")
        with self.lock:
            if target not in self.pending:
                raise BadRequestError(f"No queued or running job has id {target!r}.", _TARGET_HINT)
            self.pending[target].cancel.set()

    def ping(self, request_id: RequestId, message: dict) -> None:
        with self.lock:
            self.emit({"event": "pong", "id": request_id, "version": __version__, "busy": self.running.id if self.running else None})

    def shutdown(self, request_id: RequestId, message: dict) -> None:
        """Cancel every pending job and stop reading; the job loop answers them in order, then `bye`."""
        with self.lock:
            self.bye_id = request_id
            for job in self.pending.values():
                job.cancel.set()
            self.close()

    def close(self) -> None:
        """Accept no more jobs: the job loop ends after the queued ones. Called once or more."""
        with self.lock:
            if not self.closed:
                self.closed = True
                self.jobs.put(None)

    def run_jobs(self) -> None:
        """Job loop: runs queued jobs in order, answers each exactly once, then says `bye`."""
        while (job := self.jobs.get()) is not None:
            with self.lock:
                self.running = job
            try:
                reply = self.run_one(job)
            except KeyboardInterrupt:  # Ctrl+C in the terminal that runs `satsegment serve`: the job ends, so does the worker
                with self.lock:
                    self.emit({"event": "cancelled", "id": job.id})
                raise
            with self.lock:
                self.emit(reply)
                del self.pending[job.id]
                self.running = None
        with self.lock:
            self.emit({"event": "bye", "id": self.bye_id})

    def run_one(self, job: _Job) -> dict:
        """Run one job, unless it was cancelled while queued; returns its final reply."""
        if job.cancel.is_set():
            return {"event": "cancelled", "id": job.id}
        try:
            result = self.worker.run(job.request, lambda event: self.emit({**event, "id": job.id}), job.cancel)
        except CancelledError:
            return {"event": "cancelled", "id": job.id}
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a job must never take the worker down
            if not isinstance(exc, SATSegmentError):
                traceback.print_exc(file=sys.stderr)
            return {"event": "error", "id": job.id, **as_user_error(exc).to_dict()}
        return {"event": "result", "id": job.id, **result}


def serve(stdin: BinaryIO | None = None, stdout: BinaryIO | None = None, feature_cache_mb: float | None = None,
          max_memory: str | None = None) -> int:
    """Run the JSON-lines worker until `shutdown` or end of input; returns the exit status (0).

    The protocol streams are binary (stdin's and stdout's buffers by default): requests are decoded as
    UTF-8 line by line, replies are ASCII JSON, whatever the platform's locale. While it runs,
    `sys.stdout` points at stderr, so a stray print from any library cannot corrupt the protocol.
    """
    server = _Server(stdin or _private_stdin(), stdout or sys.stdout.buffer, Worker(feature_cache_mb, max_memory))
    saved, sys.stdout = sys.stdout, sys.stderr
    try:
        reader = threading.Thread(target=server.read_requests, name="satsegment-stdin", daemon=True)
        reader.start()
        server.run_jobs()
    finally:
        sys.stdout = saved
    return 0


def _private_stdin() -> BinaryIO:
    """A reader of its own on standard input for the reader thread. When Ctrl+C ends the worker while that
    thread waits for a line, Python's shutdown closes `sys.stdin`; had the thread been holding its lock,
    Python would abort (SIGABRT) instead of exiting with 130."""
    try:
        return open(os.dup(sys.stdin.fileno()), "rb")
    except (AttributeError, OSError, ValueError):  # no real stdin (an embedding application): use what there is
        return sys.stdin.buffer
