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
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError, ModelError
from ..userdirs import user_home
from ..model.fingerprint import remember_sha256, sha256_file
from .download import Progress, download_file

MODEL_FILES = ("segmentation.pth", "text_encoder.pth")
CONFIG_FILE = "sat_config.json"
MANIFEST_FILE = "manifest.json"


def model_home() -> Path:
    """Root of the per-user cache: SATSEGMENT_HOME, else the platform's cache folder."""
    return user_home()


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
    .pth files (e.g. nano.pth + nano_text_encoder.pth), or a SATSegment model folder.

    Files are found by their official names first; when a name is missing (renamed files), every
    `.pth` file is classified by content (keys and shapes, read memory-mapped) and exactly one
    segmentation checkpoint of the requested variant plus one text encoder must be found. The staged
    pair is then loaded strictly as `use` loads it, so a wrong or damaged file fails here.
    """
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
            labels = _extract_from_zip(name, source, staging)
        elif source.is_dir():
            labels = _copy_from_folder(name, source, staging)
        else:
            raise InputError(f"{source} is neither a folder nor a .zip file.", "Give a folder or .zip file holding the model's .pth files.")
        files = {filename: {**_checked_import(name, filename, staging / filename, source), "source_file": labels[filename]}
                 for filename in MODEL_FILES}
        _validate_staged(name, staging, labels)
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
        digest = sha256_file(target)
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
    for filename, record in files.items():  # the first load need not hash ~1-2 GB again
        remember_sha256(final / filename, record["sha256"], final)
    return final


def _official_names(name: str) -> dict[str, str]:
    """Official file basename -> model-folder file name, e.g. {'nano.pth': 'segmentation.pth'}."""
    return {Path(spec["path"]).name: filename for filename, spec in entry(name)["files"].items()}


def _copy_from_folder(name: str, source: Path, staging: Path) -> dict[str, str]:
    """Copy the pair into `staging`; returns model-folder file name -> where it came from."""
    if all((source / f).is_file() for f in MODEL_FILES):  # a SATSegment model folder
        _check_folder_variant(name, source)
        for filename in MODEL_FILES:
            shutil.copyfile(source / filename, staging / filename)
        return {filename: str(source / filename) for filename in MODEL_FILES}
    named = {}
    for official, filename in _official_names(name).items():
        matches = sorted(source.rglob(official))
        if filename == "text_encoder.pth" and "segmentation.pth" in named:  # the one next to the checkpoint
            matches.sort(key=lambda p: p.parent != named["segmentation.pth"].path.parent)
        if matches:
            named[filename] = _Candidate(str(matches[0]), matches[0], str(matches[0].parent))
    chosen = dict(named)
    if len(chosen) < len(MODEL_FILES):
        used = {c.path for c in named.values()}
        scanned = (_Candidate(str(p), p, str(p.parent)) for p in sorted(source.rglob("*.pth")) if p.is_file() and p not in used)
        chosen.update(_choose_by_content(name, source, named, scanned))
    for filename, found in chosen.items():
        shutil.copyfile(found.path, staging / filename)
    return {filename: found.label for filename, found in chosen.items()}


def _extract_from_zip(name: str, source: Path, staging: Path) -> dict[str, str]:
    """Extract the pair into `staging`; returns model-folder file name -> archive member it came from."""
    with zipfile.ZipFile(source) as archive:
        members = {Path(m).name: m for m in archive.namelist() if not m.endswith("/")}
        wanted = {f: f for f in MODEL_FILES} if all(f in members for f in MODEL_FILES) else _official_names(name)
        named = {}
        for member_name, filename in wanted.items():
            if member_name in members:
                member = members[member_name]
                _extract(archive, member, staging / filename)
                named[filename] = _Candidate(f"{source}:{member}", staging / filename, str(Path(member).parent))
        if len(named) == len(MODEL_FILES):
            return {filename: found.label for filename, found in named.items()}
        used = {members[m] for m in wanted if m in members}
        others = [m for m in archive.namelist() if m.endswith(".pth") and m not in used]

        def scanned():
            for i, member in enumerate(others):
                target = staging / f".candidate-{i}.pth"
                _extract(archive, member, target)
                yield _Candidate(f"{source}:{member}", target, str(Path(member).parent), temporary=True)

        chosen = _choose_by_content(name, source, named, scanned())
    for filename, found in chosen.items():
        if found.temporary:
            os.replace(found.path, staging / filename)
    for leftover in staging.glob(".candidate-*.pth"):
        leftover.unlink()
    return {filename: found.label for filename, found in {**named, **chosen}.items()}


def _extract(archive: zipfile.ZipFile, member: str, target: Path) -> None:
    with archive.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


@dataclass
class _Candidate:
    """A .pth file considered for import: `label` for messages, `path` readable here, `group` its folder."""

    label: str
    path: Path
    group: str
    temporary: bool = False  # extracted from a zip into the staging folder
    kind: str = ""  # 'segmentation', 'text', or '' (neither / unusable)
    variant: str | None = None
    detail: str = ""


def _classify(found: _Candidate, variant: str) -> None:
    """Fill kind/variant/detail from the file's keys and shapes (memory-mapped: a 2 GB file is not read)."""
    from ..model.checkpoint import _DISPLAY, detect_variant, read_state_dict, text_encoder_state
    from ..model.config import SATConfig

    try:
        keys = read_state_dict(found.path, "file")
    except ModelError as exc:
        found.detail = exc.message.replace(f"file {found.path} ", "", 1)  # "is not a readable ...", "is empty ..."
        return
    if any(k.startswith("backbone.") for k in keys):
        found.kind, found.variant = "segmentation", detect_variant(keys)
        found.detail = (f"{_DISPLAY[found.variant]} segmentation checkpoint" if found.variant
                        else "SAT segmentation checkpoint matching neither SAT-Nano nor SAT-Pro")
    elif any(k.startswith("text_tower.") for k in keys):
        del keys
        try:
            text_encoder_state(found.path, SATConfig.for_variant(variant))
            found.kind, found.detail = "text", "SAT text encoder"
        except ModelError as exc:
            found.detail = "unusable text encoder: " + exc.message.replace(f"{found.path} ", "", 1)
    else:
        found.detail = "PyTorch weights, but not a SAT checkpoint"


