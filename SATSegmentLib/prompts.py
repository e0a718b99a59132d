"""Prompts as users type them → SAT's exact terms: cleaning, resolution through the vocabulary, suggestions.

Unknown text is refused with suggestions unless the caller allows free text, and even then it is
reported as a warning: an out-of-vocabulary prompt is never passed off as one SAT knows.
Work and warnings stay bounded whatever the list holds: each distinct prompt is resolved once, at most
`MAX_PROMPTS` distinct prompts are accepted, and repeats are reported in one short warning.
Structure lists (`read_structure_list`) come as one name per line, comma/semicolon separated, or as the
CSV structure-template export of a planning system; all unknown entries are reported together.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import InputError, UnknownPromptError

MAX_PROMPT_CHARS = 200
MAX_PROMPTS = 1000  # different prompts in one job: twice the terms SAT knows (451), aliases and free text included
LISTED_REPEATS = 5  # repeated prompts named in the warning; the rest are counted

Warn = Callable[[str, list[str]], None]
FREE_TEXT_HINT = ("Use one of the suggested terms (`satsegment terms QUERY` lists more), or add --allow-free-text "
                  "to run it anyway (SAT was not trained on it: expect a poor mask).")


def check_prompts(prompts: list[str]) -> list[str]:
    """Strip prompts; refuse an empty list, empty prompts, absurdly long ones and too many different ones."""
    cleaned = [" ".join(str(p).split()) for p in prompts]
    if not cleaned:
        raise InputError("No prompts given.", "Add --prompt NAME (e.g. --prompt liver); `satsegment terms` lists what SAT knows.")
    for prompt in cleaned:
        if not prompt:
            raise InputError("A prompt is empty.", "Remove it, or give an anatomy name such as 'liver'.")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(
                f"A prompt is {len(prompt)} characters long ('{prompt[:40]}…'); SAT prompts are anatomy names of at most {MAX_PROMPT_CHARS} characters.",
                "Give one structure per prompt, e.g. --prompt liver --prompt 'left kidney'.")
    distinct = len(set(cleaned))
    if distinct > MAX_PROMPTS:
        raise InputError(f"{distinct:,} different prompts were given; one job segments at most {MAX_PROMPTS:,}.",
                         "Split them over several jobs.")
    return cleaned


def resolve_prompts(prompts: list[str], modality: str, allow_free_text: bool, warn: Warn) -> dict[str, str]:
    """Prompt → SAT term in prompt order, dropping duplicates (also after resolution) with one warning.

    `warn(message, suggestions)` receives every warning. An unknown prompt raises
    `UnknownPromptError` with suggestions, unless `allow_free_text` (then it runs as typed, after a warning).
    """
    resolved: dict[str, str] = {}  # each distinct prompt text is resolved (and warned about) once
    if not allow_free_text:  # every unknown prompt in one error, not just the first
        resolution = resolve_entries(prompts, modality)
        resolution.raise_unresolved(FREE_TEXT_HINT)
        resolved = resolution.terms
    kept: dict[str, str] = {}  # term → the first prompt that asked for it
    repeats: dict[str, int] = {}  # dropped prompt text → how often it was dropped
    for prompt in prompts:
        if prompt not in resolved:
            resolved[prompt] = _resolve(prompt, modality, allow_free_text, warn)
        term = resolved[prompt]
        if term in kept:
            repeats[prompt] = repeats.get(prompt, 0) + 1
        else:
            kept[term] = prompt
    if repeats:
        warn(_repeats_message(repeats, {prompt: kept[term] for prompt, term in resolved.items()}), [])
    return {prompt: term for term, prompt in kept.items()}


def _resolve(prompt: str, modality: str, allow_free_text: bool, warn: Warn) -> str:
    """The SAT term for one prompt; unknown text raises, or with `allow_free_text` runs as typed after a warning."""
    from . import vocabulary

    try:
        return vocabulary.resolve(prompt, modality)
    except UnknownPromptError as exc:
        suggestions = exc.suggestions or suggest(prompt, modality)
        if not allow_free_text:
            raise UnknownPromptError(exc.message, FREE_TEXT_HINT, suggestions) from None
        warn(f"{exc.message} Running it as free text because --allow-free-text was given; "
             "SAT was not trained on it, so the mask may be meaningless.", suggestions)
        return prompt.lower()


def _repeats_message(repeats: dict[str, int], kept_for: dict[str, str]) -> str:
    """One warning for all dropped prompts, naming at most `LISTED_REPEATS` of them.

    `repeats`: dropped prompt text → times dropped; `kept_for`: prompt text → the prompt kept for its term.
    """
    listed = []
    for prompt, count in list(repeats.items())[:LISTED_REPEATS]:
        same = "" if kept_for[prompt] == prompt else f" (same as '{kept_for[prompt]}')"
        times = f" ×{count:,}" if count > 1 else ""
        listed.append(f"'{prompt}'{same}{times}")
    message = f"Prompts that repeat an earlier one are segmented once: {', '.join(listed)}"
    more = len(repeats) - len(listed)
    return f"{message} and {more:,} more." if more else f"{message}."


def suggest(prompt: str, modality: str, limit: int = 5) -> list[str]:
    """Closest SAT terms for an unknown prompt: completions of the whole prompt, else of its words."""
    from . import vocabulary

    found = [s.term for s in vocabulary.complete(prompt, modality, limit=limit)]
    for word in sorted(re.findall(r"[^\W_]+", prompt), key=len, reverse=True):  # TG-263 style names: '_' separates words
        if len(found) >= limit:
            break
        if len(word) >= 3:
            found += [s.term for s in vocabulary.complete(word, modality, limit=limit) if s.term not in found]
    return found[:limit]


# ---- structure lists ---------------------------------------------------------------------------

#: Header cells (compared without case, spaces, '-' and '_') that name the structure column of a CSV export:
#: planning-system structure templates ("Structure", "Structure ID", "ROI Name"), the AAPM TG-263 table
#: ("TG263-Primary Name") and plain tables ("Name").
STRUCTURE_COLUMNS = ("structure", "structurename", "structureid", "structurelabel", "roiname", "roi", "name",
                     "tg263primaryname", "primaryname")
_LIST_SEPARATORS = re.compile(r"[,;\t]")


def read_structure_list(source: str | os.PathLike) -> list[str]:
    """Structure names from a file (`source` a `Path`) or from text (`source` a `str`, e.g. pasted).

    Accepted: one name per line (`#` starts a comment); names separated by commas or semicolons
    (`Parotid_L; Parotid_R; SpinalCord`); a CSV/TSV table whose header has a structure column
    (`STRUCTURE_COLUMNS`, e.g. "Structure", "ROI Name"), as planning systems export structure templates.
    Files may be UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark (Excel's
    "Unicode text"). Names are returned as written, in order; resolving them is `resolve_entries`' job.
    """
    if isinstance(source, str):
        return parse_structure_list(source)
    path = Path(source).expanduser()
    try:
        data = path.read_bytes()
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the structure list {path}: {exc}.",
                         "Give a UTF-8 text file with one structure per line, or a CSV export with a "
                         "'Structure' or 'ROI Name' column.") from exc
    return parse_structure_list(text)


def parse_structure_list(text: str) -> list[str]:
    """The structure names in `text` (see `read_structure_list`), whitespace-normalised, empty entries dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    column = _structure_column(lines[0]) if lines else None
    if column is not None:
        delimiter = _delimiter(lines[0])
        rows = list(csv.reader(lines[1:], delimiter=delimiter)) if delimiter else [[line] for line in lines[1:]]
        entries = [row[column] for row in rows if len(row) > column]
    else:
        entries = [part for line in lines for part in _LIST_SEPARATORS.split(line.split("#", 1)[0])]
    return [name for name in (" ".join(entry.split()) for entry in entries) if name]


