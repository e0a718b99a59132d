"""Reading official SAT checkpoints (SAT_REFERENCE.md §1.9, §2.4, §3) into state dicts that load strictly.

Accepted layouts: `{'model_state_dict': {...}, ...}` as the SAT trainer writes it, or a bare state
dict; keys with or without the DDP `module.` prefix. Anything that does not match the requested
model exactly raises `ModelError` saying what the file looks like and what to do; nothing is loaded
partially (the official loader silently keeps random weights in that case).
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from pathlib import Path
from typing import Callable

import torch

from ..errors import ModelError
from ..modelstore.registry import display_name, model_name_for
from .config import SATConfig

StateDict = dict[str, torch.Tensor]

_ALIAS = re.compile(r"(\.convs\.\d+\.)(conv|norm|all_modules\.0|all_modules\.1)\.")
_ALIAS_PAIRS = {"conv": "all_modules.0", "norm": "all_modules.1", "all_modules.0": "conv", "all_modules.1": "norm"}
_KNOWN_VARIANTS = ("nano", "pro", "tiny")
_OFFICIAL_HINT = ("SAT needs the paired official files: the segmentation checkpoint (Nano/nano.pth or "
                  "Pro/SAT_Pro.pth) and the text encoder released with it (text_encoder.pth)")


def _load_file(path: Path, what: str) -> object:
    if not path.is_file():
        raise ModelError(f"{what} {path} does not exist", hint=f"check the path; {_OFFICIAL_HINT}")
    if path.stat().st_size == 0:
        raise ModelError(f"{what} {path} is empty (0 bytes)", hint=f"download the file again; {_OFFICIAL_HINT}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:  # torch raises many types for damaged files (RuntimeError, UnpicklingError, EOFError...)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _looks_truncated(path, detail):
            reason = "is incomplete (a truncated or interrupted download?)"
        else:
            reason = "is not a readable PyTorch checkpoint (damaged or another kind of file)"
        raise ModelError(f"{what} {path} {reason}: {detail}",
                         hint=f"download the file again and check its size/checksum; {_OFFICIAL_HINT}") from exc


def _looks_truncated(path: Path, detail: str) -> bool:
    """A zip (torch.save) file whose end is missing, or a pickle that ends early."""
    with open(path, "rb") as fh:
        starts_like_zip = fh.read(4) == b"PK\x03\x04"
    return (starts_like_zip and not zipfile.is_zipfile(path)) or "central directory" in detail \
        or "EOF" in detail or "ran out of input" in detail.lower()


def _unwrap(obj: object, path: Path, what: str) -> StateDict:
    """Take `model_state_dict` (or a bare state dict) and strip the DDP `module.` prefix."""
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(f"{what} {path} is a PyTorch file but not a SAT checkpoint (top level: {keys})",
                         hint=_OFFICIAL_HINT)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def read_state_dict(path: str | Path, what: str = "checkpoint") -> StateDict:
    """Load a checkpoint file and return its state dict with the `module.` prefix removed."""
    path = Path(path)
    return _unwrap(_load_file(path, what), path, what)


def _fill_aliases(sd: StateDict) -> StateDict:
    """Make both alias names (`.conv.`/`.all_modules.0.`, `.norm.`/`.all_modules.1.`) present."""
    out = dict(sd)
    for key, value in sd.items():
        if key.startswith("backbone."):
            alias = _ALIAS.sub(lambda m: f"{m.group(1)}{_ALIAS_PAIRS[m.group(2)]}.", key, count=1)
            out.setdefault(alias, value)
    return out


@functools.lru_cache(maxsize=8)
def _expected_shapes(kind: str, config_json: str) -> dict[str, tuple[int, ...]]:
    config = SATConfig.from_dict(json.loads(config_json))
    with torch.device("meta"):
        if kind == "segmentation":
            from .sat import SATModel
            module = SATModel(config)
        else:
            from .text_encoder import TextEncoder
            module = TextEncoder(config)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def expected_shapes(kind: str, config: SATConfig) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of our `SATModel` ('segmentation') or `TextEncoder` ('text') for `config`."""
    return dict(_expected_shapes(kind, json.dumps(config.to_dict(), sort_keys=True)))


def _mismatch(sd: StateDict, expected: dict[str, tuple[int, ...]]) -> tuple[list[str], list[str], list[str]]:
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {expected[k]}"
                   for k in set(sd) & set(expected) if tuple(sd[k].shape) != expected[k])
    return missing, unexpected, wrong


