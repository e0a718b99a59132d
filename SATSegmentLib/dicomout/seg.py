"""DICOM Segmentation (SEG) objects, written with highdicom: one BINARY segment per structure.

highdicom builds the IOD (frames per source image, plane positions, derivation and source image references,
patient and study copied from the source); here we only say what each segment is: its label as shown in
Slicer, SNOMED CT category/type (with the laterality modifier) and anatomic region from our vocabulary, its
colour, and the algorithm (SAT model and SATSegment version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .source import SourceSeries
from .structures import Algorithm, Code, Structure, check_masks, dicom_names

SEG_SERIES_NUMBER = 901  # fixed, high numbers so the derived series sort after the scanner's
UTF8 = "ISO_IR 192"  # segment labels may hold any Unicode text (free-text prompts)


def encode_seg(masks: Mapping[str, np.ndarray], mask_affine: np.ndarray, structures: Sequence[Structure],
               source: SourceSeries, algorithm: Algorithm):
    """A `highdicom.seg.Segmentation` holding the masks (z, y, x, voxel (x, y, z) at `mask_affine` in LPS mm)
    of `structures`, referencing the source series' instances and Frame of Reference."""
    import highdicom as hd

    check_masks(masks, structures)
    pixels = np.zeros((*source.shape, len(structures)), dtype=np.uint8)  # frame, row, column, segment
    for index, structure in enumerate(structures):
        pixels[..., index] = source.frames(masks[structure.key], mask_affine) > 0
    labels = dicom_names(s.name for s in structures)
    descriptions = [_segment_description(number, label, structure, algorithm)
                    for number, (label, structure) in enumerate(zip(labels, structures), start=1)]
    seg = hd.seg.Segmentation(
        source_images=list(source.instances), pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="SATSegment", manufacturer_model_name="SATSegment",
        software_versions=algorithm.software, device_serial_number="SATSegment",
        series_description=f"{algorithm.model} segmentation"[:64], content_label="SAT", content_description=
        f"{len(structures)} structures segmented by {algorithm.description}"[:64],
        specific_character_set=UTF8, coding_schemes=_private_coding_schemes(structures))
    return seg


def _segment_description(number: int, label: str, structure: Structure, algorithm: Algorithm):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    terminology = structure.terminology
    identification = None
    if structure.algorithm_type != "MANUAL":
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm.model, family=codes.cid7162.ArtificialIntelligence, version=algorithm.version,
            source=algorithm.software)
    region = terminology.anatomic_region if terminology else None
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=_concept(structure.category),
        segmented_property_type=_concept(structure.type), algorithm_type=structure.algorithm_type,
        algorithm_identification=identification, tracking_uid=hd.UID(), tracking_id=label,
        anatomic_regions=[_concept(region)] if region else None,
        display_color=hd.color.CIELabColor.from_rgb(*structure.color))
    description.SegmentDescription = structure.term[:1024]  # the SAT term, also when the label is a TG-263 name
    if terminology and terminology.type_modifier:  # laterality: 'Kidney' + 'Left'
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = \
            [_concept(terminology.type_modifier)]
    if region and terminology.anatomic_region_modifier:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_concept(terminology.anatomic_region_modifier)]
    return description


def _concept(code: Code):
    from highdicom.sr import CodedConcept

    scheme, value, meaning = code
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning[:64])


def _private_coding_schemes(structures: Sequence[Structure]) -> list | None:
    """The private coding scheme of terms without a SNOMED CT code, declared where it is used (None otherwise:
    an empty Coding Scheme Identification Sequence is invalid)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    from ..vocabulary.terminology import local_coding_scheme

    scheme = local_coding_scheme()
    designator = scheme["CodingSchemeDesignator"]
    used = any(code and code[0] == designator for s in structures if s.terminology
               for code in (s.terminology.category, s.terminology.type, s.terminology.type_modifier,
                            s.terminology.anatomic_region))
    return [CodingSchemeIdentificationItem(designator, name=scheme["CodingSchemeName"][:64],
                                           responsible_organization="SATSegment")] if used else None
