"""What DICOM SEG and RTSTRUCT say about each structure and about the algorithm that made it.

A `Structure` is one mask as the outputs name, code and colour it: the segment name the user sees (SAT term
or TG-263 name, as in the `.seg.nrrd`), the SAT term it came from, its SNOMED CT terminology from the
vocabulary, and how it was made (AUTOMATIC; SEMIAUTOMATIC or MANUAL when exported from Slicer after edits).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import __version__
from ..vocabulary import Terminology

Code = tuple[str, str, str]  # (CodingSchemeDesignator, CodeValue, CodeMeaning)
#: Slicer's default terminology for a new segment (category and type "Tissue"): for free-text prompts,
#: which have no code of their own.
TISSUE: Code = ("SCT", "85756007", "Tissue")
FREE_TEXT_COLOR = (128, 174, 128)  # Slicer's default segment colour
MAX_LO_CHARS = 64  # DICOM LO (ROI Name, Segment Label): at most 64 characters, no backslash
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")


@dataclass(frozen=True)
class Structure:
    """One structure of a result, as written into DICOM objects."""

    key: str                                 # key of its mask (the SAT term for results of a job)
    name: str                                # name shown: segment label / ROI name
    term: str                                # the SAT term (or the free text) it segments
    terminology: Terminology | None = None   # SNOMED CT codes and colour; None for free text
    algorithm_type: str = "AUTOMATIC"

    @property
    def color(self) -> tuple[int, int, int]:
        """Recommended display colour (RGB 0-255)."""
        return self.terminology.color_rgb255 if self.terminology else FREE_TEXT_COLOR

    @property
    def category(self) -> Code:
        return self.terminology.category if self.terminology else TISSUE

    @property
    def type(self) -> Code:
        return self.terminology.type if self.terminology else TISSUE

    @classmethod
    def for_term(cls, term: str, name: str | None = None, key: str | None = None,
                 algorithm_type: str = "AUTOMATIC") -> "Structure":
        """The structure of a SAT term (its vocabulary terminology), or of free text (no terminology)."""
        from ..errors import UnknownPromptError
        from ..vocabulary import terminology_for

        try:
            terminology = terminology_for(term)
        except UnknownPromptError:
            terminology = None
        if algorithm_type not in ALGORITHM_TYPES:
            raise ValueError(f"algorithm_type must be one of {ALGORITHM_TYPES}, not {algorithm_type!r}")
        return cls(key or term, name or term, term, terminology, algorithm_type)


@dataclass(frozen=True)
class Algorithm:
    """The algorithm recorded in the objects: the SAT model that made the masks and the software that wrote them."""

    model: str = "SAT"                # model display name, e.g. "SAT-Nano"
    version: str = "unknown"          # the model weights' version: their SHA-256 fingerprint where known
    software: str = f"SATSegment {__version__}"

    @property
    def description(self) -> str:
        return f"{self.model} ({self.software})"


def dicom_names(names: Iterable[str]) -> list[str]:
    """Names fit for DICOM LO attributes (ROI Name, Segment Label): no backslash or control characters, at most
    64 characters, and still unique after shortening (a number is appended)."""
    result: list[str] = []
    taken: set[str] = set()
    for name in names:
        clean = re.sub(r"[\x00-\x1f\\]+", " ", name).strip() or "segment"
        candidate, number = clean[:MAX_LO_CHARS].rstrip(), 1
        while candidate.casefold() in taken:
            number += 1
            suffix = f" ({number})"
            candidate = clean[:MAX_LO_CHARS - len(suffix)].rstrip() + suffix
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def check_masks(masks, structures: Sequence[Structure]) -> None:
    """Every structure must have a mask, and every structure key must be distinct."""
    keys = [s.key for s in structures]
    if len(set(keys)) != len(keys):
        raise ValueError(f"structure keys repeat: {keys}")
    missing = [k for k in keys if k not in masks]
    if missing:
        raise ValueError(f"no mask for structure(s) {missing}")
