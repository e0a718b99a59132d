"""The per-user model cache on disk: where models live, which are installed, verify, remove.

Layout of `model_home()` (override with SATSEGMENT_HOME):

    models/<name>/            an installed model folder: sat_config.json, segmentation.pth,
                              text_encoder.pth, manifest.json (SHA-256 and origin of each file)
    models/.staging-<name>/   downloads in progress (`*.part` files, resumable)
    models/.lock              held by the one download, import or remove running (see storage.py)
    checksums.json            SHA-256 recorded on the first verified download of each hub file
    .satsegment-tmp-*         (anywhere above) temp files of a run; removed when a killed run left them

A model counts as installed once its folder holds a manifest: installs write it last and rename
the whole folder into place in one step.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..model.fingerprint import sha256_file
from ..userdirs import user_home
from .registry import approx_download_bytes, entry, hub_page, registry
from .storage import installing, write_json

MODEL_FILES = ("segmentation.pth", "text_encoder.pth")
CONFIG_FILE = "sat_config.json"
MANIFEST_FILE = "manifest.json"
CHECKSUMS_FILE = "checksums.json"


def model_home() -> Path:
    """Root of the per-user cache: SATSEGMENT_HOME, else the platform's cache folder."""
    return user_home()


def models_dir() -> Path:
    """The folder holding one sub-folder per installed model."""
    return model_home() / "models"


def model_folder(name: str) -> Path:
    """Where model `name` is (or would be) installed."""
    return models_dir() / name


def staging_folder(name: str) -> Path:
    """Where the download of model `name` grows until it is complete and verified."""
    return models_dir() / f".staging-{name}"


def is_installed(name: str) -> bool:
    """Whether model `name` has a complete folder (its manifest is written last)."""
    return (model_folder(name) / MANIFEST_FILE).is_file()


def installed() -> list[str]:
    """Names of the registry models that are installed (complete folders with a manifest)."""
    return [name for name in registry() if is_installed(name)]


def path_for(name: str) -> Path:
    """Folder of an installed model, or ModelError saying how to install it."""
    info = entry(name)
    folder = model_folder(name)
    if not is_installed(name):
        raise ModelError(
            f"{info['display_name']} is not installed (looked in {folder}).",
            f"Run `satsegment models download {name}` (about {approx_download_bytes(name) / 1e9:.1f} GB from "
            f"{hub_page()}), or on an offline machine "
            f"`satsegment models import {name} PATH` with the two official .pth files.",
        )
    return folder


@dataclass
class ModelStatus:
    """One line of `satsegment models list`."""

    name: str
    display_name: str
    installed: bool
    path: Path
    size_bytes: int  # on disk when installed, else the approximate download size
    gpu_memory_gb: float


def list_models() -> list[ModelStatus]:
    """Every registry model, installed or not, with its size and folder."""
    rows = []
    for name, info in registry().items():
        folder = model_folder(name)
        present = is_installed(name)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if present else approx_download_bytes(name)
        rows.append(ModelStatus(name, info["display_name"], present, folder, size, info["gpu_memory_gb"]))
    return rows


def verify(name: str) -> dict[str, str]:
    """Re-hash an installed model's files against its manifest (and pinned values); raises ModelError
    on any difference. Returns the SHA-256 of each file."""
    folder = path_for(name)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    result = {}
    for filename, record in manifest["files"].items():
        target = folder / filename
        if not target.is_file():
            raise ModelError(f"{target} is missing.", f"Run `satsegment models remove {name}` and install it again.")
        digest = sha256_file(target)
        pinned = pinned_sha256(name, filename)
        if digest != record["sha256"] or (pinned and digest != pinned):
            raise ModelError(
                f"{target} is corrupt: its SHA-256 {digest} differs from the recorded {pinned or record['sha256']}.",
                f"Run `satsegment models remove {name}` and then `satsegment models download {name}` (or import it again).",
            )
        result[filename] = digest
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(f"{folder / CONFIG_FILE} is missing.", f"Run `satsegment models remove {name}` and install it again.")
    return result


def remove(name: str) -> bool:
    """Delete an installed model and any partial download; True if something was removed."""
    entry(name)
    present = [folder for folder in (model_folder(name), staging_folder(name)) if folder.exists()]
    if present:
        with installing(model_home()):
            for folder in present:
                shutil.rmtree(folder)
    return bool(present)


def pinned_sha256(name: str, filename: str) -> str | None:
    """SHA-256 of an official file as pinned in registry.json, if it is."""
    return entry(name)["files"][filename].get("sha256")


def known_sha256(name: str, filename: str) -> str | None:
    """SHA-256 the official file must have: pinned in the registry, else recorded on its first
    verified download; None when neither is known yet."""
    return pinned_sha256(name, filename) or _recorded_checksums().get(entry(name)["files"][filename]["path"])


def record_sha256(name: str, filename: str, digest: str) -> None:
    """Remember the verified SHA-256 of an official file, so later imports of it can be checked."""
    repo_path = entry(name)["files"][filename]["path"]
    recorded = _recorded_checksums()
    if recorded.get(repo_path) != digest:
        recorded[repo_path] = digest
        write_json(model_home() / CHECKSUMS_FILE, recorded)


def _recorded_checksums() -> dict[str, str]:
    path = model_home() / CHECKSUMS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
