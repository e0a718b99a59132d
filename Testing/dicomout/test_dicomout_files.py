"""DICOM SEG and RTSTRUCT of real organ masks on the real CT series, checked by other tools than ours.

dciodvfy (dicom3tools) validates each file against the standard; pydicom, highdicom and scikit-image read
them back; where each frame and contour lies is worked out from the source images' own headers and the
label map's NIfTI affine (conftest's independent readers), never from SATSegmentLib's geometry code.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from SATSegmentLib.dicomout import write_dicom_seg, write_rtstruct
from SATSegmentLib.errors import InputError

LABELS = {"spleen": 1, "liver": 5, "pancreas": 7, "right adrenal gland": 8, "aorta": 52, "inferior vena cava": 63,
          "spinal cord": 79, "thoracic vertebrae 12 (t12)": 32, "rib": 115}


@pytest.fixture(scope="module")
def truth(ct_series, label_map, independent) -> dict:
    """SOP Instance UID -> (header, label map at that image's pixels), worked out independently."""
    labels = np.asarray(label_map.dataobj)
    return {uid: (header, independent.volume_on_image(label_map, header, labels))
            for uid, header in independent.source_headers(ct_series).items()}


@pytest.fixture(scope="module")
def written(organ_result, ct_series, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom-out")
    seg = write_dicom_seg(folder / "organs.seg.dcm", organ_result, ct_series)
    rtstruct = write_rtstruct(folder / "organs.rtstruct.dcm", organ_result, ct_series, names="tg263")
    return {"seg": seg, "rtstruct": rtstruct}


def dciodvfy(path) -> str:
    """dciodvfy's report on a file (errors are lines starting with 'Error')."""
    if shutil.which("dciodvfy") is None:
        pytest.fail("dciodvfy is missing: install Debian's dicom3tools (bash Testing/install_system_tools.sh)")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    print(done.stdout + done.stderr)  # warnings are shown, not failed on
    return done.stdout + done.stderr


@pytest.mark.parametrize("kind, iod", [("seg", "Segmentation"), ("rtstruct", "RTStructureSet")])
def test_files_pass_dciodvfy(written, kind, iod):
    report = dciodvfy(written[kind])
    assert [line for line in report.splitlines() if line.startswith("Error")] == []
    assert iod in report.splitlines()  # dciodvfy recognised the object it validated


def test_seg_frames_are_the_label_map_on_their_source_images(written, truth, label_map):
    import highdicom as hd

    seg = hd.seg.segread(written["seg"])
    labels = np.asarray(label_map.dataobj)
    numbers = {str(s.SegmentDescription): int(s.SegmentNumber) for s in seg.SegmentSequence}
    assert set(numbers) == set(LABELS)
    assert {s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for s in seg.SegmentSequence} >= {"Spleen", "Liver", "Aorta"}
    frames_seen = {}
    pixels = seg.pixel_array
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        header = truth[source_uid][0]
        assert np.allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in header.ImagePositionPatient])
        frames_seen[(source_uid, number)] = pixels[index]
    for term, label in LABELS.items():
        number, total = numbers[term], 0
        for uid, (header, on_image) in truth.items():
            expected = on_image == label
            got = frames_seen.get((uid, number), np.zeros_like(expected))
            assert np.array_equal(got > 0, expected), f"{term} differs on the image at z={header.ImagePositionPatient[2]}"
            total += int(expected.sum())
        assert total == int((labels == label).sum()) > 0


def test_seg_reads_back_with_highdicom_by_source_instance(written, truth):
    import highdicom as hd

    seg = hd.seg.segread(written["seg"])
    liver = next(int(s.SegmentNumber) for s in seg.SegmentSequence if s.SegmentDescription == "liver")
    uids = list(truth)
    array = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[liver])
    for k, uid in enumerate(uids):
        assert np.array_equal(array[k, :, :, 0] > 0, truth[uid][1] == LABELS["liver"])


