"""Client of a SATSegment MONAI Label server (Qt-free, standard library only): check it, send a job, follow
it, cancel it, get the result.

Only the URL the user typed is ever contacted. A result is the file the server returned (a label image, or a
.seg.nrrd) and the JSON that came with it: label names → values, segments, warnings. Server errors come back
as `RemoteError` with the server's message, hint and suggestions. `segment` blocks; `status` and `cancel` may
be called from another thread meanwhile, with the job id `segment` was given (`new_job_id()`). Only `segment`
waits long (its job may wait its turn in the server's queue); the other calls give up after `control_timeout`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Sequence

TASK = "sat"
DEFAULT_TIMEOUT = 600.0  # how long `segment` waits for its answer
CONTROL_TIMEOUT = 15.0  # how long the other calls (check, image_info, status, cancel) wait
# Who this process is to the server when it has no authentication: its jobs take turns with other clients' jobs.
PROCESS_CLIENT_ID = uuid.uuid4().hex


def new_job_id() -> str:
    """A fresh, unguessable job id to give `segment` (and later `status` and `cancel`)."""
    return uuid.uuid4().hex


class RemoteError(Exception):
    """A server that cannot be used or a request it refused: `message` says what, `hint` what to do."""

    def __init__(self, message: str, hint: str = "", status: int | None = None, code: str = "remote_error",
                 suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message, self.hint, self.status, self.code = message, hint, status, code
        self.suggestions = list(suggestions)

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


@dataclass
class RemoteResult:
    """What the server returned for one job: the result file's name and bytes, and its JSON."""

    file_name: str
    data: bytes
    params: dict = field(default_factory=dict)

    @property
    def label_names(self) -> dict[str, int]:
        return dict(self.params.get("label_names", {}))

    def save(self, folder: str | Path) -> Path:
        """Write the result file into `folder` under its own name; returns its path."""
        path = Path(folder) / Path(self.file_name).name
        path.write_bytes(self.data)
        return path


