"""Is a staged pair of files a model that `segment` will load? One strict check for downloads and
imports, so that a wrong, swapped or damaged file fails before it is installed, not at first use.

torch is imported on first use: the rest of the model store works without it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .registry import display_name, entry, hub_page, model_name_for


def check_pair(name: str, folder: Path, labels: dict[str, str], action: str) -> None:
    """Load `folder`'s segmentation.pth and text_encoder.pth strictly, as `segment` loads model `name`.

    Raises ModelError "Cannot {action} SAT-Nano: ..." naming each file by its `labels` entry (where
    it came from, not the staged copy); the hint says to copy the official file again, or to import
    it under the right name when it holds another official variant.
    """
    from ..model.checkpoint import segmentation_state, text_encoder_state
    from ..model.config import SATConfig

    variant = entry(name)["variant"]
    config = SATConfig.for_variant(variant)
    for filename, check in (("segmentation.pth", segmentation_state), ("text_encoder.pth", text_encoder_state)):
        staged = folder / filename
        try:
            check(staged, config)
            continue
        except ModelError as exc:
            message = exc.message.replace(str(staged), labels[filename])
        found = variant_of(staged) if filename == "segmentation.pth" else None
        if found not in (None, variant):
            raise wrong_variant(name, found, labels[filename])
        wanted = display_name(variant)
        raise ModelError(f"Cannot {action} {wanted}: {message}",
                         f"Copy the official {wanted} file again (it may be damaged or a different file) from {hub_page()}.")


def wrong_variant(name: str, found: str | None, label: str) -> ModelError:
    """The error for a segmentation checkpoint of another architecture than model `name`'s."""
    wanted = entry(name)["display_name"]
    if found is None:
        return ModelError(f"{label} is a SAT segmentation checkpoint, but neither SAT-Nano nor SAT-Pro (not {wanted}).",
                          f"Import the official {wanted} files from {hub_page()}.")
    official = model_name_for(found)
    if official:
        return ModelError(f"Found {display_name(found)} weights in {label}, not {wanted}.",
                          f"Import them as `{official}` (`satsegment models import {official} PATH`), "
                          f"or give the {wanted} files.")
    return ModelError(f"{label} is a {display_name(found)} checkpoint, not an official model ({wanted} was requested).",
                      f"Import the official {wanted} files from {hub_page()}.")


def variant_of(path: Path) -> str | None:
    """Variant of a segmentation checkpoint by its shapes, None when unknown or unreadable."""
    from ..model.checkpoint import detect_variant, read_state_dict

    try:
        return detect_variant(read_state_dict(path))
    except ModelError:
        return None
