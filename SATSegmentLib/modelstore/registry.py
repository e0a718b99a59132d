"""The official SAT models as data: `registry.json` (hub paths, sizes, pinned checksums, licence),
their download URLs, where users get them, and the names people know them by.

Pure look-ups: nothing here touches the model cache or the network.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

# Architectures without a registry entry (tests only): named in messages, never offered as a model.
_TEST_VARIANTS = {"tiny": "tiny test model"}


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(Path(__file__).with_name("registry.json").read_text(encoding="utf-8"))


def registry() -> dict[str, dict]:
    """Registry entries by model name ('nano', 'pro'), as in registry.json."""
    return _data()["models"]


def entry(name: str) -> dict:
    """Registry entry of a model, or InputError naming the known models."""
    try:
        return registry()[name]
    except KeyError:
        raise InputError(
            f"Unknown model name '{name}'.",
            f"Use one of: {', '.join(registry())}, or give a model folder path.",
        ) from None


def licence_note() -> str:
    """What users must know about the weights' terms before downloading them."""
    return _data()["licence"]


def hub_page() -> str:
    """Where the official files are published, as hints name it (e.g. 'huggingface.co/zzh99/SAT')."""
    return f"huggingface.co/{_data()['repository']}"


def url_base() -> str:
    """Base URL of the official repository; SATSEGMENT_MODEL_URL_BASE overrides it (mirrors, tests)."""
    return os.environ.get("SATSEGMENT_MODEL_URL_BASE", _data()["url_base"]).rstrip("/")


def file_url(name: str, filename: str) -> str:
    """Download URL of one file ('segmentation.pth' or 'text_encoder.pth') of a model."""
    return f"{url_base()}/{entry(name)['files'][filename]['path']}"


def official_names(name: str) -> dict[str, str]:
    """Official file basename -> model-folder file name, e.g. {'nano.pth': 'segmentation.pth'}."""
    return {Path(spec["path"]).name: filename for filename, spec in entry(name)["files"].items()}


def approx_download_bytes(name: str) -> int:
    """Approximate size of a model's files on the hub (for messages and `models list`)."""
    return sum(spec.get("approx_size_bytes", 0) for spec in entry(name)["files"].values())


def model_name_for(variant: str) -> str | None:
    """Name of the official model with this architecture ('nano' -> 'nano'), None for test variants."""
    return next((name for name, info in registry().items() if info["variant"] == variant), None)


def display_name(variant: str) -> str:
    """What messages call an architecture: 'SAT-Nano', 'SAT-Pro', 'tiny test model' (else the variant)."""
    name = model_name_for(variant)
    return registry()[name]["display_name"] if name else _TEST_VARIANTS.get(variant, variant)