def test_rtstruct_contours_rasterise_back_to_the_masks(written, truth, independent, capsys):
    rt = pydicom.dcmread(written["rtstruct"])
    headers = {uid: header for uid, (header, _) in truth.items()}
    names = {int(r.ROINumber): str(r.ROIDescription) for r in rt.StructureSetROISequence}
    dice = {}
    for roi in rt.ROIContourSequence:
        term = names[int(roi.ReferencedROINumber)]
        per_image: dict[str, list] = {uid: [] for uid in headers}
        for contour in roi.ContourSequence:
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3)
            assert len(points) == int(contour.NumberOfContourPoints) >= 3
            header = headers[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            pixels = independent.contour_pixels(points, header)
            assert pixels.min() >= -0.5 and (pixels.max(axis=0) <= np.array([header.Rows, header.Columns]) - 0.5).all()
            per_image[contour.ContourImageSequence[0].ReferencedSOPInstanceUID].append(points)
        overlap = drawn = wanted = 0
        for uid, (header, on_image) in truth.items():
            expected = on_image == LABELS[term]
            got = independent.rasterise(per_image[uid], header)
            overlap, drawn, wanted = overlap + int((got & expected).sum()), drawn + int(got.sum()), wanted + int(expected.sum())
        dice[term] = 2 * overlap / (drawn + wanted)
    with capsys.disabled():
        print("\nRTSTRUCT Dice per structure (rasterised back):", {k: round(v, 4) for k, v in dice.items()})
    assert set(dice) == set(LABELS)
    assert min(dice.values()) >= 0.95


def test_rtstruct_names_types_colours_and_references(written, ct_series, independent):
    rt = pydicom.dcmread(written["rtstruct"])
    headers = independent.source_headers(ct_series)
    names = [str(r.ROIName) for r in rt.StructureSetROISequence]
    assert names == ["Spleen", "Liver", "Pancreas", "Glnd_Adrenal_R", "A_Aorta", "V_Venacava_I", "SpinalCord",
                     "VB_T12", "Rib"]
    assert {str(o.RTROIInterpretedType) for o in rt.RTROIObservationsSequence} == {"ORGAN"}
    assert all(len(c.ROIDisplayColor) == 3 for c in rt.ROIContourSequence)
    assert len({tuple(c.ROIDisplayColor) for c in rt.ROIContourSequence}) > 1  # colours from the terminology
    frame = rt.ReferencedFrameOfReferenceSequence[0]
    first = next(iter(headers.values()))
    assert frame.FrameOfReferenceUID == first.FrameOfReferenceUID == rt.FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == set(headers)
    assert all(r.ReferencedFrameOfReferenceUID == first.FrameOfReferenceUID for r in rt.StructureSetROISequence)


@pytest.mark.parametrize("kind", ["seg", "rtstruct"])
def test_patient_and_study_copied_new_uids(written, ct_series, independent, kind):
    dataset = pydicom.dcmread(written[kind])
    first = next(iter(independent.source_headers(ct_series).values()))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate"):
        assert dataset[keyword].value == first[keyword].value, keyword
    assert dataset.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert dataset.SeriesInstanceUID != first.SeriesInstanceUID
    assert dataset.SOPInstanceUID not in {first.SOPInstanceUID, first.SeriesInstanceUID, first.StudyInstanceUID}
    assert dataset.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID


def test_each_write_gets_new_uids_and_never_overwrites(organ_result, ct_series, written, tmp_path):
    before = written["seg"].read_bytes()
    with pytest.raises(InputError, match="exists"):
        write_dicom_seg(written["seg"], organ_result, ct_series)
    with pytest.raises(InputError, match="exists"):
        write_rtstruct(written["seg"], organ_result, ct_series)
    assert written["seg"].read_bytes() == before
    again = pydicom.dcmread(write_rtstruct(tmp_path / "again.dcm", organ_result, ct_series))
    first = pydicom.dcmread(written["rtstruct"])
    assert again.SOPInstanceUID != first.SOPInstanceUID and again.SeriesInstanceUID != first.SeriesInstanceUID
    assert [str(r.ROIName) for r in again.StructureSetROISequence][:2] == ["spleen", "liver"]  # default: SAT terms


def test_tiny_structures_and_holes_rasterise_back_exactly(organ_result, ct_series, independent, tmp_path):
    from types import SimpleNamespace

    shape = organ_result.masks["liver"].shape  # (z, y, x) of the scan as read: y rows, x columns of the images
    assert np.allclose(organ_result.reference.GetDirection(), np.eye(3).ravel())
    shapes = {"single voxel": [(5, 100, 200)], "line": [(6, 50, x) for x in range(300, 340)],
              "diagonal": [(7, 200 + i, 200 + i) for i in range(6)]}
    masks = {}
    for name, voxels in shapes.items():
        masks[name] = np.zeros(shape, np.uint8)
        masks[name][tuple(np.array(voxels).T)] = 1
    ring = np.zeros(shape, np.uint8)
    ring[8, 240:260, 240:260] = 1
    ring[8, 245:255, 245:255] = 0  # a hole
    ring[8, 249, 249] = 1  # an island inside the hole
    masks["ring"] = ring
    result = SimpleNamespace(masks=masks, reference=organ_result.reference)
    rt = pydicom.dcmread(write_rtstruct(tmp_path / "tiny.dcm", result, ct_series))
    headers = independent.source_headers(ct_series)
    for roi, (name, mask) in zip(rt.ROIContourSequence, masks.items()):
        drawn = {uid: [] for uid in headers}
        for contour in roi.ContourSequence:
            drawn[contour.ContourImageSequence[0].ReferencedSOPInstanceUID].append(
                np.array([float(v) for v in contour.ContourData]).reshape(-1, 3))
        total = sum(int(independent.rasterise(points, headers[uid]).sum()) for uid, points in drawn.items())
        assert total == int(mask.sum()), name
        z = int(np.flatnonzero(mask.any(axis=(1, 2)))[0])
        # the image holding the mask's slice: the one whose position matches the reference's slice z
        position = organ_result.reference.TransformIndexToPhysicalPoint((0, 0, z))
        uid = next(u for u, h in headers.items() if abs(float(h.ImagePositionPatient[2]) - position[2]) < 1e-3)
        assert np.array_equal(independent.rasterise(drawn[uid], headers[uid]), mask[z] > 0), name


def test_empty_results_keep_their_segment_and_roi(organ_result, ct_series, tmp_path):
    import highdicom as hd
    from types import SimpleNamespace

    result = SimpleNamespace(masks={"liver": organ_result.masks["liver"], "spleen": np.zeros_like(organ_result.masks["liver"])},
                             reference=organ_result.reference)
    seg_path = write_dicom_seg(tmp_path / "empty.seg.dcm", result, ct_series)
    rt_path = write_rtstruct(tmp_path / "empty.rtstruct.dcm", result, ct_series)
    for path in (seg_path, rt_path):
        assert [line for line in dciodvfy(path).splitlines() if line.startswith("Error")] == []
    seg = hd.seg.segread(seg_path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "spleen"]
    numbers = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in seg.PerFrameFunctionalGroupsSequence]
    assert not any(seg.pixel_array[i].any() for i, n in enumerate(numbers) if n == 2)
    assert sum(int(seg.pixel_array[i].sum()) for i, n in enumerate(numbers) if n == 1) == int(result.masks["liver"].sum())
    rt = pydicom.dcmread(rt_path)
    assert [str(r.ROIName) for r in rt.StructureSetROISequence] == ["liver", "spleen"]
    assert "ContourSequence" in rt.ROIContourSequence[0] and "ContourSequence" not in rt.ROIContourSequence[1]
