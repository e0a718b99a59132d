"""Named prompt lists (abdominal organs, organs at risk, spine, ...) for one-click selection."""

from __future__ import annotations

from .catalog import catalog, load_json, normalize_modality


def presets(modality: str | None = None) -> dict[str, list[str]]:
    """Preset name -> SAT terms, keeping only terms SAT knows for `modality`; empty presets are dropped."""
    m = normalize_modality(modality)
    known = catalog()
    out = {}
    for name, terms in load_json("presets.json")["presets"].items():
        kept = [t for t in terms if m is None or m in known[t].modalities]
        if kept:
            out[name] = kept
    return out
