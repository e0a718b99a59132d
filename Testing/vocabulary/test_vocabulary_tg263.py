"""TG-263 names written for SAT terms (data/tg263.json), checked against the AAPM table and both ways against
the input aliases (data/aliases.json 'tg263')."""

from __future__ import annotations

from pathlib import Path

import pytest

from SATSegmentLib import vocabulary
from SATSegmentLib.vocabulary.catalog import catalog, load_json
from SATSegmentLib.vocabulary.tg263 import tg263_names

REFERENCE = Path(__file__).with_name("tg263_primary_names.txt")


@pytest.fixture(scope="module")
def aapm_names() -> set[str]:
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


@pytest.fixture(scope="module")
def input_aliases() -> dict[str, str | list[str]]:
    return load_json("aliases.json")["tg263"]


def test_every_written_name_is_an_aapm_primary_name(aapm_names):
    assert sorted(set(tg263_names().values()) - aapm_names) == []


def test_every_mapped_term_is_a_sat_term():
    assert sorted(set(tg263_names()) - set(catalog())) == []


def test_names_and_terms_are_one_to_one():
    names = list(tg263_names().values())
    assert len(names) == len(set(names))


def test_every_written_name_resolves_back_to_its_term():
    wrong = {}
    for term, name in tg263_names().items():
        for modality in catalog()[term].modalities:
            if vocabulary.resolve(name, modality) != term:
                wrong[name] = (term, modality, vocabulary.resolve(name, modality))
    assert wrong == {}


def test_written_names_listed_in_the_aliases_point_to_the_same_term(input_aliases):
    disagree = {name: (term, input_aliases[name]) for term, name in tg263_names().items()
                if name in input_aliases and input_aliases[name] != term}
    assert disagree == {}


def test_every_term_an_aapm_alias_names_has_a_written_name_or_a_reason(input_aliases, aapm_names):
    input_only = load_json("tg263.json")["input_only"]
    missing = {name: term for name, term in input_aliases.items()
               if name in aapm_names and isinstance(term, str) and term not in tg263_names() and name not in input_only}
    assert missing == {}


def test_input_only_names_are_aapm_names_the_aliases_accept(input_aliases, aapm_names):
    input_only = load_json("tg263.json")["input_only"]
    assert all(name in aapm_names and name in input_aliases and reason for name, reason in input_only.items())


@pytest.mark.parametrize("term, name", [("left parotid gland", "Parotid_L"), ("spinal cord", "SpinalCord"),
                                        ("small bowel", "Bowel_Small"), ("brainstem", "Brainstem"),
                                        ("mandible", "Bone_Mandible"), ("kidney", "Kidneys"),
                                        ("thoracic vertebrae 1 (t1)", "VB_T01"), ("left rib 5", "Rib05_L")])
def test_common_organs_at_risk_get_their_tg263_name(term, name):
    assert vocabulary.tg263_name(term) == name


def test_terms_without_a_name_are_listed_once_in_order():
    terms = ["liver tumor", "liver", "left caudate nucleus", "liver tumor"]
    assert vocabulary.without_tg263_name(terms) == ["liver tumor", "left caudate nucleus"]


def test_name_schemes_pick_tg263_names_and_keep_sat_terms_without_one():
    from SATSegmentLib.errors import InputError
    from SATSegmentLib.vocabulary.tg263 import missing_names_warning, structure_name

    without = vocabulary.without_tg263_name(catalog())[0]
    assert structure_name("left parotid gland", "tg263") == "Parotid_L"
    assert structure_name("left parotid gland", "sat") == "left parotid gland"
    assert structure_name(without, "TG263") == without  # no TG-263 name: the SAT term, and a warning names it
    assert f"'{without}'" in missing_names_warning(["left parotid gland", without, without])
    assert "1 structure(s)" in missing_names_warning(["left parotid gland", without, without])
    assert missing_names_warning(["left parotid gland", "spinal cord"]) is None
    with pytest.raises(InputError, match="naming"):
        structure_name("liver", "tg-263-ish")
