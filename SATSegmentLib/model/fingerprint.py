"""SHA-256 fingerprints of weight files, remembered in a sidecar keyed by path, size and mtime."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from ..errors import CancelledError
from ..userdirs import file_mode

SIDECAR = "fingerprints.json"


def sha256_file(path: Path, cancel: threading.Event | None = None, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks; raises CancelledError between chunks once `cancel` is set."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if cancel is not None and cancel.is_set():
                raise CancelledError("Checksum computation cancelled.")
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: str | Path, cache_dir: str | Path | None) -> str:
    """SHA-256 of `path`, reusing the value stored in `cache_dir/fingerprints.json` while size and mtime match."""
    path = Path(path).resolve()
    sidecar = Path(cache_dir) / SIDECAR if cache_dir is not None else None
    entry = _read(sidecar).get(str(path))
    if isinstance(entry, dict) and "sha256" in entry and all(entry.get(k) == v for k, v in _stamp(path).items()):
        return entry["sha256"]
    value = sha256_file(path)
    if cache_dir is not None:
        remember_sha256(path, value, cache_dir)
    return value


def remember_sha256(path: str | Path, digest: str, cache_dir: str | Path) -> None:
    """Record a SHA-256 already known for `path` (e.g. from a verified install) so it is not computed again."""
    path = Path(path).resolve()
    sidecar = Path(cache_dir) / SIDECAR
    known = _read(sidecar)
    known[str(path)] = {**_stamp(path), "sha256": digest}
    _write(sidecar, known)


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def fingerprint(paths: list[str | Path], cache_dir: str | Path | None) -> str:
    """One hash for a set of weight files (order matters: segmentation, then text encoder)."""
    combined = "\n".join(cached_sha256(p, cache_dir) for p in paths)
    return hashlib.sha256(combined.encode()).hexdigest()


def _read(sidecar: Path | None) -> dict:
    if sidecar is None or not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(sidecar: Path, data: dict) -> None:
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=sidecar.parent, prefix=".fp-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.chmod(tmp, file_mode())  # readable by others as the umask allows (mkstemp makes it private)
        os.replace(tmp, sidecar)
    except OSError:
        pass  # read-only location: the hash is simply recomputed next time