def _choose_by_content(name: str, source: Path, named: dict[str, _Candidate], scanned) -> dict[str, _Candidate]:
    """Pick the files `named` lacks among `scanned` candidates by content; InputError/ModelError
    saying what was found when there is not exactly one fitting segmentation file and text encoder."""
    info = entry(name)
    variant = info["variant"]
    seen, fitting_seg, texts = [], [], []
    for found in scanned:
        _classify(found, variant)
        seen.append(found)
        if found.kind == "segmentation" and found.variant == variant and "segmentation.pth" not in named:
            fitting_seg.append(found)
        elif found.kind == "text" and "text_encoder.pth" not in named:
            texts.append(found)
        elif found.temporary:
            found.path.unlink()  # do not keep unusable zip members on disk
    listing = "; ".join(f"{f.label}: {f.detail}" for f in seen) or "no other .pth files"
    chosen = {}
    if "segmentation.pth" not in named:
        if len(fitting_seg) > 1:
            raise InputError(
                f"{source} holds {len(fitting_seg)} {info['display_name']} segmentation checkpoints: "
                f"{', '.join(f.label for f in fitting_seg)}.",
                "Keep only the one you want (with its text encoder) in the folder or .zip, and import that.")
        if not fitting_seg:
            others = [f for f in seen if f.kind == "segmentation"]
            if others:
                raise _wrong_variant(name, others[0].variant, others[0].label)
            raise _missing_official(name, source, f"Found by content: {listing}.")
        chosen["segmentation.pth"] = fitting_seg[0]
    if "text_encoder.pth" not in named:
        seg_group = (named.get("segmentation.pth") or chosen["segmentation.pth"]).group
        if len(texts) > 1:
            beside = [f for f in texts if f.group == seg_group]
            if len(beside) != 1:
                raise InputError(
                    f"{source} holds {len(texts)} SAT text encoders and none is clearly the one released with the "
                    f"segmentation checkpoint: {', '.join(f.label for f in texts)}.",
                    f"Keep only the text encoder of {info['display_name']} (next to its segmentation checkpoint) "
                    "in the folder or .zip, and import that.")
            texts = beside
        if not texts:
            raise _missing_official(name, source, f"Found by content: {listing}.")
        chosen["text_encoder.pth"] = texts[0]
    for found in seen:
        if found.temporary and found not in chosen.values() and found.path.exists():
            found.path.unlink()
    return chosen


