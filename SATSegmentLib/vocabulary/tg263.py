"""AAPM TG-263 structure names for SAT terms: the output direction (SAT term -> one primary name).

Radiotherapy planning systems and their templates expect TG-263 names (`Parotid_L`, `SpinalCord`,
`Bowel_Small`). `data/tg263.json` holds, per SAT term, the one primary name written for it; the input
direction (TG-263 name -> SAT term, several spellings accepted) is the `tg263` section of
`data/aliases.json`. Terms without a TG-263 name (most brain parcels, lesions, free text) keep their SAT
term, and callers say so in one warning (`without_tg263_name`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from .catalog import load_json


@lru_cache(maxsize=1)
def tg263_names() -> dict[str, str]:
    """SAT term -> its TG-263 primary name, for every term that has one."""
    return dict(load_json("tg263.json")["primary"])


def tg263_name(term: str) -> str | None:
    """The TG-263 primary name of a SAT term, or None when TG-263 has none for it."""
    return tg263_names().get(term)


def without_tg263_name(terms: Iterable[str]) -> list[str]:
    """The terms (in order, once each) that have no TG-263 name and so keep their SAT term."""
    return [term for term in dict.fromkeys(terms) if tg263_name(term) is None]
