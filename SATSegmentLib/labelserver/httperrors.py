"""Our errors as HTTP answers: a status a client can act on, and our message, hint and suggestions as the body."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import (CancelledError, DeviceError, DownloadError, InputError, ModelError, OutOfMemoryError,
                      SATSegmentError, UnknownPromptError, as_user_error)
from ..server import BadRequestError
from .engine import SeriesUnreadableError
from .jobs import JobConflictError, NotYourJobError, QueueFullError, ServerStoppingError, UnknownJobError

# Most specific first: UnknownPromptError, BadRequestError and JobConflictError are InputErrors.
_STATUS: tuple[tuple[type[SATSegmentError], int], ...] = (
    (BadRequestError, 400),      # params of the wrong shape or type
    (JobConflictError, 409),     # a job id used twice
    (UnknownJobError, 404),
    (NotYourJobError, 403),      # another user's job
    (QueueFullError, 503),
    (ServerStoppingError, 503),
    (SeriesUnreadableError, 422),  # the PACS's series cannot be read as one volume: the client may upload its own
    (UnknownPromptError, 422),   # understood, but not in SAT's vocabulary: the body has suggestions
    (InputError, 422),           # the image, prompts, modality or ROI cannot be used
    (CancelledError, 409),       # cancelled by its client (or the client disconnected)
    (OutOfMemoryError, 503),     # the server is short of memory now; a smaller ROI or a later try may work
    (DeviceError, 503),
    (ModelError, 503),           # the server's model files: the administrator's to fix
    (DownloadError, 503),
)


def http_error(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, JSON body) for any exception; unknown ones are internal errors (500)."""
    error = as_user_error(exc)
    status = next((code for kind, code in _STATUS if isinstance(error, kind)), 500)
    body = error.to_dict()
    return status, {**body, "hint": as_param_hint(body["hint"])}


@contextmanager
def answered_as_http() -> Iterator[None]:
    """Whatever fails inside answers this request only, as an HTTP error with our status and body."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure answers this request only; the server stays up
        from fastapi import HTTPException  # the server's stack; the mapping above is used without it too

        status, body = http_error(exc)
        raise HTTPException(status_code=status, detail=body) from exc


def as_param_hint(hint: str) -> str:
    """A hint written for the command line, for a server client: `--allow-free-text` → the 'allow_free_text' param."""
    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: f"the '{m.group(1).replace('-', '_')}' param", hint)


def not_found(message: str, hint: str) -> tuple[int, dict]:
    """(404, body) for an image the datastore does not hold."""
    return 404, {"code": "not_found", "exit_code": 2, "message": message, "hint": hint}
