"""Errors that reach users: each carries a stable code, an exit status, and a hint saying what to do.

The command line turns them into exit codes, the JSON-lines worker into `error` events, and the
Slicer module into one clear message with details.
"""

from __future__ import annotations


class SATSegmentError(Exception):
    """Base class: `message` says what was wrong, `hint` what the user can do about it."""

    code = "internal_error"
    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict:
        """JSON-ready form used by the worker protocol."""
        return {"code": self.code, "exit_code": self.exit_code, "message": self.message, "hint": self.hint}


class InputError(SATSegmentError):
    """The image, prompts, options or output path given by the user cannot be used."""

    code = "bad_input"
    exit_code = 2


class UnknownPromptError(InputError):
    """A prompt is not in SAT's vocabulary; `suggestions` lists the closest terms SAT knows."""

    code = "unknown_prompt"
    exit_code = 3

    def __init__(self, message: str, hint: str = "", suggestions: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.suggestions = list(suggestions or [])

    def to_dict(self) -> dict:
        return {**super().to_dict(), "suggestions": self.suggestions}


class ModelError(SATSegmentError):
    """Model files are missing, corrupt, or do not match the requested variant."""

    code = "model_error"
    exit_code = 4


class OutOfMemoryError(SATSegmentError):
    """The device ran out of memory."""

    code = "out_of_memory"
    exit_code = 5


class DownloadError(SATSegmentError):
    """A model download failed (network, HTTP status, checksum)."""

    code = "download_error"
    exit_code = 6


class DeviceError(SATSegmentError):
    """The requested compute device is not available."""

    code = "device_unavailable"
    exit_code = 7


class CancelledError(SATSegmentError):
    """The user cancelled the job; nothing was written."""

    code = "cancelled"
    exit_code = 130


def as_user_error(exc: BaseException) -> SATSegmentError:
    """Map any exception to the error a user sees (out-of-memory recognised; the rest is internal)."""
    if isinstance(exc, SATSegmentError):
        return exc
    if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__ or "out of memory" in str(exc).lower():
        return OutOfMemoryError(f"The device ran out of memory: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.",
                                "Use --max-memory or --roi to segment with less memory, close other programs, or run on --device cpu.")
    return SATSegmentError(f"Internal error: {type(exc).__name__}: {exc}",
                           "This is a bug in SATSegment; please report it with the log shown on stderr.")
