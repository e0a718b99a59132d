"""Generate the Slicer terminology context (Resources/Terminology/*.term.json) from data/snomed.json.

Usage: python -m SATSegmentLib.vocabulary.build_terminology [--output PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .catalog import catalog
from .terminology import CONTEXT_NAME, _table

SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "Resources" / "Terminology" / \
    "SegmentationCategoryTypeModifier-SATSegment.term.json"


def _code(code: tuple[str, str, str], **extra) -> dict:
    scheme, value, meaning = code
    d = {"CodingSchemeDesignator": scheme, "CodeValue": value, "CodeMeaning": meaning}
    return {**d, **extra}


def context() -> dict:
    """The context as a dict: categories -> types -> modifiers; each (category, type, modifier) code listed once,
    labelled with the first SAT term (alphabetical, commonest first on ties) that uses it."""
    known = catalog()
    terms = sorted(_table().values(), key=lambda t: (-known[t.term].prior, t.term))
    categories: dict[tuple, dict] = {}
    for t in terms:
        cat = categories.setdefault(t.category, _code(t.category, Type=[]))
        # keyed by code, not meaning: Slicer finds a type by its code, so a code appears once per category
        types = {(x["CodingSchemeDesignator"], x["CodeValue"]): x for x in cat["Type"]}
        typ = types.get(t.type[:2])
        color = list(t.color_rgb255)
        if typ is None:
            typ = _code(t.type, recommendedDisplayRGBValue=color, **{"3dSlicerLabel": t.term})
            cat["Type"].append(typ)
        if t.type_modifier:
            mods = typ.setdefault("Modifier", [])
            if all(m["CodeValue"] != t.type_modifier[1] for m in mods):
                mods.append(_code(t.type_modifier, recommendedDisplayRGBValue=color, **{"3dSlicerLabel": t.term}))
        if t.anatomic_region:
            cat["showAnatomy"] = True
    for cat in categories.values():
        cat["Type"].sort(key=lambda x: x["CodeMeaning"].lower())
        cat.setdefault("showAnatomy", False)
    return {"SegmentationCategoryTypeContextName": CONTEXT_NAME, "@schema": SCHEMA,
            "SegmentationCodes": {"Category": sorted(categories.values(), key=lambda c: c["CodeMeaning"])}}


def render() -> str:
    return json.dumps(context(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the generated one")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.output.is_file() and args.output.read_text(encoding="utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
