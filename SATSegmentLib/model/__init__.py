"""SAT (text-prompted 3D segmentation) in plain PyTorch, loading the official checkpoints strictly.

`SATConfig` is imported eagerly (cheap); everything that needs torch/transformers is imported on
first use, so `from SATSegmentLib.model import SATConfig` stays fast.
"""

from __future__ import annotations

import importlib

from .config import SATConfig

_LAZY = {
    "SATModel": "sat", "ImageFeatures": "sat",
    "TextEncoder": "text_encoder", "MODALITY_CODES": "text_encoder", "modality_code": "text_encoder",
    "LoadedSAT": "loaded", "load_model_folder": "loaded", "load_official_checkpoints": "loaded",
    "precompute_embeddings": "loaded", "default_cache_dir": "loaded",
    "detect_variant": "checkpoint",
    "resolve_device": "device", "autocast": "device",
}

__all__ = ["SATConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
