"""Autocomplete and prompt resolution over the alias index (pure Python, built once on first use)."""

from __future__ import annotations

import bisect
import gc
import itertools
from dataclasses import dataclass, replace
from functools import lru_cache

from ..errors import InputError, UnknownPromptError
from .aliases import all_aliases, spelling
from .catalog import catalog, normalize_modality
from .text import deletes, osa_distance, tokens, typo_budget

MODALITY_NAMES = {"ct": "CT", "mri": "MRI", "pet": "PET"}
# Tier of each kind of match; the commonness prior (0..~9) and a brevity bonus order terms within a tier.
TIERS = {"exact": 100.0, "alias": 90.0, "prefix": 70.0, "word-prefix": 60.0,
         "typo": 50.0, "typo-prefix": 40.0, "typo-word-prefix": 35.0}
REASONS = {"typo-prefix": "typo", "typo-word-prefix": "typo"}  # "alias" reports the alias kind
MAX_TYPO_COMBINATIONS = 16
MAX_QUERY_CHARS = 256  # longer input is cut (the longest alias has 87 characters)
SHORT_PREFIX = 2  # one-word queries up to this length are answered from rankings built with the index
Variants = list[tuple[str, ...]]  # query words with misspelt words corrected


@dataclass(frozen=True)
class Suggestion:
    """One completion: the SAT term to prompt with and why it matched what was typed."""

    term: str
    display: str
    modality: tuple[str, ...]
    reason: str  # exact | prefix | word-prefix | synonym | abbreviation | TG-263 | TotalSegmentator | typo
    score: float
    matched: str  # the name that matched, as written in the vocabulary data


@dataclass(frozen=True)
class _Entry:
    tokens: tuple[str, ...]
    joined: str
    term: str
    kind: str
    text: str
    modalities: tuple[str, ...]
    prior: float
    penalty: float  # brevity: 0.05 per word of the term


class AliasIndex:
    """Exact lookup, word-prefix postings and a symmetric-delete typo index over every alias."""

    def __init__(self) -> None:
        self.spelling = spelling()
        known = catalog()
        self.entries: list[_Entry] = []
        self.exact: dict[str, list[int]] = {}
        postings: dict[str, set[int]] = {}
        seen: set[tuple[str, str]] = set()
        for text, term, kind in all_aliases():
            toks = tokens(text, self.spelling)
            joined = " ".join(toks)
            if not toks or (joined, term) in seen:
                continue
            seen.add((joined, term))
            i = len(self.entries)
            info = known[term]
            self.entries.append(_Entry(toks, joined, term, kind, text, info.modalities, info.prior,
                                       0.05 * len(term.split())))
            for key in {joined, "".join(toks)}:
                self.exact.setdefault(key, []).append(i)
            for tok in toks:
                postings.setdefault(tok, set()).add(i)
        self.postings = postings
        self.vocab = sorted(postings)
        self.longest = max(map(len, self.vocab))
        self.deletes: dict[str, set[str]] = {}  # symmetric-delete typo index: deletion form -> vocabulary words
        for v in self.vocab:
            for d in deletes(v, typo_budget(v)):
                self.deletes.setdefault(d, set()).add(v)
        self.short: dict[str, list[Suggestion]] = {}  # filled by index(): word -> every matching term, ranked

    def with_prefix(self, prefix: str) -> list[str]:
        lo = bisect.bisect_left(self.vocab, prefix)
        hi = bisect.bisect_left(self.vocab, prefix + "\x7f")
        return self.vocab[lo:hi]

    def prefix_candidates(self, q: tuple[str, ...]) -> set[int]:
        """Aliases in which every query word is the start of some alias word."""
        result: set[int] | None = None
        for tok in sorted(dict.fromkeys(q), key=len, reverse=True):
            ids: set[int] = set()
            for word in self.with_prefix(tok):
                ids |= self.postings[word]
            result = ids if result is None else result & ids
            if not result:
                return set()
        return result or set()

    def corrections(self, word: str, last: bool) -> list[str]:
        """Vocabulary words within the typo budget of `word` (and, for the word being typed, of its start)."""
        budget = typo_budget(word)
        if budget == 0 or len(word) > self.longest + budget:
            return []
        found = {v for d in deletes(word, budget) for v in self.deletes.get(d, ())}
        found = {v for v in found if osa_distance(word, v, budget) <= budget}
        if last and not found:
            found = {v for v in self.vocab if len(v) > len(word) and v[0] == word[0]
                     and osa_distance(word, v[:len(word)], budget) <= budget}
        return sorted(found)


