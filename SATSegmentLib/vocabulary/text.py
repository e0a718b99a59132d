"""Text normalisation shared by the alias index and the queries: one canonical token form for both."""

from __future__ import annotations

import re
import unicodedata

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_KEEP_S = ("ss", "us", "is", "ns")


def tokens(text: str, spelling: dict[str, str]) -> tuple[str, ...]:
    """Lower-case words with camelCase, '_', '-', '/' and punctuation split, plurals and spellings folded."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _NON_ALNUM.sub(" ", _CAMEL.sub(" ", text).lower())
    return tuple(canonical_word(w, spelling) for w in text.split())


def canonical_word(word: str, spelling: dict[str, str]) -> str:
    """Fold British spellings and simple English plurals ("kidneys" -> "kidney", "arteries" -> "artery")."""
    word = spelling.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(_KEEP_S):
        return spelling.get(word[:-1], word[:-1])
    return word


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment (Damerau-Levenshtein with adjacent swaps) distance, capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    start = 0  # a common prefix and suffix never change the distance
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[-1], limit + 1)


def deletes(word: str, depth: int) -> set[str]:
    """All strings obtained by deleting up to `depth` characters (the symmetric-delete typo index)."""
    out = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def typo_budget(word: str) -> int:
    """Edits allowed for a word: none below 4 letters, 1 up to 7, 2 from 8."""
    return 0 if len(word) < 4 else 1 if len(word) < 8 else 2
