"""What the DICOM objects say about each structure: RT ROI types for every abnormal SAT term, DICOM-safe
unique names, codes and colours from the vocabulary, free text with Slicer's defaults."""

from __future__ import annotations

from SATSegmentLib.dicomout import Structure
from SATSegmentLib.dicomout.roitypes import ABNORMAL_TYPES, interpreted_type
from SATSegmentLib.dicomout.structures import TISSUE, dicom_names
from SATSegmentLib.vocabulary import terminology_for
from SATSegmentLib.vocabulary.catalog import catalog


def test_every_abnormal_sat_term_has_a_decided_roi_type():
    abnormal = {term for term, info in catalog().items()
                if info.lesion or terminology_for(term).category[2] == "Morphologically Altered Structure"}
    assert abnormal and set(ABNORMAL_TYPES) == abnormal
    assert interpreted_type("liver tumor") == "GTV" and interpreted_type("kidney cyst") == ""
    assert interpreted_type("left parotid gland") == "ORGAN"
    assert interpreted_type("a shadow on the left") == ""  # free text: the planner decides


def test_names_fit_dicom_lo_and_stay_unique():
    long = "x" * 80
    names = dicom_names(["Kidney_L", "kidney_l", long, long, "a\\b\nc", ""])
    assert names[:2] == ["Kidney_L", "kidney_l (2)"]  # unique also ignoring case
    assert names[2] == "x" * 64 and names[3].endswith(" (2)") and len(names[3]) == 64
    assert names[4] == "a b c" and names[5] == "segment"


def test_codes_and_colours_come_from_the_vocabulary():
    kidney = Structure.for_term("left kidney", name="Kidney_L")
    assert kidney.type[2] == "Kidney" and kidney.terminology.type_modifier[2] == "Left"
    assert kidney.color == terminology_for("left kidney").color_rgb255
    free = Structure.for_term("the dark blob")
    assert free.terminology is None and free.category == free.type == TISSUE and free.name == "the dark blob"