@lru_cache(maxsize=1)
def index() -> AliasIndex:
    """The alias index, with the full ranking of every one-word query of up to SHORT_PREFIX characters."""
    idx = AliasIndex()
    words = {v[:n] for v in idx.vocab for n in range(1, SHORT_PREFIX + 1)}
    words |= {k for k in idx.exact if len(k) <= SHORT_PREFIX}
    idx.short = {w: _search(idx, (w,), None, len(catalog())) for w in sorted(words)}
    gc.collect()  # the one full collection the new objects call for happens now, not during a later keystroke
    return idx


class _Collector:
    """Keeps the best match per SAT term for one query."""

    def __init__(self, modality: str | None) -> None:
        self.modality = modality
        self.catalog = catalog()
        self.best: dict[str, tuple[float, str, str]] = {}

    def add(self, entry: _Entry, tier: str) -> None:
        if self.modality is not None and self.modality not in entry.modalities:
            return
        if tier == "alias" and entry.kind == "exact":
            tier = "exact"
        score = TIERS[tier] + entry.prior - entry.penalty
        best = self.best.get(entry.term)
        if best is None or score > best[0]:
            reason = entry.kind if tier == "alias" else REASONS.get(tier, tier)
            self.best[entry.term] = (score, reason, entry.text)

    def suggestions(self, limit: int) -> list[Suggestion]:
        ranked = sorted(self.best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
        out = []
        for term, (score, reason, text) in ranked:
            mods = self.catalog[term].modalities
            if self.modality is not None:
                mods = (self.modality,)
            display = term if text == term or f"({text})" in term else f"{term} ({text})"
            out.append(Suggestion(term, display, mods, reason, round(score, 3), text))
        return out


def _match(idx: AliasIndex, q: tuple[str, ...], found: _Collector, typo: bool) -> None:
    joined = " ".join(q)
    for i in idx.exact.get(joined, []) + idx.exact.get("".join(q), []):
        found.add(idx.entries[i], "typo" if typo else "alias")
    for i in idx.prefix_candidates(q):
        entry = idx.entries[i]
        if entry.joined == joined:
            continue
        prefix = entry.joined.startswith(joined)
        found.add(entry, ("typo-prefix" if prefix else "typo-word-prefix") if typo else
                  ("prefix" if prefix else "word-prefix"))


def _typo_variants(idx: AliasIndex, q: tuple[str, ...]) -> Variants:
    """Queries with misspelt words replaced by vocabulary words; empty if nothing needed or could be fixed."""
    options = []
    changed = False
    fixes_of: dict[tuple[str, bool], list[str]] = {}  # a word repeated in the query is corrected once
    for pos, word in enumerate(q):
        last = pos == len(q) - 1
        known = word in idx.postings or (last and idx.with_prefix(word))
        if not known and (word, last) not in fixes_of:
            fixes_of[word, last] = idx.corrections(word, last)
        fixes = fixes_of[word, last] if not known else []
        if not known and not fixes:
            return []
        changed |= bool(fixes)
        options.append(fixes or [word])
    if not changed:
        return []
    return list(itertools.islice(itertools.product(*options), MAX_TYPO_COMBINATIONS))


def _search(idx: AliasIndex, q: tuple[str, ...], m: str | None, limit: int,
            variants: Variants | None = None) -> list[Suggestion]:
    """The ranking of query words `q` over the whole index (the general path); `variants` if already known."""
    found = _Collector(m)
    _match(idx, q, found, typo=False)
    if len(found.best) < limit:
        for variant in _typo_variants(idx, q) if variants is None else variants:
            _match(idx, variant, found, typo=True)
    return found.suggestions(limit)


def _from_table(ranked: list[Suggestion], m: str | None, limit: int) -> list[Suggestion]:
    """The first `limit` precomputed suggestions that SAT knows for modality m."""
    if m is None:
        return ranked[:limit]
    kept = itertools.islice((s for s in ranked if m in s.modality), limit)
    return [replace(s, modality=(m,)) for s in kept]


def query_words(text: str, idx: AliasIndex) -> tuple[str, ...]:
    """The canonical words of a query, reading at most MAX_QUERY_CHARS characters."""
    return tokens(text.strip()[:MAX_QUERY_CHARS], idx.spelling)


def _complete(idx: AliasIndex, q: tuple[str, ...], m: str | None, limit: int,
              variants: Variants | None = None) -> list[Suggestion]:
    """complete() for non-empty query words: one short word from the table, anything else by _search."""
    if len(q) == 1 and len(q[0]) <= SHORT_PREFIX:
        return _from_table(idx.short.get(q[0], []), m, limit)
    return _search(idx, q, m, limit, variants)


def complete(query: str, modality: str | None = None, limit: int = 10) -> list[Suggestion]:
    """Ranked SAT terms for what the user has typed so far (exact, prefix, word-prefix, alias and typo matches)."""
    m = normalize_modality(modality)
    idx = index()
    q = query_words(query, idx)
    if not q or limit <= 0:
        return []
    return _complete(idx, q, m, limit)


def _exact_terms(idx: AliasIndex, q: tuple[str, ...]) -> list[_Entry]:
    ids = idx.exact.get(" ".join(q), []) + idx.exact.get("".join(q), [])
    return [idx.entries[i] for i in dict.fromkeys(ids)]


def _modality_list(mods: tuple[str, ...]) -> str:
    names = [MODALITY_NAMES[x] for x in mods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _no_words_error(prompt: str) -> UnknownPromptError:
    """Why a prompt gave no query words: it is empty (or only punctuation), or written in another script."""
    if not any(ch.isalnum() for ch in prompt):
        return UnknownPromptError("The prompt is empty (no letters or digits).",
                                  hint="Type an anatomy or lesion name, e.g. 'liver'.")
    return UnknownPromptError(f"'{prompt}' has no letters or digits of SAT's vocabulary, which is in English.",
                              hint="Type an English anatomy or lesion name, e.g. 'liver'.")


def resolve(prompt: str, modality: str) -> str:
    """The SAT term for a prompt, or UnknownPromptError saying why not and what SAT knows instead.

    Accepted: the term itself or any alias (synonym, abbreviation, TG-263, TotalSegmentator, laterality and
    numbering forms), case/space/plural-insensitive, and whole-word typos that leave exactly one candidate.
    An alias naming several structures (e.g. 'caudate nucleus' for the left and right ones) is refused with
    those structures as suggestions.
    """
    m = normalize_modality(modality)
    if m is None:
        raise InputError("No modality given for the prompt.", hint="Use one of: CT, MRI, PET.")
    idx = index()
    q = query_words(prompt, idx)
    if not q:
        raise _no_words_error(prompt)
    entries = _exact_terms(idx, q)
    typo = False
    variants = None
    if not entries:
        typo = True
        variants = _typo_variants(idx, q)
        entries = [e for v in variants for e in _exact_terms(idx, v)]
    known = catalog()
    in_modality = list(dict.fromkeys(e.term for e in entries if m in known[e.term].modalities))
    self_named = [e.term for e in entries if e.kind == "exact" and e.term in in_modality]
    if self_named and not typo:
        return self_named[0]
    if len(in_modality) == 1:
        return in_modality[0]
    suggestions = [s.term for s in _complete(idx, q, m, 5, variants)]
    if len(in_modality) > 1:
        raise UnknownPromptError(f"'{prompt}' is ambiguous for {MODALITY_NAMES[m]}: it may mean "
                                 + " or ".join(f"'{t}'" for t in in_modality) + ".",
                                 hint="Choose one of the suggested terms.", suggestions=in_modality)
    elsewhere = list(dict.fromkeys(e.term for e in entries))
    if elsewhere:
        term = elsewhere[0]
        raise UnknownPromptError(
            f"SAT knows '{term}' for {_modality_list(known[term].modalities)} but not for {MODALITY_NAMES[m]}.",
            hint="Check the image modality, or pick a structure SAT segments in this modality.",
            suggestions=suggestions)
    raise UnknownPromptError(
        f"'{prompt}' is not in SAT's vocabulary for {MODALITY_NAMES[m]}; SAT only segments the structures it "
        "was trained on, by their names.",
        hint=("Did you mean: " + ", ".join(suggestions) + "?") if suggestions else
        "Type a few letters to see the names SAT knows.", suggestions=suggestions)
