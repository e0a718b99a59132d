"""Table-driven check of what users type -> the SAT term (written by hand from radiology usage)."""

from __future__ import annotations

import pytest

from SATSegmentLib.errors import UnknownPromptError
from SATSegmentLib.vocabulary import complete, resolve

L1, L2, L3, L4, L5 = (f"lumbar vertebrae {i} (l{i})" for i in range(1, 6))
T12, T9 = "thoracic vertebrae 12 (t12)", "thoracic vertebrae 9 (t9)"
DISC = "intervertebral disc between {} and {}"

# (query, modality, expected SAT term); every one must be in the top 3 of complete() and resolve() to it.
TOP3 = [
    # exact and case/spacing variants
    ("liver", "ct", "liver"), ("Liver", "mri", "liver"), ("LIVER", "ct", "liver"), ("  spleen ", "ct", "spleen"),
    ("pancreas", "mri", "pancreas"), ("urinary bladder", "ct", "urinary bladder"), ("small-bowel", "ct", "small bowel"),
    ("small_bowel", "ct", "small bowel"), ("brain stem", "mri", "brainstem"), ("spinal cord", "ct", "spinal cord"),
    ("optic chiasm", "ct", "optic chiasm"), ("thyroid gland", "ct", "thyroid gland"), ("covid-19 infection", "ct", "covid-19 infection"),
    # plurals
    ("kidneys", "ct", "kidney"), ("lungs", "ct", "lung"), ("left kidneys", "ct", "left kidney"), ("ribs", "ct", "rib"),
    ("hippocampi", "mri", "hippocampus"), ("lips", "ct", "lips"),
    # abbreviations
    ("IVC", "ct", "inferior vena cava"), ("SVC", "ct", "superior vena cava"), ("GB", "ct", "gallbladder"),
    ("LV", "mri", "left heart ventricle"), ("RV", "mri", "right heart ventricle"), ("LA", "ct", "left heart atrium"),
    ("RA", "ct", "right heart atrium"), ("LAA", "ct", "left auricle of heart"), ("TMJ", "ct", "temporomandibular joint"),
    ("ICA", "ct", "internal carotid artery"), ("CCA", "ct", "common carotid artery"), ("IJV", "ct", "internal jugular vein"),
    ("ICH", "ct", "intracranial hemorrhage"), ("PE", "ct", "pulmonary embolism"), ("WMH", "mri", "white matter hyperintensities"),
    ("CSF", "mri", "external cerebrospinal fluid"), ("HCC", "ct", "liver tumor"), ("RCC", "ct", "kidney tumor"),
    ("PZ", "mri", "peripheral zone of prostate"), ("TZ", "mri", "transition zone of prostate"), ("RUL", "ct", "right lung upper lobe"),
    ("RML", "ct", "right lung middle lobe"), ("LLL", "ct", "left lung lower lobe"), ("left IJV", "ct", "left internal jugular vein"),
    # synonyms
    ("gall bladder", "ct", "gallbladder"), ("gall-bladder", "mri", "gallbladder"), ("small intestine", "ct", "small bowel"),
    ("large bowel", "ct", "colon"), ("bladder", "mri", "urinary bladder"), ("adrenal", "ct", "adrenal gland"),
    ("left adrenal", "ct", "left adrenal gland"), ("portal vein", "ct", "portal vein and splenic vein"),
    ("pulmonary trunk", "ct", "pulmonary artery"), ("innominate artery", "ct", "brachiocephalic trunk"),
    ("celiac axis", "ct", "celiac trunk"), ("femoral head", "ct", "head of femur"), ("left femoral head", "ct", "head of left femur"),
    ("right femoral head", "ct", "head of right femur"), ("eye", "ct", "eyeball"), ("left eye", "ct", "left eyeball"),
    ("pituitary", "ct", "pituitary gland"), ("hypophysis", "ct", "pituitary gland"), ("parotid", "ct", "parotid gland"),
    ("right parotid", "ct", "right parotid gland"), ("left submandibular", "ct", "left submandibular gland"),
    ("mouth", "ct", "oral cavity"), ("jaw", "ct", "mandible"), ("psoas", "ct", "iliopsoas"), ("left psoas", "ct", "left iliopsoas"),
    ("erector spinae", "ct", "autochthon"), ("hip bone", "ct", "hip"), ("left hip bone", "ct", "left hip"),
    ("collarbone", "ct", "clavicle"), ("breastbone", "ct", "sternum"), ("windpipe", "ct", "trachea"),
    ("bronchi", "ct", "bronchie"), ("bronchus", "ct", "bronchie"), ("left atrium", "mri", "left heart atrium"),
    ("left ventricle", "ct", "left heart ventricle"), ("left atrial appendage", "ct", "left auricle of heart"),
    ("ascending aorta", "ct", "heart ascending aorta"), ("heart muscle", "mri", "myocardium"), ("pleural effusion", "ct", "lung effusion"),
    ("pulmonary nodule", "ct", "lung nodule"), ("lung cancer", "ct", "lung tumor"), ("renal cyst", "ct", "kidney cyst"),
    ("kidney cancer", "ct", "kidney tumor"), ("pancreatic cancer", "ct", "pancreas tumor"), ("glioma", "mri", "brain tumor"),
    ("acoustic neuroma", "mri", "vestibular schwannoma"), ("infarct", "mri", "stroke"), ("lymph nodes", "pet", "lymph node"),
    ("lesion", "pet", "tumor"), ("head and neck cancer", "pet", "head and neck tumor"), ("tumour", "pet", "tumor"),
    ("oesophagus", "ct", "esophagus"), ("intracranial haemorrhage", "ct", "intracranial hemorrhage"), ("gray matter", "mri", "grey matter"),
    ("left globus pallidus", "mri", "left pallidum"), ("cervix", "ct", "uterocervix"), ("thecal sac", "ct", "spinal canal"),
    ("semicircular canals", "ct", "vestibule semicircular canal"), ("left upper lobe", "ct", "left lung upper lobe"),
    ("right middle lobe", "ct", "right lung middle lobe"),
    # laterality forms
    ("left kidney", "ct", "left kidney"), ("kidney left", "ct", "left kidney"), ("L kidney", "ct", "left kidney"),
    ("lt kidney", "ct", "left kidney"), ("kidney_L", "ct", "left kidney"), ("Kidney_L", "mri", "left kidney"),
    ("kidney, right", "ct", "right kidney"), ("R kidney", "ct", "right kidney"), ("rt lung", "ct", "right lung"),
    ("lung_right", "ct", "right lung"), ("hippocampus left", "mri", "left hippocampus"), ("putamen R", "mri", "right putamen"),
    ("optic nerve left", "ct", "left optic nerve"), ("femur_R", "ct", "right femur"), ("humerus left", "ct", "left humerus"),
    # vertebrae, ribs, discs
    ("L3", "ct", L3), ("l3", "mri", L3), ("L 3", "ct", L3), ("L3 vertebra", "ct", L3), ("third lumbar vertebra", "ct", L3),
    ("T12", "ct", T12), ("T12 vertebra", "ct", T12), ("vertebra T9", "mri", T9), ("C1", "ct", "cervical vertebrae 1 (c1)"),
    ("C7", "ct", "cervical vertebrae 7 (c7)"), ("S1", "ct", "sacral vertebrae 1 (s1)"), ("L5", "mri", L5),
    ("L6", "ct", "lumbar vertebrae 6 (l6)"), ("lumbar spine", "ct", "lumbar vertebrae"), ("spine", "ct", "vertebrae"),
    ("rib 5 left", "ct", "left rib 5"), ("left 5th rib", "ct", "left rib 5"), ("left fifth rib", "ct", "left rib 5"),
    ("5th rib", "ct", "rib 5"), ("right rib 12", "ct", "right rib 12"), ("rib_right_1", "ct", "right rib 1"),
    ("12th right rib", "ct", "right rib 12"), ("L4-L5 disc", "mri", DISC.format(L4, L5)), ("L4/5", "mri", DISC.format(L4, L5)),
    ("L1-L2", "mri", DISC.format(L1, L2)), ("L5-S1 disc", "mri", DISC.format(L5, "sacrum")),
    ("T12-L1 disc", "mri", DISC.format(T12, L1)), ("disc L3-L4", "mri", DISC.format(L3, L4)),
    ("intervertebral discs", "mri", "intervertebral discs"),
    # Couinaud segments
    ("liver segment 1", "ct", "caudate lobe"), ("segment 4", "ct", "left medial segment of liver"),
    ("couinaud segment 7", "ct", "right posterior superior segment of liver"), ("liver segment VI", "ct", "right posterior inferior segment of liver"),
    # TG-263
    ("Parotid_L", "ct", "left parotid gland"), ("Parotid_R", "ct", "right parotid gland"), ("SpinalCord", "ct", "spinal cord"),
    ("Glnd_Submand_R", "ct", "right submandibular gland"), ("Bowel_Small", "ct", "small bowel"), ("Brainstem", "ct", "brainstem"),
    ("Cochlea_L", "ct", "left cochlea"), ("OpticNrv_R", "ct", "right optic nerve"), ("Lens_L", "ct", "left lens"),
    ("Eye_L", "ct", "left eyeball"), ("Bladder", "ct", "urinary bladder"), ("Rectum", "ct", "rectum"),
    ("Femur_Head_L", "ct", "head of left femur"), ("Heart", "ct", "heart"), ("Lung_L", "ct", "left lung"),
    ("Esophagus", "ct", "esophagus"), ("Larynx", "ct", "larynx"), ("Bone_Mandible", "ct", "mandible"),
    ("Musc_Constrict", "ct", "pharynx constrictor muscle"), ("OpticChiasm", "ct", "optic chiasm"), ("Glnd_Thyroid", "ct", "thyroid gland"),
    ("Cavity_Oral", "ct", "oral cavity"), ("Lobe_Temporal_R", "ct", "right temporal lobe"), ("A_Aorta", "ct", "aorta"),
    ("V_Venacava_I", "ct", "inferior vena cava"), ("Kidney_R", "ct", "right kidney"), ("Lung_RLL", "ct", "right lung lower lobe"),
    ("Glnd_Lacrimal_L", "ct", "left lacrimal gland"), ("Larynx_SG", "ct", "larynx supraglottis"), ("VB_L3", "ct", L3),
    ("Rib05_L", "ct", "left rib 5"), ("Spinalcanal", "ct", "spinal canal"),
    # TotalSegmentator class names
    ("kidney_right", "ct", "right kidney"), ("adrenal_gland_left", "ct", "left adrenal gland"), ("vertebrae_L3", "ct", L3),
    ("vertebrae_S1", "ct", "sacral vertebrae 1 (s1)"), ("clavicula_left", "ct", "left clavicle"), ("atrial_appendage_left", "ct", "left auricle of heart"),
    ("costal_cartilages", "ct", "costal cartilage"), ("iliac_vena_right", "ct", "right iliac vena"), ("lung_middle_lobe_right", "ct", "right lung middle lobe"),
    ("kidney_cyst_left", "ct", "left kidney cyst"), ("portal_vein_and_splenic_vein", "ct", "portal vein and splenic vein"),
    ("intervertebral_discs", "mri", "intervertebral discs"), ("gluteus_maximus_right", "ct", "right gluteus maximus"),
    # typos
    ("livr", "ct", "liver"), ("pancraes", "ct", "pancreas"), ("spleeen", "ct", "spleen"), ("gallbladdr", "ct", "gallbladder"),
    ("hipocampus", "mri", "hippocampus"), ("esophogus", "ct", "esophagus"), ("kidny left", "ct", "left kidney"),
    ("prostrate", "mri", "prostate"), ("duodenun", "ct", "duodenum"), ("trachae", "ct", "trachea"),
]

