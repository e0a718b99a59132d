"""The fast paths of complete()/resolve() give exactly what the general search gives, and long input stays cheap."""

from __future__ import annotations

import functools
import itertools
import random
import string

import pytest

from SATSegmentLib.errors import UnknownPromptError
from SATSegmentLib.vocabulary import complete, resolve
from SATSegmentLib.vocabulary.catalog import catalog
from SATSegmentLib.vocabulary.matcher import MAX_QUERY_CHARS, SHORT_PREFIX, TIERS, _search, index
from SATSegmentLib.vocabulary.text import osa_distance

CHARS = string.ascii_lowercase + string.digits
SHORT_WORDS = [*CHARS, *("".join(p) for p in itertools.product(CHARS, repeat=2))]
MODALITIES = [None, "ct", "mri", "pet"]


@functools.cache
def aliases_by_start() -> dict[str, list]:
    """Every alias (in index order) under its full forms and the first 1 and 2 letters of each of its words."""
    out: dict[str, list] = {}
    for e in index().entries:
        for key in {t[:n] for t in e.tokens for n in (1, 2)} | {e.joined, "".join(e.tokens)}:
            out.setdefault(key, []).append(e)
    return out


def brute_force(word: str, modality: str | None) -> list[tuple[str, float, str]]:
    """(term, score, reason) for one short word, from the documented tiers over every alias (not the matcher)."""
    best: dict[str, tuple[float, str]] = {}
    known = catalog()
    for e in aliases_by_start().get(word, []):
        info = known[e.term]
        if modality is not None and modality not in info.modalities:
            continue
        if word in (e.joined, "".join(e.tokens)):
            tier, reason = ("exact", "exact") if e.kind == "exact" else ("alias", e.kind)
        elif any(t.startswith(word) for t in e.tokens):
            tier = reason = "prefix" if e.joined.startswith(word) else "word-prefix"
        else:
            continue
        score = TIERS[tier] + info.prior - 0.05 * len(e.term.split())
        if e.term not in best or score > best[e.term][0]:
            best[e.term] = (score, reason)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [(term, round(score, 3), reason) for term, (score, reason) in ranked]


def test_short_words_cover_every_table_entry():
    assert SHORT_PREFIX == 2 and set(index().short) <= set(SHORT_WORDS)


@pytest.mark.parametrize("modality", MODALITIES)
def test_short_word_table_equals_general_search(modality):
    idx, everything = index(), len(catalog())
    for word in SHORT_WORDS:
        for limit in (1, 10, everything):
            assert complete(word, modality, limit) == _search(idx, (word,), modality, limit), (word, limit)


@pytest.mark.parametrize("modality", MODALITIES)
def test_short_word_ranking_equals_brute_force(modality):
    for word in SHORT_WORDS:
        got = [(s.term, s.score, s.reason) for s in complete(word, modality, len(catalog()))]
        assert got == brute_force(word, modality), word


def test_single_letter_modality_field():
    assert all(s.modality == ("mri",) for s in complete("l", "MRI", 50))
    assert {s.modality for s in complete("l", None, 500)} >= {("ct",), ("ct", "mri"), ("mri",)}


@pytest.mark.parametrize("query", ["", " ", "   ", "\t\n", "_-/", "!!!", ".", "—"])
def test_empty_queries(query):
    assert complete(query) == [] and complete(query, "ct") == []
    with pytest.raises(UnknownPromptError, match="empty"):
        resolve(query, "ct")


def test_only_the_first_characters_are_read():
    rng = random.Random(0)
    for text in ["liver " * 2000, "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(10_000)),
                 "".join(rng.choice(string.ascii_lowercase) for _ in range(10_000)), "l " * 5000, "hipocampus " * 900]:
        assert complete(text, None) == complete(text[:MAX_QUERY_CHARS], None)
        assert complete(text, "ct", 50) == complete(text[:MAX_QUERY_CHARS], "ct", 50)
    assert complete("  liver" + " " * 10_000, "ct")[0].term == "liver"
    assert complete("liver " * 2000, "ct")[0].term == "liver"


@pytest.mark.parametrize("text", ["x" * 10_000, "ab" * 5000, "".join(random.Random(1).choices(string.printable, k=200)),
                                  "é" * 10_000, "ﬁ" * 10_000, "hipocampus " * 25, "a b c d e f g h i j k l m n o p"])
def test_long_or_odd_input_is_refused_cleanly(text):
    assert all(s.reason == "typo" for s in complete(text))
    with pytest.raises(UnknownPromptError):
        resolve(text, "mri")


def _plain_osa(a: str, b: str) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_osa_distance_with_common_affixes_trimmed():
    words = ["".join(p) for n in range(5) for p in itertools.product("abc", repeat=n)]
    for a, b in itertools.product(words, repeat=2):
        for limit in (1, 2):
            assert osa_distance(a, b, limit) == min(_plain_osa(a, b), limit + 1), (a, b, limit)
