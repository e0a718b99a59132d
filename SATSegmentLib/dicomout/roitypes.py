"""RT ROI Interpreted Type (3006,00A4) of each SAT term, the class a planning system files a structure under.

Anatomy is an ORGAN (an organ at risk to the planner). SAT's abnormal classes (SAT-DS 'abnormal' list, and
terms coded as a morphologically altered structure) are split explicitly: tumours are GTV, the gross tumour
volume a physician delineates on the image; the others (oedema, cysts, effusion, haemorrhage, infarcts,
emboli, scars, infection) are no treatment target and no organ, so their type is left empty, which DICOM
allows (Type 2) and planning systems let the user set. Free text, which SAT does not know, is left empty too.
"""

from __future__ import annotations

ORGAN = "ORGAN"
GTV = "GTV"
UNSPECIFIED = ""

#: Every abnormal SAT term (lesion flag or 'Morphologically Altered Structure' category) and its type;
#: Testing/dicomout checks that the table covers exactly those terms, so a new one must be decided here.
ABNORMAL_TYPES = {
    "brain tumor": GTV, "colon cancer": GTV, "enhancing brain tumor": GTV, "head and neck tumor": GTV,
    "kidney tumor": GTV, "liver tumor": GTV, "lung nodule": GTV, "lung tumor": GTV, "nasopharyngeal tumor": GTV,
    "necrotic brain tumor core": GTV, "pancreas tumor": GTV, "tumor": GTV, "vestibular schwannoma": GTV,
    "brain edema": UNSPECIFIED, "myocardial edema": UNSPECIFIED, "covid-19 infection": UNSPECIFIED,
    "intracranial hemorrhage": UNSPECIFIED, "kidney cyst": UNSPECIFIED, "left kidney cyst": UNSPECIFIED,
    "right kidney cyst": UNSPECIFIED, "lung effusion": UNSPECIFIED, "pulmonary embolism": UNSPECIFIED,
    "stroke": UNSPECIFIED, "left heart atrium scar": UNSPECIFIED, "myocardial scar": UNSPECIFIED,
    "white matter hyperintensities": UNSPECIFIED,
}


def interpreted_type(term: str) -> str:
    """ORGAN, GTV or '' (unspecified) for a SAT term; '' for text that is not a SAT term."""
    from ..vocabulary.catalog import catalog

    if term in ABNORMAL_TYPES:
        return ABNORMAL_TYPES[term]
    return ORGAN if term in catalog() else UNSPECIFIED