PREFIX_TOP3 = [  # partial input while typing -> the structure the user is heading for
    ("liv", "ct", "liver"), ("panc", "ct", "pancreas"), ("splee", "ct", "spleen"), ("gallb", "ct", "gallbladder"),
    ("left kid", "ct", "left kidney"), ("kidney le", "ct", "left kidney"), ("brainst", "mri", "brainstem"),
    ("hippoc", "mri", "hippocampus"), ("sto", "ct", "stomach"), ("aor", "ct", "aorta"), ("parot", "ct", "parotid gland"),
    ("urinary", "ct", "urinary bladder"), ("vena cava inf", "ct", "inferior vena cava"), ("pancrea", "ct", "pancreas"),
]

EXACT_TOP1 = ["liver", "kidney", "left kidney", "rib 5", "lumbar vertebrae 3 (l3)", "brain", "heart", "lung", "tumor", "spinal cord",
              "left parotid gland", "urinary bladder", "colon", "myocardium", "lens", "thyroid", "thyroid gland"]


@pytest.mark.parametrize("query,modality,expected", TOP3 + PREFIX_TOP3)
def test_expected_term_in_top3(query, modality, expected):
    got = [s.term for s in complete(query, modality, limit=10)]
    assert expected in got[:3], f"{query!r} ({modality}) -> {got[:5]}"