class LabelServerClient:
    """Talks to one server, at the URL the user typed (with an optional bearer token); `timeout` is how long
    `segment` waits for its answer, `control_timeout` how long every other call waits."""

    def __init__(self, url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, client_id: str | None = None,
                 control_timeout: float = CONTROL_TIMEOUT) -> None:
        parsed = urllib.parse.urlparse(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"{url!r} is not a server address.", "Type it as http://host:port, e.g. http://gpu-server:8000.")
        self.url = url.strip().rstrip("/")
        self.token = token or None
        self.timeout, self.control_timeout = timeout, control_timeout
        self.client_id = client_id or PROCESS_CLIENT_ID

    def check(self, client_version: str | None = None) -> dict:
        """The server's `sat` task info; RemoteError if it is no SATSegment server or runs another version."""
        info = self._json("GET", "/info/")
        task = info.get("models", {}).get(TASK) if isinstance(info, dict) else None
        if not isinstance(task, dict):
            raise RemoteError(f"{self.url} is a MONAI Label server without SATSegment's '{TASK}' task.",
                              "Ask the administrator to start it with the SATSegment app (docs/server.md).")
        server_version = str(task.get("satsegment_version", ""))
        if client_version and _major_minor(server_version) != _major_minor(client_version):
            raise RemoteError(f"The server runs SATSegment {server_version or 'of unknown version'}, this module {client_version}.",
                              "Update the module or the server so that both have the same version (major.minor).")
        return task

    def segment(self, prompts: Sequence[str], modality: str = "auto", *, image_id: str | None = None,
                image_path: str | Path | None = None, sat_model: str | None = None, roi: Sequence[float] | None = None,
                output_format: str = "labelmap", allow_free_text: bool = False, job_id: str | None = None) -> RemoteResult:
        """Segment an image of the server's datastore (`image_id`) or a file uploaded with the request (`image_path`).

        `job_id` (from `new_job_id()`) names the job for `status` and `cancel`; a cancelled job raises
        RemoteError with code "cancelled"."""
        if (image_id is None) == (image_path is None):
            raise ValueError("give exactly one of image_id and image_path")
        params: dict = {"prompts": list(prompts), "modality": modality, "output_format": output_format}
        params.update({k: v for k, v in (("sat_model", sat_model), ("roi", list(roi) if roi else None)) if v is not None})
        if allow_free_text:
            params["allow_free_text"] = True
        fields = {"params": (None, json.dumps(params).encode(), "application/json")}
        if image_path is not None:
            fields["file"] = (Path(image_path).name, Path(image_path).read_bytes(), "application/octet-stream")
        query = urllib.parse.urlencode({"image": image_id or "", "output": "all", "client_id": self.client_id,
                                        **({"job_id": job_id} if job_id else {})})
        body, content_type = encode_multipart(fields)
        _, headers, data = self._request("POST", f"/infer/{TASK}?{query}", body, content_type, self.timeout)
        return _result(headers.get("Content-Type", ""), data)

    def image_info(self, image_id: str) -> dict | None:
        """What the server's datastore knows of `image_id` without fetching it: {"datastore": "dicomweb" | "local",
        "exists", and for a DICOMweb series "instances"}; None from a server without that route (older)."""
        try:
            return self._json("GET", f"/{TASK}/images/{urllib.parse.quote(image_id, safe='')}")
        except RemoteError as error:
            if error.status == 404 and error.code == "remote_error":
                return None
            raise

    def cancel(self, job_id: str) -> bool:
        """Ask the server to stop job `job_id` (queued: it leaves the queue; running: it stops soon); True if the
        server knew the job. An id the server does not know yet stays cancelled there, so a request still on its
        way is refused when it arrives."""
        try:
            self._json("DELETE", _job_path(job_id))
        except RemoteError as error:
            if error.code == "unknown_job":
                return False
            raise _without_jobs(error)
        return True

    def status(self, job_id: str) -> dict:
        """{"state": "queued" | "running" | "done" | "failed" | "cancelled" | "unknown", "position": jobs that run
        before it starts (the running one included), 0 once it runs, "fraction": a running job's progress 0..1
        (None or absent while queued or unknown, or from an older server)}."""
        try:
            return self._json("GET", _job_path(job_id))
        except RemoteError as error:
            if error.code == "unknown_job":
                return {"job_id": job_id, "state": "unknown", "position": 0}
            raise _without_jobs(error)

    def _json(self, method: str, path: str) -> dict:
        _, _, data = self._request(method, path)
        try:
            return json.loads(data)
        except ValueError:
            raise RemoteError(f"{self.url} did not answer with JSON; is it a MONAI Label server?") from None

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 timeout: float | None = None):
        """(status, headers, body) of one HTTP request, waiting `timeout` (default: `control_timeout`) for it."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        timeout = timeout or self.control_timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            raise _server_error(exc.code, exc.read(), bool(self.token)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):  # connected (or connecting), but no answer
                raise RemoteError(f"{self.url} gave no answer within {_duration(timeout)}.", "Its queue may be long or "
                                  "the server overloaded: try again later, or ask the administrator.", code="timed_out") from None
            raise RemoteError(f"Cannot reach {self.url}: {reason}.", "Check the address, that the server runs, and the network.") from None


def encode_multipart(fields: dict[str, tuple[str | None, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body from name → (file name or None, bytes, content type); returns (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, (file_name, data, kind) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _result(content_type: str, data: bytes) -> RemoteResult:
    """A result from the server's answer: multipart (params + image), or JSON alone when there is no file."""
    if content_type.startswith("application/json"):
        return RemoteResult("", b"", json.loads(data))
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    params, file_name, payload = {}, "", b""
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "params":
            params = json.loads(part.get_payload(decode=True))
        else:
            file_name, payload = part.get_filename() or "result", part.get_payload(decode=True)
    return RemoteResult(file_name, payload, params)


def _job_path(job_id: str) -> str:
    return f"/{TASK}/jobs/{urllib.parse.quote(job_id, safe='')}"


def _without_jobs(error: RemoteError) -> RemoteError:
    """A plain 404 (no route) from a server too old to follow and cancel jobs, said so; other errors as they are."""
    if error.status == 404 and error.code == "remote_error":
        return RemoteError("This server cannot follow or cancel jobs.", "Ask the administrator to update SATSegment on the server.",
                           404, "not_supported")
    return error


def _server_error(status: int, data: bytes, sent_token: bool = False) -> RemoteError:
    """RemoteError from an HTTP error answer: our JSON body when there is one, else the status line."""
    try:
        detail = json.loads(data).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict):
        return RemoteError(str(detail.get("message", "")), str(detail.get("hint", "")), status,
                           str(detail.get("code", "remote_error")), detail.get("suggestions") or ())
    if status == 401 and not sent_token:
        return RemoteError("The server needs a token.", "Enter the token the administrator gave you.", status, "unauthorized")
    if status == 401:
        return RemoteError("The server refused the token.", "Enter a valid token; it may have expired.", status, "unauthorized")
    if status == 403:
        return RemoteError(f"The server refused this request: {detail}", "Ask the administrator for access to SATSegment.",
                           status, "forbidden")
    return RemoteError(f"The server answered HTTP {status}: {str(detail or data[:200].decode(errors='replace'))}", "", status)


def _duration(seconds: float) -> str:
    """'60 min' or '15 s': a timeout as the user reads it."""
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
