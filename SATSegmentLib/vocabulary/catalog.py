"""SAT's vocabulary (SAT-DS terminology_list.json, shipped verbatim): terms, modalities, regions, lesions."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import InputError

MODALITIES = ("ct", "mri", "pet")


@dataclass(frozen=True)
class Term:
    """One SAT term (the text SAT is prompted with) and where SAT knows it."""

    term: str
    modalities: tuple[str, ...]
    regions: tuple[str, ...]
    lesion: bool
    datasets: tuple[str, ...]
    prior: float  # commonness prior used for ranking (see docs/vocabulary.md)


def load_json(name: str) -> dict:
    """A JSON file from the package's data folder."""
    return json.loads(resources.files(__package__).joinpath("data").joinpath(name).read_text(encoding="utf-8"))


def normalize_modality(modality: str | None) -> str | None:
    """SAT's own rule (inference.py `_merge_modality`): t1/t2/mri/mr/flair/dwi -> mri, then ct, then pet."""
    if modality is None:
        return None
    m = str(modality).strip().lower()
    if any(k in m for k in ("t1", "t2", "mri", "mr", "flair", "dwi")):
        return "mri"
    if "ct" in m:
        return "ct"
    if "pet" in m:
        return "pet"
    raise InputError(f"Unknown modality '{modality}'.", hint="Use one of: CT, MRI, PET.")


@lru_cache(maxsize=1)
def catalog() -> dict[str, Term]:
    """Every SAT term, keyed by its text; built once from the shipped SAT-DS list."""
    raw = load_json("sat_terminology_list.json")
    preset_terms = {t for terms in load_json("presets.json")["presets"].values() for t in terms}
    info: dict[str, dict] = {}
    for entry in raw["all"]:
        modality, term = entry.split("_", 1)
        info.setdefault(term, {"modalities": set(), "regions": set(), "datasets": set(), "lesion": False})
        info[term]["modalities"].add(modality)
    for key, group in (("regions", raw["region_based"]), ("datasets", raw["dataset_based"])):
        for name, entries in group.items():
            for entry in entries:
                info[entry.split("_", 1)[1]][key].add(name)
    for entry in raw["abnormal"]:
        info[entry.split("_", 1)[1]]["lesion"] = True
    out = {}
    for term, d in sorted(info.items()):
        prior = math.log2(1 + len(d["datasets"])) + (3.0 if term in preset_terms else 0.0)
        out[term] = Term(term, tuple(m for m in MODALITIES if m in d["modalities"]), tuple(sorted(d["regions"])),
                         d["lesion"], tuple(sorted(d["datasets"])), prior)
    return out


def terms(modality: str | None = None) -> list[Term]:
    """All SAT terms, or those SAT knows for `modality`."""
    m = normalize_modality(modality)
    return [t for t in catalog().values() if m is None or m in t.modalities]
