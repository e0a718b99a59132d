"""Prompt lists of any size cost bounded work and output: each different prompt is resolved once, repeats
are reported in one short warning, and too many different prompts are refused."""

from __future__ import annotations

import pytest

from SATSegmentLib import prompts, vocabulary
from SATSegmentLib.errors import InputError


def _resolve(prompt_list: list[str], allow_free_text: bool = False) -> tuple[dict, list[str]]:
    warnings: list[str] = []
    terms = prompts.resolve_prompts(prompt_list, "ct", allow_free_text, lambda message, suggestions: warnings.append(message))
    return terms, warnings


def test_repeated_prompts_give_one_short_warning():
    terms, warnings = _resolve(["liver"] * 100_000)
    assert terms == {"liver": "liver"}
    assert warnings == ["Prompts that repeat an earlier one are segmented once: 'liver' ×99,999."]


def test_the_warning_says_what_each_repeat_repeats():
    terms, warnings = _resolve(["Liver", "left kidney", "liver", "hepar", "L kidney", "hepar"])
    assert terms == {"Liver": "liver", "left kidney": "left kidney"}
    assert warnings == ["Prompts that repeat an earlier one are segmented once: 'liver' (same as 'Liver'), "
                        "'hepar' (same as 'Liver') ×2, 'L kidney' (same as 'left kidney')."]


def test_the_warning_lists_a_few_repeats_and_counts_the_rest():
    _, warnings = _resolve([f"zz{i}" for i in range(100)] + [f"ZZ{i}" for i in range(100)], allow_free_text=True)
    assert len(warnings) == 201  # one per different free-text prompt, one for all repeats
    assert warnings[-1] == ("Prompts that repeat an earlier one are segmented once: 'ZZ0' (same as 'zz0'), 'ZZ1' (same as 'zz1'), "
                            "'ZZ2' (same as 'zz2'), 'ZZ3' (same as 'zz3'), 'ZZ4' (same as 'zz4') and 95 more.")


def test_each_different_prompt_is_resolved_once(monkeypatch):
    calls = []
    resolve = vocabulary.resolve
    monkeypatch.setattr(vocabulary, "resolve", lambda prompt, modality: calls.append(prompt) or resolve(prompt, modality))
    _resolve(["liver", "spleen"] * 50_000)
    assert calls == ["liver", "spleen"]


def test_too_many_different_prompts_are_refused():
    with pytest.raises(InputError, match="^1,001 different prompts were given; one job segments at most 1,000."):
        prompts.check_prompts([f"structure {i}" for i in range(prompts.MAX_PROMPTS + 1)])


def test_many_repeats_of_a_few_prompts_are_accepted():
    assert prompts.check_prompts(["liver", " spleen "] * 50_000) == ["liver", "spleen"] * 50_000
