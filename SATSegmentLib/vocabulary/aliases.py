"""Every name a user may type for a SAT term: curated lists (data/aliases.json) plus rule-generated forms."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .catalog import catalog, load_json

SIDES = {"left": ("left", "l", "lt"), "right": ("right", "r", "rt")}
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth"]
SUFFIX = {1: "st", 2: "nd", 3: "rd"}
ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii"]
_VERTEBRA = re.compile(r"^(cervical|thoracic|lumbar|sacral) vertebrae (\d+) \(([ctls]\d+)\)$")
_DISC = re.compile(r"^intervertebral disc between .*\(([tl]\d+)\) and (?:.*\(([tl]\d+)\)|(sacrum))$")
_RIB = re.compile(r"^(?:(left|right) )?rib (\d+)$")
_COUINAUD = {
    "caudate lobe": 1, "left lateral superior segment of liver": 2, "left lateral inferior segment of liver": 3,
    "left medial segment of liver": 4, "right anterior inferior segment of liver": 5,
    "right posterior inferior segment of liver": 6, "right posterior superior segment of liver": 7,
    "right anterior superior segment of liver": 8,
}

# (alias text, SAT term, kind); kind is one of the match reasons reported to users.
Alias = tuple[str, str, str]


def _nth(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else SUFFIX.get(n % 10, 'th')}"


def sided(name: str, side: str) -> Iterator[str]:
    """'left kidney', 'kidney left', 'l kidney', 'kidney l' (= Kidney_L), 'lt kidney', ..."""
    for word in SIDES[side]:
        yield f"{word} {name}"
        yield f"{name} {word}"


def laterality_forms(term: str) -> Iterator[str]:
    for side in SIDES:
        if term.startswith(side + " "):
            yield from sided(term[len(side) + 1:], side)


def vertebra_forms(term: str) -> Iterator[str]:
    m = _VERTEBRA.match(term)
    if not m:
        return
    level, n, code = m.group(1), int(m.group(2)), m.group(3)
    letter = code[0]
    yield from (code, f"{letter} {n}", f"{code} vertebra", f"vertebra {code}", f"{level} vertebra {n}",
                f"{level} {n}", f"{ORDINALS[n - 1]} {level} vertebra", f"{_nth(n)} {level} vertebra",
                f"vb {code}", f"vb {letter}{n:02d}")


def disc_forms(term: str) -> Iterator[str]:
    m = _DISC.match(term)
    if not m:
        return
    upper, lower = m.group(1), m.group(2) or "s1"
    short = lower[1:] if lower[0] == upper[0] else lower
    for pair in (f"{upper} {lower}", f"{upper} {short}"):
        yield from (pair, f"{pair} disc", f"disc {pair}", f"{pair} intervertebral disc",
                    f"intervertebral disc {pair}", f"{pair} disk")


def rib_forms(term: str) -> Iterator[str]:
    m = _RIB.match(term)
    if not m:
        return
    side, n = m.group(1), int(m.group(2))
    bases = [f"{_nth(n)} rib", f"{ORDINALS[n - 1]} rib", f"rib{n:02d}", f"rib {n:02d}"]
    if side is None:
        yield from bases
        return
    for base in bases + [f"rib {n}"]:
        yield from sided(base, side)
    for word in SIDES[side]:
        yield from (f"{_nth(n)} {word} rib", f"{ORDINALS[n - 1]} {word} rib", f"rib {word} {n}")


def couinaud_forms(term: str) -> Iterator[str]:
    n = _COUINAUD.get(term)
    if n:
        for num in (str(n), ROMAN[n - 1]):
            yield from (f"liver segment {num}", f"segment {num}", f"couinaud segment {num}", f"couinaud {num}",
                        f"hepatic segment {num}", f"segment {num} of liver")


RULES = (laterality_forms, vertebra_forms, disc_forms, rib_forms, couinaud_forms)


def _targets(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def curated_aliases() -> Iterator[Alias]:
    """TG-263, TotalSegmentator, abbreviation and synonym names from data/aliases.json (in that precedence),
    with left/right forms of abbreviations and synonyms of bilateral structures."""
    data = load_json("aliases.json")
    known = catalog()
    for name, value in data["tg263"].items():
        for term in _targets(value):
            yield name, term, "TG-263"
    for task, table in data["totalsegmentator"].items():
        if not task.startswith("_"):
            yield from ((name, term, "TotalSegmentator") for name, term in table.items() if term is not None)
    for kind, section in (("abbreviation", "abbreviations"), ("synonym", "synonyms")):
        for alias, value in data[section].items():
            targets = _targets(value)
            yield from ((alias, term, kind) for term in targets)
            for side in SIDES:
                sided_terms = [f"{side} {t}" for t in targets if f"{side} {t}" in known]
                sided_terms += [t for t in targets if len(targets) == 2 and t.startswith(side + " ")]
                for term in sided_terms:
                    yield from ((form, term, kind) for form in sided(alias, side))


def all_aliases() -> Iterator[Alias]:
    """The terms themselves, then curated names, then rule-generated forms (first kind wins on duplicates)."""
    yield from ((term, term, "exact") for term in catalog())
    yield from curated_aliases()
    for term in catalog():
        yield from ((form, term, "synonym") for rule in RULES for form in rule(term))


def spelling() -> dict[str, str]:
    return load_json("aliases.json")["spelling"]