@pytest.mark.parametrize("query,modality,expected", TOP3)
def test_resolve_accepts_full_names(query, modality, expected):
    assert resolve(query, modality) == expected


@pytest.mark.parametrize("term", EXACT_TOP1)
def test_exact_name_is_top1(term):
    first = complete(term, None, limit=5)[0]
    assert (first.term, first.reason) == (term, "exact")


def test_table_is_big_enough():
    assert len(TOP3) + len(PREFIX_TOP3) >= 150


@pytest.mark.parametrize("query", ["xqzvbn", "asdfgh", "banana split", "qwertyuiop", "zzz", "the patient's scan"])
def test_nonsense_gets_no_confident_match(query):
    assert all(s.reason == "typo" for s in complete(query, None))
    with pytest.raises(UnknownPromptError) as err:
        resolve(query, "ct")
    assert "not in SAT's vocabulary" in err.value.message


def test_liver_on_pet_is_refused_with_the_reason():
    assert [s.term for s in complete("liver", "pet")] == []
    with pytest.raises(UnknownPromptError) as err:
        resolve("liver", "PET")
    assert "CT and MRI" in err.value.message and "PET" in err.value.message


@pytest.mark.parametrize("query,modality,options", [
    ("caudate nucleus", "mri", {"left caudate nucleus", "right caudate nucleus"}),
    ("globus pallidus", "mri", {"left pallidum", "right pallidum"}),
])
def test_ambiguous_alias_is_refused_with_both_options(query, modality, options):
    with pytest.raises(UnknownPromptError) as err:
        resolve(query, modality)
    assert set(err.value.suggestions) == options and "ambiguous" in err.value.message