def _wrong_variant(name: str, found: str | None, label: str) -> ModelError:
    from ..model.checkpoint import _DISPLAY

    wanted = entry(name)["display_name"]
    if found is None:
        return ModelError(f"{label} is a SAT segmentation checkpoint, but neither SAT-Nano nor SAT-Pro (not {wanted}).",
                          f"Import the official {wanted} files from huggingface.co/{_registry_data()['repository']}.")
    official = [n for n, e in registry().items() if e["variant"] == found]
    if official:
        return ModelError(f"Found {_DISPLAY.get(found, found)} weights in {label}, not {wanted}.",
                          f"Import them as `{official[0]}` (`satsegment models import {official[0]} PATH`), "
                          f"or give the {wanted} files.")
    return ModelError(f"{label} is a {_DISPLAY.get(found, found)} checkpoint, not an official model ({wanted} was requested).",
                      f"Import the official {wanted} files from huggingface.co/{_registry_data()['repository']}.")


def _validate_staged(name: str, staging: Path, labels: dict[str, str]) -> None:
    """Load the staged pair strictly, as `use` does; ModelError naming the original file otherwise."""
    from ..model.checkpoint import segmentation_state, text_encoder_state
    from ..model.config import SATConfig

    variant = entry(name)["variant"]
    config = SATConfig.for_variant(variant)
    for filename, check in (("segmentation.pth", segmentation_state), ("text_encoder.pth", text_encoder_state)):
        staged = staging / filename
        try:
            check(staged, config)
            continue
        except ModelError as exc:
            message = exc.message.replace(str(staged), labels[filename])
        if filename == "segmentation.pth" and _variant_of(staged) not in (None, variant):
            raise _wrong_variant(name, _variant_of(staged), labels[filename])
        raise ModelError(f"Cannot import {entry(name)['display_name']}: {message}",
                         f"Copy the official {entry(name)['display_name']} file again (it may be damaged or a different "
                         f"file) from huggingface.co/{_registry_data()['repository']}.")


def _check_folder_variant(name: str, source: Path) -> None:
    config = source / CONFIG_FILE
    if config.is_file():
        variant = json.loads(config.read_text(encoding="utf-8")).get("variant")
        if variant != entry(name)["variant"]:
            raise ModelError(f"{source} holds a '{variant}' model, not {entry(name)['display_name']}.",
                             f"Import it under the right name, or import the {entry(name)['display_name']} files.")


def _variant_of(path: Path) -> str | None:
    """Variant of a segmentation checkpoint by its shapes, None when unknown or unreadable."""
    from ..model.checkpoint import detect_variant, read_state_dict

    try:
        return detect_variant(read_state_dict(path))
    except ModelError:
        return None


def _missing_official(name: str, source: Path, found: str = "") -> InputError:
    expected = " + ".join(_official_names(name))
    return InputError(
        f"{source} does not contain the {entry(name)['display_name']} files ({expected}, or renamed copies)."
        + (f" {found}" if found else ""),
        f"Put {expected} (from huggingface.co/{_registry_data()['repository']}) in one folder or .zip and import that.",
    )


def _checked_import(name: str, filename: str, target: Path, source: Path) -> dict:
    """Hash an imported file and compare it with the pinned or previously recorded hub checksum."""
    spec = entry(name)["files"][filename]
    known = spec.get("sha256") or _recorded_checksums().get(spec["path"])
    digest = sha256_file(target)
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
