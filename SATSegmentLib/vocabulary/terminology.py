"""Standard terminology (SNOMED CT category/type/modifier/region) and colours for SAT terms, for Slicer segments."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import UnknownPromptError
from .catalog import load_json

CONTEXT_NAME = "Segmentation category and type - SATSegment"
ANATOMIC_CONTEXT_NAME = "Anatomic codes - DICOM master list"
Code = tuple[str, str, str]  # (CodingSchemeDesignator, CodeValue, CodeMeaning)


@dataclass(frozen=True)
class Terminology:
    """A SAT term's terminology entry as Slicer stores it, plus its recommended colour."""

    term: str
    category: Code
    type: Code
    type_modifier: Code | None
    anatomic_region: Code | None
    anatomic_region_modifier: Code | None
    color_rgb255: tuple[int, int, int]
    source: str

    @property
    def color_rgb(self) -> tuple[float, float, float]:
        """Colour with components in 0..1 (what Slicer's segment colour API takes)."""
        return tuple(c / 255.0 for c in self.color_rgb255)

    def slicerio_dict(self) -> dict:
        """The terminology dict used by slicerio (segment['terminology'])."""
        d = {"contextName": CONTEXT_NAME, "category": list(self.category), "type": list(self.type)}
        if self.type_modifier:
            d["typeModifier"] = list(self.type_modifier)
        d["anatomicContextName"] = ANATOMIC_CONTEXT_NAME
        if self.anatomic_region:
            d["anatomicRegion"] = list(self.anatomic_region)
            if self.anatomic_region_modifier:
                d["anatomicRegionModifier"] = list(self.anatomic_region_modifier)
        return d

    @property
    def slicer_entry(self) -> str:
        """The `TerminologyEntry` tag value Slicer writes in .seg.nrrd (`SegmentN_Tags`)."""
        from slicerio.segmentation import terminology_entry_to_string

        return terminology_entry_to_string(self.slicerio_dict())


def _code(value: list[str] | None) -> Code | None:
    return tuple(value) if value else None


@lru_cache(maxsize=1)
def _table() -> dict[str, Terminology]:
    out = {}
    for term, d in load_json("snomed.json")["terms"].items():
        out[term] = Terminology(term, _code(d["category"]), _code(d["type"]), _code(d.get("typeModifier")),
                                _code(d.get("anatomicRegion")), _code(d.get("anatomicRegionModifier")),
                                tuple(d["color"]), d["source"])
    return out


def terminology_for(term: str) -> Terminology:
    """Terminology and colour of a SAT term (as returned by `resolve`)."""
    try:
        return _table()[term]
    except KeyError:
        raise UnknownPromptError(f"'{term}' is not a SAT term.", hint="Resolve the prompt first with resolve().") from None


def local_coding_scheme() -> dict:
    """The private coding scheme used for SAT terms that have no faithful SNOMED CT code."""
    return load_json("snomed.json")["localCodingScheme"]
