"""SAT's vocabulary: terms, synonyms, autocomplete, prompt resolution, SNOMED CT terminology and colours.

Pure Python (no torch, no Slicer); the data lives in `data/` (see docs/vocabulary.md).
"""

from .catalog import Term, normalize_modality, terms
from .matcher import Suggestion, complete, resolve
from .presets import presets
from .terminology import Terminology, terminology_for
from .tg263 import NAME_SCHEMES, check_name_scheme, structure_name, tg263_name, without_tg263_name

__all__ = ["NAME_SCHEMES", "Suggestion", "Term", "Terminology", "check_name_scheme", "complete", "normalize_modality",
           "presets", "resolve", "structure_name", "terms", "terminology_for", "tg263_name", "without_tg263_name"]
