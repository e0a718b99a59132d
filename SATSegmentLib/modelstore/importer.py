"""`satsegment models import`: install a model from local files (offline sites), finding the two
official `.pth` files by name or, when renamed, by content.

Every candidate `.pth` file is classified from its keys and shapes (read memory-mapped, so a 2 GB
file is not read) as a SAT-Nano/SAT-Pro segmentation checkpoint, a text encoder, or neither; the
error lists what was found when the choice is not clear. The chosen pair is compared with the known
checksum and loaded strictly before it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelError
from ..model.fingerprint import sha256_file
from .cache import CONFIG_FILE, MODEL_FILES, is_installed, known_sha256, model_home, models_dir
from .install import install_staged
from .pair import check_pair, wrong_variant
from .registry import display_name, entry, hub_page, official_names
from .storage import installing, temp_folder


def import_model(name: str, path: str | Path) -> Path:
    """Install a model from local files (offline sites): a folder or .zip holding the two official
    .pth files (e.g. nano.pth + nano_text_encoder.pth), or a SATSegment model folder.

    Files are found by their official names first; when a name is missing (renamed files), every
    `.pth` file is classified by content (keys and shapes, read memory-mapped) and exactly one
    segmentation checkpoint of the requested variant plus one text encoder must be found. The staged
    pair is then loaded strictly as `segment` loads it, so a wrong or damaged file fails here.
    """
    info = entry(name)
    if is_installed(name):
        raise InputError(f"{info['display_name']} is already installed.",
                         f"Run `satsegment models remove {name}` first to replace it.")
    source = Path(path).expanduser()
    if not source.exists():
        raise InputError(f"{source} does not exist.", "Give a folder or .zip file holding the model's .pth files.")
    with installing(model_home()):
        staging = temp_folder(models_dir(), f"import-{name}")
        try:
            labels = _stage(name, source, staging)
            files = {filename: {**_checked_import(name, filename, staging / filename, source), "source_file": labels[filename]}
                     for filename in MODEL_FILES}
            check_pair(name, staging, labels, "import")
            return install_staged(name, staging, files, source="import")
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _stage(name: str, source: Path, staging: Path) -> dict[str, str]:
    """Put the pair from a folder or .zip into `staging`; returns model-folder file name -> where it came from."""
    if source.is_dir():
        return _copy_from_folder(name, source, staging)
    if zipfile.is_zipfile(source):
        try:
            return _extract_from_zip(name, source, staging)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a member's data is damaged
            raise _damaged_zip(source, f" ({exc})") from exc
    if source.suffix.lower() == ".zip":  # the central directory, at the end of the file, is missing
        raise _damaged_zip(source, f" (it ends after {source.stat().st_size:,} bytes, without its table of contents)")
    raise InputError(f"{source} is neither a folder nor a .zip file.",
                     "Give a folder or .zip file holding the model's .pth files.")


def _damaged_zip(source: Path, detail: str) -> InputError:
    return InputError(f"{source} is a damaged or truncated .zip file{detail}.",
                      "Download or copy the .zip file again (an interrupted copy cuts it short), then import it.")


def _copy_from_folder(name: str, source: Path, staging: Path) -> dict[str, str]:
    """Copy the pair into `staging`; returns model-folder file name -> where it came from."""
    if all((source / f).is_file() for f in MODEL_FILES):  # a SATSegment model folder
        _check_folder_variant(name, source)
        for filename in MODEL_FILES:
            shutil.copyfile(source / filename, staging / filename)
        return {filename: str(source / filename) for filename in MODEL_FILES}
    named = {}
    for official, filename in official_names(name).items():
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
        wanted = {f: f for f in MODEL_FILES} if all(f in members for f in MODEL_FILES) else official_names(name)
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
    from ..model.checkpoint import detect_variant, read_state_dict, text_encoder_state
    from ..model.config import SATConfig

    try:
        keys = read_state_dict(found.path, "file")
    except ModelError as exc:
        found.detail = exc.message.replace(f"file {found.path} ", "", 1)  # "is not a readable ...", "is empty ..."
        return
    if any(k.startswith("backbone.") for k in keys):
        found.kind, found.variant = "segmentation", detect_variant(keys)
        found.detail = (f"{display_name(found.variant)} segmentation checkpoint" if found.variant
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
                raise wrong_variant(name, others[0].variant, others[0].label)
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


def _check_folder_variant(name: str, source: Path) -> None:
    config = source / CONFIG_FILE
    if config.is_file():
        variant = json.loads(config.read_text(encoding="utf-8")).get("variant")
        if variant != entry(name)["variant"]:
            raise ModelError(f"{source} holds a '{variant}' model, not {entry(name)['display_name']}.",
                             f"Import it under the right name, or import the {entry(name)['display_name']} files.")


def _missing_official(name: str, source: Path, found: str = "") -> InputError:
    expected = " + ".join(official_names(name))
    return InputError(
        f"{source} does not contain the {entry(name)['display_name']} files ({expected}, or renamed copies)."
        + (f" {found}" if found else ""),
        f"Put {expected} (from {hub_page()}) in one folder or .zip and import that.",
    )


def _checked_import(name: str, filename: str, target: Path, source: Path) -> dict:
    """Hash an imported file and compare it with the pinned or previously recorded hub checksum."""
    spec = entry(name)["files"][filename]
    known = known_sha256(name, filename)
    digest = sha256_file(target)
    if known and digest != known:
        raise ModelError(
            f"The imported {filename} ({spec['path']}) has SHA-256 {digest}, but the official file has {known}.",
            "The copy is corrupt or a different file: copy it again from the official repository.",
        )
    return {"sha256": digest, "size": target.stat().st_size, "origin": str(source),
            "verified_against": "pinned" if spec.get("sha256") else ("hub" if known else "none (recorded at import)")}


