"""Terminology data: every SAT term mapped once, real codes only, distinct colours, generated Slicer context."""

from __future__ import annotations

import csv
import json
import re
from itertools import combinations

import pytest
from slicerio.segmentation import terminology_entry_from_string

from SATSegmentLib.vocabulary import presets, terminology_for, terms
from SATSegmentLib.vocabulary.build_terminology import DEFAULT_OUTPUT, render
from SATSegmentLib.vocabulary.catalog import load_json
from SATSegmentLib.vocabulary.terminology import local_coding_scheme

MIN_NEIGHBOUR_COLOUR_DISTANCE = 25  # Euclidean, RGB 0-255


@pytest.fixture(scope="module")
def sat_list(shared_dir):
    return json.loads((shared_dir / "sat" / "terminology_list.json").read_text())


@pytest.fixture(scope="module")
def known_codes(shared_dir):
    """Every (scheme, value) -> meanings found in the Slicer / TotalSegmentator terminology files."""
    codes: dict[tuple[str, str], set[str]] = {}

    def add(scheme, value, meaning):
        if value:
            codes.setdefault((scheme, value), set()).add(meaning.lower())

    def walk(node):
        if isinstance(node, dict):
            if "CodeValue" in node:
                add(node["CodingSchemeDesignator"], node["CodeValue"], node["CodeMeaning"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    folder = shared_dir / "data" / "terminology"
    for path in folder.glob("*.term.json"):
        walk(json.loads(path.read_text()))
    with open(folder / "totalsegmentator_snomed_mapping.csv", newline="") as f:
        for row in csv.DictReader(f):
            for p in ("Category", "Type", "TypeModifier", "Region", "RegionModifier"):
                add(row[f"{p}_CodingScheme"], row[f"{p}_CodeValue"], row[f"{p}_CodeMeaning"])
    return codes


def test_shipped_list_is_the_official_one(sat_list):
    assert load_json("sat_terminology_list.json") == sat_list


def test_every_sat_term_mapped_exactly_once(sat_list):
    official = sorted({e.split("_", 1)[1] for e in sat_list["all"]})
    assert sorted(load_json("snomed.json")["terms"]) == official
    assert sorted(t.term for t in terms()) == official
    assert sum(len(t.modalities) for t in terms()) == len(sat_list["all"]) == 498


def test_lesion_flags_and_modalities(sat_list):
    lesions = {e.split("_", 1)[1] for e in sat_list["abnormal"]}
    assert {t.term for t in terms() if t.lesion} == lesions
    assert [t.term for t in terms("pet")] == ["head and neck tumor", "lymph node", "tumor"]


def test_codes_are_well_formed_and_come_from_the_reference_files(known_codes):
    local = local_coding_scheme()["CodingSchemeDesignator"]
    for t in terms():
        info = terminology_for(t.term)
        codes = [info.category, info.type, info.type_modifier, info.anatomic_region, info.anatomic_region_modifier]
        for code in filter(None, codes):
            scheme, value, meaning = code
            assert meaning.strip(), (t.term, code)
            if scheme == local:
                assert re.fullmatch(r"SAT\d{4}", value), (t.term, code)
                continue
            assert scheme == "SCT" and re.fullmatch(r"\d{6,18}", value), (t.term, code)
            assert meaning.lower() in known_codes.get((scheme, value), set()), f"{t.term}: {code} not in reference files"
        assert info.category[1] in ("123037004", "49755003", "85756007"), (t.term, info.category)
        if t.lesion:
            assert info.category[1] in ("49755003", "85756007"), t.term  # scars: DICOM "Scar tissue" is a Tissue type


def test_local_codes_are_unique_per_meaning():
    local = local_coding_scheme()["CodingSchemeDesignator"]
    by_value: dict[str, set[str]] = {}
    for t in terms():
        typ = terminology_for(t.term).type
        if typ[0] == local:
            by_value.setdefault(typ[1], set()).add(typ[2])
    assert by_value and all(len(m) == 1 for m in by_value.values())


def test_every_term_has_a_colour():
    for t in terms():
        info = terminology_for(t.term)
        assert len(info.color_rgb255) == 3 and all(0 <= c <= 255 for c in info.color_rgb255)
        assert info.color_rgb == pytest.approx(tuple(c / 255 for c in info.color_rgb255))


def test_frequent_neighbours_have_distinct_colours(sat_list):
    """Neighbours: two terms labelled together in one SAT training dataset (what users segment together)."""
    for dataset, entries in sat_list["dataset_based"].items():
        names = sorted({e.split("_", 1)[1] for e in entries})
        for a, b in combinations(names, 2):
            ca, cb = terminology_for(a).color_rgb255, terminology_for(b).color_rgb255
            dist = sum((x - y) ** 2 for x, y in zip(ca, cb)) ** 0.5
            assert dist >= MIN_NEIGHBOUR_COLOUR_DISTANCE, f"{dataset}: {a} {ca} vs {b} {cb}"


def test_slicer_entry_string_round_trips():
    info = terminology_for("left kidney")
    entry = info.slicer_entry
    assert entry.startswith("Segmentation category and type - SATSegment~SCT^123037004^Anatomical Structure~SCT^64033007^Kidney~SCT^7771000^Left~")
    assert terminology_entry_from_string(entry)["typeModifier"] == ["SCT", "7771000", "Left"]
    lesion = terminology_entry_from_string(terminology_for("liver tumor").slicer_entry)
    assert lesion["category"][1] == "49755003" and lesion["anatomicRegion"][2] == "Liver"


def test_committed_term_json_matches_generator():
    assert DEFAULT_OUTPUT.read_text(encoding="utf-8") == render(), \
        "run: python -m SATSegmentLib.vocabulary.build_terminology"


def test_term_json_follows_slicer_schema(shared_dir):
    ours = json.loads(DEFAULT_OUTPUT.read_text())
    slicer = json.loads((shared_dir / "data" / "terminology" /
                         "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json").read_text())
    assert set(ours) == set(slicer) and ours["@schema"] == slicer["@schema"]
    listed = set()
    for cat in ours["SegmentationCodes"]["Category"]:
        for typ in cat["Type"]:
            assert {"CodingSchemeDesignator", "CodeValue", "CodeMeaning", "recommendedDisplayRGBValue"} <= set(typ)
            listed.add((cat["CodeValue"], typ["CodeValue"], None))
            for mod in typ.get("Modifier", []):
                listed.add((cat["CodeValue"], typ["CodeValue"], mod["CodeValue"]))
    for t in terms():
        info = terminology_for(t.term)
        key = (info.category[1], info.type[1], info.type_modifier[1] if info.type_modifier else None)
        assert key in listed, t.term


def test_every_totalsegmentator_class_mapped_or_explicitly_unmapped(examples_dir):
    table = load_json("aliases.json")["totalsegmentator"]
    for task, filename in (("total", "total_v2_labels.json"), ("total_mr", "total_mr_labels.json")):
        classes = json.loads((examples_dir / filename).read_text())["labels"].values()
        assert set(classes) == set(table[task]), task
    known = {t.term for t in terms()}
    for task, mapping in table.items():
        if not task.startswith("_"):
            assert all(v is None or v in known for v in mapping.values()), task


def test_curated_aliases_point_to_real_terms():
    data = load_json("aliases.json")
    known = {t.term for t in terms()}
    for section in ("synonyms", "abbreviations", "tg263"):
        for alias, value in data[section].items():
            for term in [value] if isinstance(value, str) else value:
                assert term in known, (section, alias, term)


def test_presets_hold_real_terms_and_respect_modality():
    known = {t.term: t for t in terms()}
    all_presets = presets()
    assert {"Abdominal organs", "Head and neck organs at risk", "Thoracic organs at risk", "Pelvic organs at risk",
            "Spine (vertebrae)", "Whole-body bones", "Brain MRI structures"} <= set(all_presets)
    for modality in ("ct", "mri", "pet"):
        for name, plist in presets(modality).items():
            assert plist and all(modality in known[t].modalities for t in plist), (modality, name)
    assert "Brain MRI structures" not in presets("pet")
    assert "left kidney" in presets("mri")["Abdominal organs"]