def detect_variant(state_dict: StateDict) -> str | None:
    """'nano', 'pro' or 'tiny' if the segmentation state dict has exactly that architecture, else None."""
    sd = segmentation_keys(state_dict)
    for variant in _KNOWN_VARIANTS:
        if not any(_mismatch(sd, expected_shapes("segmentation", SATConfig.for_variant(variant)))):
            return variant
    return None


def segmentation_keys(state_dict: StateDict) -> StateDict:
    """Apply the official key mapping: strip `module.`, drop `mid_mask_embed_proj.*`, complete the aliases."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    return _fill_aliases({k: v for k, v in sd.items() if not k.startswith("mid_mask_embed_proj.")})


def _describe(missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {'; '.join(items[:3])})")
    return ", ".join(parts)


def _check(sd: StateDict, config: SATConfig, kind: str, path: Path, what: str,
           explain: Callable[[], tuple[str, str] | None]) -> StateDict:
    problems = _mismatch(sd, expected_shapes(kind, config))
    if any(problems):
        better = explain()
        if better:
            raise ModelError(*better)
        raise ModelError(f"{what} {path} does not match the {display_name(config.variant)} "
                         f"architecture: {_describe(*problems)}", hint=_OFFICIAL_HINT)
    return sd


def segmentation_state(path: str | Path, config: SATConfig) -> StateDict:
    """The checked state dict of an official segmentation checkpoint, ready for `load_state_dict(strict=True)`."""
    path, what = Path(path), "segmentation checkpoint"
    raw = read_state_dict(path, what)
    if any(k.startswith("text_tower.") for k in raw):
        raise ModelError(f"{path} is a SAT text-encoder checkpoint, given where the segmentation checkpoint "
                         "(nano.pth / SAT_Pro.pth) was expected",
                         hint="swap the two files: pass it as the text-encoder checkpoint")
    sd = segmentation_keys(raw)

    def explain() -> tuple[str, str] | None:
        found = detect_variant(sd)
        if found and found != config.variant:
            return (f"{path} looks like a {display_name(found)} checkpoint, but {display_name(config.variant)}"
                    " was requested", _other_variant_hint(found))
        return None

    return _check(sd, config, "segmentation", path, what, explain)


def _other_variant_hint(found: str) -> str:
    """What to do with a checkpoint of another architecture: only official models are offered, as
    `--variant` accepts nothing else (the tiny variant exists for tests only)."""
    name = model_name_for(found)
    if name:
        return f"this looks like {display_name(found)}; use --variant {found} (or the '{name}' model)"
    return f"{display_name(found)} checkpoints exist for SATSegment's tests only; {_OFFICIAL_HINT}"


def text_encoder_state(path: str | Path, config: SATConfig) -> StateDict:
    """The checked state dict of an official text-encoder ('ours') checkpoint."""
    path, what = Path(path), "text-encoder checkpoint"
    sd = read_state_dict(path, what)
    if any(k.startswith("backbone.") for k in sd):
        raise ModelError(f"{path} is a SAT segmentation checkpoint, given where the text-encoder checkpoint "
                         "(text_encoder.pth) was expected",
                         hint="swap the two files: pass it as the segmentation checkpoint")
    rows = sd.get("modality_embed.weight")
    if any(k.startswith("atlas_tower.") for k in sd):
        raise ModelError(f"{path} is a SAT-Pretrain knowledge encoder (it holds atlas_tower weights); it is not "
                         "meant for inference and gives failed masks (zhaoziheng/SAT issue #26)",
                         hint="use the text_encoder.pth released in the same folder as the SAT-Nano/SAT-Pro checkpoint")
    if rows is not None and rows.dim() == 2 and rows.shape[0] != config.num_modalities:
        raise ModelError(f"{path} has a {rows.shape[0]}-row modality embedding; SAT's inference text encoder has "
                         f"{config.num_modalities} (ct, mri, us, pet). 5 rows mean a SAT-Pretrain encoder or a "
                         "cvpr2025-challenge encoder, which were trained for other preprocessing (issue #26)",
                         hint="use the text_encoder.pth released with the SAT-Nano/SAT-Pro checkpoint")
    sd = {k: v for k, v in sd.items() if not k.endswith("embeddings.position_ids") and k != "temperature"}
    return _check(sd, config, "text", path, what, lambda: None)