def _delimiter(header: str) -> str | None:
    """The CSV delimiter of a header line: tab, semicolon (European Excel) or comma; None for one column."""
    return next((d for d in ("\t", ";", ",") if d in header), None)


def _structure_column(header: str) -> int | None:
    """Index of the structure column if `header` is a CSV header naming one, else None."""
    delimiter = _delimiter(header)
    cells = next(csv.reader([header], delimiter=delimiter)) if delimiter else [header]
    keys = [re.sub(r"[\s_\-]+", "", cell).lower() for cell in cells]
    for wanted in STRUCTURE_COLUMNS:  # the more specific header wins: "Structure" before "Name"
        if wanted in keys:
            return keys.index(wanted)
    return None


@dataclass
class ListResolution:
    """Entries of a structure list resolved with the vocabulary (each distinct entry once, in order)."""

    terms: dict[str, str] = field(default_factory=dict)  # entry → SAT term
    unresolved: dict[str, UnknownPromptError] = field(default_factory=dict)  # entry → why, with suggestions

    def raise_unresolved(self, hint: str | None = None) -> None:
        """Raise one UnknownPromptError naming every unresolved entry with its suggestions (none: return);
        `hint` replaces the vocabulary's hint."""
        if len(self.unresolved) == 1:
            error = next(iter(self.unresolved.values()))
            raise UnknownPromptError(error.message, hint or error.hint, error.suggestions)
        if self.unresolved:
            lines = []
            for entry, error in self.unresolved.items():
                maybe = f" (did you mean: {', '.join(error.suggestions[:5])}?)" if error.suggestions else ""
                lines.append(f"  - {entry}: {error.message}{maybe}")
            raise UnknownPromptError(
                f"{len(self.unresolved)} entries are not SAT terms; nothing was run:\n" + "\n".join(lines),
                hint or "Correct them (`satsegment terms QUERY` lists what SAT knows) or remove them from the list.")


def resolve_entries(entries: list[str], modality: str) -> ListResolution:
    """Resolve every entry with the vocabulary for `modality`, collecting the unresolved ones with suggestions."""
    from . import vocabulary

    result = ListResolution()
    for entry in dict.fromkeys(entries):
        try:
            result.terms[entry] = vocabulary.resolve(entry, modality)
        except UnknownPromptError as exc:
            result.unresolved[entry] = UnknownPromptError(exc.message, exc.hint, exc.suggestions or suggest(entry, modality))
    return result
