"""Installing a model: the resumable, verified download of its two files, and the one step that
turns a checked staging folder into an installed model folder (shared with `importer`).

Nothing is downloaded unless `download()` is called.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import threading
from pathlib import Path

from ..errors import ModelError
from ..model.fingerprint import remember_sha256
from .cache import (CONFIG_FILE, MANIFEST_FILE, is_installed, known_sha256, model_folder, model_home,
                    pinned_sha256, record_sha256, staging_folder)
from .download import Progress, download_file
from .pair import check_pair
from .registry import entry, file_url
from .storage import installing, write_json

_DIGESTS_FILE = ".digests.json"  # files of a staging folder already downloaded and verified


def download(name: str, progress: Progress | None = None, cancel: threading.Event | None = None,
             timeout: float | None = None) -> Path:
    """Download both files of a model, verify their checksums, load them strictly as `import` does,
    then install the model; returns its folder.

    Partial files survive network failures and cancellation in the staging folder, so calling again
    resumes; when the home cannot be written (e.g. a full disk) they are deleted.
    """
    entry(name)
    if is_installed(name):  # before locking: a shared, read-only home serves installed models
        return model_folder(name)
    timeout = timeout if timeout is not None else float(os.environ.get("SATSEGMENT_DOWNLOAD_TIMEOUT", "60"))
    staging = staging_folder(name)
    with installing(model_home(), partial=staging):
        if is_installed(name):  # finished by another process meanwhile
            return model_folder(name)
        staging.mkdir(exist_ok=True)
        files = _download_files(name, staging, progress, cancel, timeout)
        _check_downloaded_pair(name, staging, files)
        (staging / _DIGESTS_FILE).unlink(missing_ok=True)
        return install_staged(name, staging, files, source="download")


def _download_files(name: str, staging: Path, progress: Progress | None, cancel: threading.Event | None,
                    timeout: float) -> dict:
    """Download the files `staging` lacks, each verified by SHA-256; returns the manifest records."""
    files = _staged_digests(staging)
    for filename in entry(name)["files"]:
        if filename in files and (staging / filename).is_file():
            continue
        url = file_url(name, filename)
        digest = download_file(url, staging / filename, expected_sha256=known_sha256(name, filename),
                               progress=progress, cancel=cancel, timeout=timeout)
        record_sha256(name, filename, digest)
        files[filename] = {"sha256": digest, "size": (staging / filename).stat().st_size, "origin": url,
                           "verified_against": "pinned" if pinned_sha256(name, filename) else "hub"}
        write_json(staging / _DIGESTS_FILE, files)
    return files


def _check_downloaded_pair(name: str, staging: Path, files: dict) -> None:
    """The strict check `import` applies, for the downloaded pair. The files matched the hub's checksums,
    so downloading again would not help: they are deleted and the hint points at the registry."""
    try:
        check_pair(name, staging, {filename: record["origin"] for filename, record in files.items()}, "download")
    except ModelError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(
            f"{exc.message} The downloaded files were deleted.",
            f"The repository may have changed: correct the file paths of '{name}' in SATSegmentLib/modelstore/registry.json, "
            f"or download the official files by hand and run `satsegment models import {name} PATH`.",
        ) from exc


def install_staged(name: str, staging: Path, files: dict, source: str) -> Path:
    """Write config and manifest into `staging`, then rename it onto the model folder in one step.
    Call it inside `storage.installing`."""
    info = entry(name)
    write_json(staging / CONFIG_FILE, sat_config_for(info["variant"]))
    manifest = {
        "name": name,
        "display_name": info["display_name"],
        "variant": info["variant"],
        "source": source,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    write_json(staging / MANIFEST_FILE, manifest)
    for leftover in staging.glob("*.part"):
        leftover.unlink()
    final = model_folder(name)
    os.replace(staging, final)
    for filename, record in files.items():  # the first load need not hash ~1-2 GB again
        remember_sha256(final / filename, record["sha256"], final)
    return final


def sat_config_for(variant: str) -> dict:
    """Content of sat_config.json for an official variant ('nano' or 'pro')."""
    from ..model.config import SATConfig

    return SATConfig.for_variant(variant).to_dict()


def _staged_digests(staging: Path) -> dict:
    path = staging / _DIGESTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
