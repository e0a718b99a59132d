"""Resumable, cancellable, checksummed HTTP download of one file (standard library only).

The file grows in `<dest>.part` (kept across failures so the next attempt resumes with an HTTP
Range request) and is renamed onto `dest` only after its SHA-256 matched. The expected digest is
the pinned one when known, otherwise the one the Hugging Face hub publishes for LFS files in the
`X-Linked-Etag` header of its redirect (or `ETag`). Without either, the download is refused.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from .. import __version__
from ..errors import CancelledError, DownloadError
from ..model.fingerprint import sha256_file

Progress = Callable[[str, int, int, str], None]
T = TypeVar("T")

CHUNK_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, remembering each hop's headers (the hub puts the
    LFS checksum on its redirect, not on the CDN's final response)."""

    def __init__(self) -> None:
        self.headers: list = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib hook)
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def published_sha256(header_sets: list) -> str | None:
    """The SHA-256 a server publishes for a file: `X-Linked-Etag` first, then `ETag`, if 64 hex digits."""
    for name in ("X-Linked-Etag", "ETag"):
        for headers in header_sets:
            value = (headers.get(name) or "").strip()
            value = value.removeprefix("W/").strip('"').lower()
            if _SHA256.match(value):
                return value
    return None


def download_file(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timeout: float = 60.0,
    attempts: int = 3,
) -> str:
    """Download `url` to `dest`, resuming `<dest>.part`; return the verified SHA-256.

    Raises DownloadError (HTTP error, network failure after `attempts` tries, checksum mismatch,
    no checksum available) or CancelledError. A checksum mismatch deletes the partial file. An
    OSError of the local file (e.g. a full disk) is raised as it is, at once.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    published: str | None = None
    last_problem = ""
    for _ in range(max(1, attempts)):
        try:
            published = _fetch_into(url, part, progress, cancel, timeout) or published
            break
        except _PartFileError as exc:
            raise exc.error from None
        except (socket.timeout, TimeoutError) as exc:
            last_problem = f"no data for {timeout:g} s ({exc})"
        except (ConnectionError, http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                raise _http_error(url, exc) from exc
            last_problem = str(getattr(exc, "reason", exc)) or type(exc).__name__
    else:
        raise DownloadError(
            f"Download of {url} failed after {attempts} attempts: {last_problem}.",
            "Check the network connection (and proxy settings), then run the same command again: "
            "the download resumes where it stopped.",
        )
    expected = (expected_sha256 or published or "").lower()
    if not expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"The server published no SHA-256 for {url}, so the file cannot be verified.",
            "Pin the checksum in the model registry, or download the files by hand and run "
            "`satsegment models import NAME PATH`.",
        )
    actual = sha256_file(part, cancel)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Checksum mismatch for {url}: expected SHA-256 {expected}, got {actual}. The corrupt file was deleted.",
            "Run the download again; if it keeps failing, the server or a proxy alters the file.",
        )
    os.replace(part, dest)
    return actual


def _fetch_into(url: str, part: Path, progress: Progress | None, cancel: threading.Event | None, timeout: float) -> str | None:
    """One HTTP attempt appending to `part` from its current size; returns the published SHA-256."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"satsegment/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part file already holds everything
            return published_sha256(redirects.headers + [exc.headers])
        raise
    with response:
        published = published_sha256(redirects.headers + [response.headers])
        if response.status != 206:  # server ignored the Range: start over
            offset = 0
        total = _total_size(response, offset)
        done = offset
        with _local(open, part, "ab" if offset else "wb") as out:
            while True:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("Download cancelled; run the same command again to resume it.")
                block = response.read(CHUNK_BYTES)
                if not block:
                    break
                _local(out.write, block)
                _local(out.flush)
                done += len(block)
                if progress is not None:
                    progress("download", done, total,
                             f"{part.name.removesuffix('.part')}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
    if total and done < total:
        raise ConnectionError(f"connection closed after {done} of {total} bytes")
    return published


class _PartFileError(Exception):
    """Writing the `.part` file failed (full disk, permissions): not the network's fault, so it is
    not retried; `download_file` raises the original OSError."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _local(operation: Callable[..., T], *args) -> T:
    """Run a file operation on the `.part` file, marking its OSError as local (see `_PartFileError`)."""
    try:
        return operation(*args)
    except OSError as exc:
        raise _PartFileError(exc) from exc


def _total_size(response, offset: int) -> int:
    """Full file size from Content-Range (206) or Content-Length (200); 0 when unknown."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else 0


def _http_error(url: str, exc: urllib.error.HTTPError) -> DownloadError:
    if exc.code == 404:
        return DownloadError(
            f"{url} was not found (HTTP 404).",
            "The file may have been renamed in the official repository: correct its path in "
            "SATSegmentLib/modelstore/registry.json, or download it by hand and use `satsegment models import`.",
        )
    if exc.code in (401, 403):
        return DownloadError(
            f"Access to {url} was refused (HTTP {exc.code}).",
            "Accept the model's terms on its Hugging Face page if it asks for that, or download by hand and use "
            "`satsegment models import`.",
        )
    return DownloadError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.", "Try again later.")
