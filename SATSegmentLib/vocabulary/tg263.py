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


#: How outputs name structures: SAT's own terms, or TG-263 primary names where TG-263 has one.
NAME_SCHEMES = ("sat", "tg263")


def check_name_scheme(scheme: str) -> str:
    """`scheme` if it is one of NAME_SCHEMES (case-insensitive), else an InputError."""
    from ..errors import InputError

    value = str(scheme).strip().lower()
    if value not in NAME_SCHEMES:
        raise InputError(f"Unknown naming '{scheme}' for structures.", "Use 'sat' (SAT's terms) or 'tg263' (AAPM TG-263 names).")
    return value


def structure_name(term: str, scheme: str) -> str:
    """The name outputs give a structure: its TG-263 name under 'tg263' when it has one, else the SAT term."""
    return (tg263_name(term) if check_name_scheme(scheme) == "tg263" else None) or term


def missing_names_warning(terms: Iterable[str]) -> str | None:
    """The one warning for terms that keep their SAT term under 'tg263' naming (None when all have a name)."""
    missing = without_tg263_name(terms)
    if not missing:
        return None
    listed = ", ".join(f"'{t}'" for t in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return f"TG-263 has no name for {len(missing)} structure(s), which keep SAT's term: {listed}."
