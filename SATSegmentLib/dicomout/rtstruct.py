"""RT Structure Set (RTSTRUCT) objects, assembled with pydicom: one ROI per structure.

No maintained library writes RTSTRUCT from masks the way we need (docs/dicom-outputs.md: rt-utils traces
contours through the centres of the boundary pixels, so every structure shrinks by half a pixel in a
planning system, and pulls in a GUI build of OpenCV); highdicom writes no RTSTRUCT. So the modules of the
IOD are filled here with pydicom, the contours come from scikit-image (`contours`) and patient coordinates
from highdicom's spatial transformers. Patient and study are copied from the source; the structure set
references the source's Frame of Reference, study, series and every image, and each contour its image.
The set is marked UNAPPROVED (Approval module): automatic contours are for review before planning.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import numpy as np

from .contours import contour_data, slice_contours
from .roitypes import interpreted_type
from .source import PATIENT_STUDY_KEYWORDS, SourceSeries
from .structures import Algorithm, Structure, check_masks, dicom_names

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # what RT Referenced Study Sequence items name (PS3.3 C.8.8.5)
RTSTRUCT_SERIES_NUMBER = 902
UTF8 = "ISO_IR 192"
#: Type 2 attributes of the Patient and General Study modules: present, empty when the source has no value.
_REQUIRED_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                   "ReferringPhysicianName", "StudyID", "AccessionNumber")


def encode_rtstruct(masks: Mapping[str, np.ndarray], mask_affine: np.ndarray, structures: Sequence[Structure],
                    source: SourceSeries, algorithm: Algorithm):
    """A pydicom `FileDataset` (RT Structure Set Storage) with one ROI of closed planar contours per structure."""
    check_masks(masks, structures)
    dataset = _structure_set(source, algorithm)
    frame_of_reference = source.first.FrameOfReferenceUID
    dataset.StructureSetROISequence, dataset.ROIContourSequence, dataset.RTROIObservationsSequence = [], [], []
    for number, (name, structure) in enumerate(zip(dicom_names(s.name for s in structures), structures), start=1):
        roi = _item(ROINumber=number, ReferencedFrameOfReferenceUID=frame_of_reference, ROIName=name,
                    ROIDescription=structure.term[:1024], ROIGenerationAlgorithm=structure.algorithm_type)
        if structure.algorithm_type != "MANUAL":
            roi.ROIGenerationDescription = algorithm.description[:64]
        dataset.StructureSetROISequence.append(roi)
        contours = _item(ReferencedROINumber=number, ROIDisplayColor=list(structure.color))
        contour_items = _contour_items(source.frames(masks[structure.key], mask_affine), source)
        if contour_items:  # an empty result keeps its ROI, without contours (the sequence is Type 3)
            contours.ContourSequence = contour_items
        dataset.ROIContourSequence.append(contours)
        dataset.RTROIObservationsSequence.append(_item(
            ObservationNumber=number, ReferencedROINumber=number, RTROIInterpretedType=interpreted_type(structure.term),
            ROIInterpreter=""))
    return dataset


def _structure_set(source: SourceSeries, algorithm: Algorithm):
    """The data set without ROIs: SOP Common, Patient, General Study, Frame of Reference, RT Series, General
    Equipment, Structure Set header with its references, and Approval."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SpecificCharacterSet = UTF8
    dataset.InstanceCreationDate, dataset.InstanceCreationTime = date, time
    dataset.SOPClassUID, dataset.SOPInstanceUID = RT_STRUCTURE_SET_STORAGE, meta.MediaStorageSOPInstanceUID
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source.first:
            dataset[keyword] = source.first[keyword]
    for keyword in _REQUIRED_EMPTY:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    dataset.FrameOfReferenceUID = source.first.FrameOfReferenceUID  # Frame of Reference module
    dataset.PositionReferenceIndicator = source.first.get("PositionReferenceIndicator", "")
    dataset.Modality = "RTSTRUCT"
    dataset.SeriesInstanceUID, dataset.SeriesNumber = generate_uid(), RTSTRUCT_SERIES_NUMBER
    dataset.SeriesDescription = f"{algorithm.model} contours"[:64]
    dataset.SeriesDate, dataset.SeriesTime, dataset.OperatorsName = date, time, ""
    dataset.Manufacturer = dataset.ManufacturerModelName = "SATSegment"
    dataset.SoftwareVersions = algorithm.software[:64]
    dataset.StructureSetLabel = "SATSegment"
    dataset.StructureSetName = algorithm.model[:64]
    dataset.StructureSetDescription = f"Automatic contours by {algorithm.description}; review before use."
    dataset.InstanceNumber = 1
    dataset.StructureSetDate, dataset.StructureSetTime = date, time
    dataset.ReferencedFrameOfReferenceSequence = [_item(
        FrameOfReferenceUID=source.first.FrameOfReferenceUID,
        RTReferencedStudySequence=[_item(
            ReferencedSOPClassUID=STUDY_COMPONENT_SOP_CLASS, ReferencedSOPInstanceUID=source.first.StudyInstanceUID,
            RTReferencedSeriesSequence=[_item(SeriesInstanceUID=source.first.SeriesInstanceUID,
                                              ContourImageSequence=[_image_reference(i) for i in source.instances])])])]
    dataset.ApprovalStatus = "UNAPPROVED"
    return dataset


def _contour_items(frames: np.ndarray, source: SourceSeries) -> list:
    """CLOSED_PLANAR contour items of one structure, each on (and referencing) its source image."""
    items = []
    for frame in np.flatnonzero(frames.reshape(len(frames), -1).any(axis=1)):
        instance = source.instances[frame]
        for contour in slice_contours(frames[frame]):
            items.append(_item(ContourImageSequence=[_image_reference(instance)], ContourGeometricType="CLOSED_PLANAR",
                               NumberOfContourPoints=len(contour), ContourNumber=len(items) + 1,
                               ContourData=contour_data(contour, instance)))
    return items


def _image_reference(instance):
    return _item(ReferencedSOPClassUID=instance.SOPClassUID, ReferencedSOPInstanceUID=instance.SOPInstanceUID)


def _item(**attributes):
    """A sequence item with the given attributes, in keyword order as given (pydicom sorts them by tag)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item
