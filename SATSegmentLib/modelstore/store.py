"""Per-user model cache: which official SAT models exist, where they live, and how they get there.

Layout of `model_home()` (override with SATSEGMENT_HOME):

    models/<name>/            an installed model folder: sat_config.json, segmentation.pth,
                              text_encoder.pth, manifest.json (SHA-256 and origin of each file)
    models/.staging-<name>/   downloads in progress (`*.part` files, resumable)
    checksums.json            SHA-256 recorded on the first verified download of each hub file

A model appears in `models/<name>` only complete and verified: the staging folder is renamed
onto it in one step. Nothing is downloaded unless `download()` is called.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, ModelError
from .download import Progress, download_file, sha256_of

MODEL_FILES = ("segmentation.pth", "text_encoder.pth")
CONFIG_FILE = "sat_config.json"
MANIFEST_FILE = "manifest.json"


def model_home() -> Path:
    """Root of the per-user cache: SATSEGMENT_HOME, else the platform's cache folder."""
    if os.environ.get("SATSEGMENT_HOME"):
        return Path(os.environ["SATSEGMENT_HOME"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "satsegment"


@lru_cache(maxsize=1)
def _registry_data() -> dict:
    return json.loads((Path(__file__).with_name("registry.json")).read_text(encoding="utf-8"))


def registry() -> dict[str, dict]:
    """Registry entries by model name ('nano', 'pro'), as in registry.json."""
    return _registry_data()["models"]


def licence_note() -> str:
    return _registry_data()["licence"]


def url_base() -> str:
    """Base URL of the official repository; SATSEGMENT_MODEL_URL_BASE overrides it (mirrors, tests)."""
    return os.environ.get("SATSEGMENT_MODEL_URL_BASE", _registry_data()["url_base"]).rstrip("/")


def file_url(name: str, filename: str) -> str:
    return f"{url_base()}/{entry(name)['files'][filename]['path']}"


def entry(name: str) -> dict:
    """Registry entry of a model, or InputError naming the known models."""
    try:
        return registry()[name]
    except KeyError:
        raise InputError(
            f"Unknown model name '{name}'.",
            f"Use one of: {', '.join(registry())}, or give a model folder path.",
        ) from None


def _models_dir() -> Path:
    return model_home() / "models"


def installed() -> list[str]:
    """Names of the registry models that are installed (complete folders with a manifest)."""
    return [name for name in registry() if (_models_dir() / name / MANIFEST_FILE).is_file()]


def path_for(name: str) -> Path:
    """Folder of an installed model, or ModelError saying how to install it."""
    info = entry(name)
    folder = _models_dir() / name
    if not (folder / MANIFEST_FILE).is_file():
        raise ModelError(
            f"{info['display_name']} is not installed (looked in {folder}).",
            f"Run `satsegment models download {name}` (about {_approx_gb(info):.1f} GB from "
            f"huggingface.co/{_registry_data()['repository']}), or on an offline machine "
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
    rows = []
    for name, info in registry().items():
        folder = _models_dir() / name
        is_installed = (folder / MANIFEST_FILE).is_file()
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if is_installed else int(_approx_gb(info) * 1e9)
        rows.append(ModelStatus(name, info["display_name"], is_installed, folder, size, info["gpu_memory_gb"]))
    return rows


def download(name: str, progress: Progress | None = None, cancel: threading.Event | None = None, timeout: float | None = None) -> Path:
    """Download and verify both files of a model, then install it; returns its folder.

    Partial files survive failures and cancellation in the staging folder, so calling again resumes.
    """
    info = entry(name)
    final = _models_dir() / name
    if (final / MANIFEST_FILE).is_file():
        return final
    staging = _models_dir() / f".staging-{name}"
    staging.mkdir(parents=True, exist_ok=True)
    timeout = timeout if timeout is not None else float(os.environ.get("SATSEGMENT_DOWNLOAD_TIMEOUT", "60"))
    recorded = _recorded_checksums()
    files = {}
    for filename, spec in info["files"].items():
        target = staging / filename
        if target.is_file() and filename in _staged_digests(staging):
            files[filename] = _staged_digests(staging)[filename]
            continue
        known = spec.get("sha256") or recorded.get(spec["path"])
        digest = download_file(file_url(name, filename), target, expected_sha256=known, progress=progress, cancel=cancel, timeout=timeout)
        _record_checksum(spec["path"], digest)
        files[filename] = {"sha256": digest, "size": target.stat().st_size, "origin": file_url(name, filename),
                           "verified_against": "pinned" if spec.get("sha256") else "hub"}
        _write_json(staging / ".digests.json", files)
    (staging / ".digests.json").unlink(missing_ok=True)
    return _install(name, staging, files, source="download")


def import_model(name: str, path: str | Path) -> Path:
    """Install a model from local files (offline sites): a folder or .zip holding the two official
    .pth files (e.g. nano.pth + nano_text_encoder.pth), or a SATSegment model folder."""
    info = entry(name)
    if (_models_dir() / name / MANIFEST_FILE).is_file():
        raise InputError(f"{info['display_name']} is already installed.", f"Run `satsegment models remove {name}` first to replace it.")
    source = Path(path).expanduser()
    if not source.exists():
        raise InputError(f"{source} does not exist.", "Give a folder or .zip file holding the model's .pth files.")
    _models_dir().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=_models_dir()))
    try:
        if zipfile.is_zipfile(source):
            _extract_from_zip(name, source, staging)
        elif source.is_dir():
            _copy_from_folder(name, source, staging)
        else:
            raise InputError(f"{source} is neither a folder nor a .zip file.", "Give a folder or .zip file holding the model's .pth files.")
        files = {filename: _checked_import(name, filename, staging / filename, source) for filename in MODEL_FILES}
        return _install(name, staging, files, source="import")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
        digest = sha256_of(target)
        pinned = entry(name)["files"][filename].get("sha256")
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
    removed = False
    for folder in (_models_dir() / name, _models_dir() / f".staging-{name}"):
        if folder.exists():
            shutil.rmtree(folder)
            removed = True
    return removed


def sat_config_for(variant: str) -> dict:
    """Content of sat_config.json for an official variant ('nano' or 'pro')."""
    from ..model.config import SATConfig

    return SATConfig.for_variant(variant).to_dict()


def _install(name: str, staging: Path, files: dict, source: str) -> Path:
    """Write config and manifest into `staging`, then rename it onto the model folder in one step."""
    info = entry(name)
    _write_json(staging / CONFIG_FILE, sat_config_for(info["variant"]))
    manifest = {
        "name": name,
        "display_name": info["display_name"],
        "variant": info["variant"],
        "source": source,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    _write_json(staging / MANIFEST_FILE, manifest)
    for leftover in staging.glob("*.part"):
        leftover.unlink()
    final = _models_dir() / name
    os.replace(staging, final)
    return final


def _official_names(name: str) -> dict[str, str]:
    """Official file basename -> model-folder file name, e.g. {'nano.pth': 'segmentation.pth'}."""
    return {Path(spec["path"]).name: filename for filename, spec in entry(name)["files"].items()}


def _copy_from_folder(name: str, source: Path, staging: Path) -> None:
    if all((source / f).is_file() for f in MODEL_FILES):  # a SATSegment model folder
        _check_folder_variant(name, source)
        for filename in MODEL_FILES:
            shutil.copyfile(source / filename, staging / filename)
        return
    for official, filename in _official_names(name).items():
        matches = sorted(source.rglob(official))
        if not matches:
            raise _missing_official(name, source)
        shutil.copyfile(matches[0], staging / filename)


def _extract_from_zip(name: str, source: Path, staging: Path) -> None:
    with zipfile.ZipFile(source) as archive:
        members = {Path(m).name: m for m in archive.namelist() if not m.endswith("/")}
        wanted = {f: f for f in MODEL_FILES} if all(f in members for f in MODEL_FILES) else _official_names(name)
        for member_name, filename in wanted.items():
            if member_name not in members:
                raise _missing_official(name, source)
            with archive.open(members[member_name]) as src, open(staging / filename, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _check_folder_variant(name: str, source: Path) -> None:
    config = source / CONFIG_FILE
    if config.is_file():
        variant = json.loads(config.read_text(encoding="utf-8")).get("variant")
        if variant != entry(name)["variant"]:
            raise ModelError(f"{source} holds a '{variant}' model, not {entry(name)['display_name']}.",
                             f"Import it under the right name, or import the {entry(name)['display_name']} files.")


def _missing_official(name: str, source: Path) -> InputError:
    expected = " + ".join(_official_names(name))
    return InputError(
        f"{source} does not contain the {entry(name)['display_name']} files ({expected}).",
        f"Put {expected} (from huggingface.co/{_registry_data()['repository']}) in one folder or .zip and import that.",
    )


def _checked_import(name: str, filename: str, target: Path, source: Path) -> dict:
    """Hash an imported file and compare it with the pinned or previously recorded hub checksum."""
    spec = entry(name)["files"][filename]
    known = spec.get("sha256") or _recorded_checksums().get(spec["path"])
    digest = sha256_of(target)
    if known and digest != known:
        raise ModelError(
            f"The imported {filename} ({spec['path']}) has SHA-256 {digest}, but the official file has {known}.",
            "The copy is corrupt or a different file: copy it again from the official repository.",
        )
    return {"sha256": digest, "size": target.stat().st_size, "origin": str(source),
            "verified_against": "pinned" if spec.get("sha256") else ("hub" if known else "none (recorded at import)")}


def _staged_digests(staging: Path) -> dict:
    path = staging / ".digests.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _recorded_checksums() -> dict[str, str]:
    path = model_home() / "checksums.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _record_checksum(repo_path: str, digest: str) -> None:
    recorded = _recorded_checksums()
    if recorded.get(repo_path) != digest:
        recorded[repo_path] = digest
        _write_json(model_home() / "checksums.json", recorded)


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file in the same folder + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _approx_gb(info: dict) -> float:
    return sum(spec.get("approx_size_bytes", 0) for spec in info["files"].values()) / 1e9