def test_bilateral_term_wins_over_sides():
    assert resolve("kidney", "ct") == "kidney"
    assert resolve("rib 5", "ct") == "rib 5"


def test_modality_filter_and_spelling():
    assert all("mri" in s.modality for s in complete("l", "MR T1"))
    assert all(s.modality == ("ct",) for s in complete("rib", "CT"))
    assert resolve("myocardium", "T2") == "myocardium"


def test_suggestion_says_why():
    s = complete("Parotid_L", "ct")[0]
    assert (s.term, s.reason, s.matched) == ("left parotid gland", "TG-263", "Parotid_L")
    assert complete("IVC", "ct")[0].reason == "abbreviation"
    assert complete("vertebrae_L3", "ct")[0].reason == "TotalSegmentator"
    assert complete("pancraes", "ct")[0].reason == "typo"


def test_display_names_the_typed_alias_once():
    assert [s.display for s in complete("L3", "ct", limit=1)] == ["lumbar vertebrae 3 (l3)"]


@pytest.mark.parametrize("prompt", ["肝臓", "печень", "肝臓 ."])
def test_text_without_latin_letters_is_unknown_not_empty(prompt):
    with pytest.raises(UnknownPromptError, match="English") as err:
        resolve(prompt, "ct")
    assert "empty" not in err.value.message
