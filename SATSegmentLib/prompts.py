"""Prompts as users type them → SAT's exact terms: cleaning, resolution through the vocabulary, suggestions.

Unknown text is refused with suggestions unless the caller allows free text, and even then it is
reported as a warning: an out-of-vocabulary prompt is never passed off as one SAT knows.
Work and warnings stay bounded whatever the list holds: each distinct prompt is resolved once, at most
`MAX_PROMPTS` distinct prompts are accepted, and repeats are reported in one short warning.
"""

from __future__ import annotations

from typing import Callable

from .errors import InputError, UnknownPromptError

MAX_PROMPT_CHARS = 200
MAX_PROMPTS = 1000  # different prompts in one job: twice the terms SAT knows (451), aliases and free text included
LISTED_REPEATS = 5  # repeated prompts named in the warning; the rest are counted

Warn = Callable[[str, list[str]], None]


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
            raise UnknownPromptError(
                exc.message, "Use one of the suggested terms (`satsegment terms QUERY` lists more), or add "
                "--allow-free-text to run it anyway (SAT was not trained on it: expect a poor mask).",
                suggestions) from None
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
    for word in sorted(prompt.split(), key=len, reverse=True):
        if len(found) >= limit:
            break
        if len(word) >= 3:
            found += [s.term for s in vocabulary.complete(word, modality, limit=limit) if s.term not in found]
    return found[:limit]
