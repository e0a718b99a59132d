"""Prompts as users type them → SAT's exact terms: cleaning, resolution through the vocabulary, suggestions.

Unknown text is refused with suggestions unless the caller allows free text, and even then it is
reported as a warning: an out-of-vocabulary prompt is never passed off as one SAT knows.
"""

from __future__ import annotations

from typing import Callable

from .errors import InputError, UnknownPromptError

MAX_PROMPT_CHARS = 200

Warn = Callable[[str, list[str]], None]


def check_prompts(prompts: list[str]) -> list[str]:
    """Strip prompts; refuse an empty list, empty prompts and absurdly long ones."""
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
    return cleaned


def resolve_prompts(prompts: list[str], modality: str, allow_free_text: bool, warn: Warn) -> dict[str, str]:
    """Prompt → SAT term, dropping duplicates (also after resolution) with a warning.

    `warn(message, suggestions)` receives every warning. An unknown prompt raises
    `UnknownPromptError` with suggestions, unless `allow_free_text` (then it runs as typed, after a warning).
    """
    from . import vocabulary

    terms: dict[str, str] = {}
    for prompt in prompts:
        try:
            term = vocabulary.resolve(prompt, modality)
        except UnknownPromptError as exc:
            suggestions = exc.suggestions or suggest(prompt, modality)
            if not allow_free_text:
                raise UnknownPromptError(
                    exc.message, "Use one of the suggested terms (`satsegment terms QUERY` lists more), or add "
                    "--allow-free-text to run it anyway (SAT was not trained on it: expect a poor mask).",
                    suggestions) from None
            warn(f"{exc.message} Running it as free text because --allow-free-text was given; "
                 "SAT was not trained on it, so the mask may be meaningless.", suggestions)
            term = prompt.lower()
        duplicate = next((p for p, t in terms.items() if t == term), None)
        if duplicate is not None:
            same = "is given twice" if duplicate.lower() == prompt.lower() else f"means the same as '{duplicate}' ({term})"
            warn(f"Prompt '{prompt}' {same}; it is segmented once.", [])
            continue
        terms[prompt] = term
    return terms


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
