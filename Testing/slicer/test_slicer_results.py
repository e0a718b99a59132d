"""Results into segments, on Slicer's real MRML layer (slicer-core): geometry, terminology, and the
rules that keep user work (replace / keep both / skip, edit detection by checksum, undo of an import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from SATSegmentLib import outputs, vocabulary  # noqa: E402
from SATSegmentLib.outputs import segment_spec  # noqa: E402  (exactly the segments the worker writes)
from SATSegmentSlicerLib import segments  # noqa: E402
from SATSegmentSlicerLib.policies import ConflictPolicy  # noqa: E402


def _masks(ct_path: Path) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    """Two distinct, overlapping masks on the CT grid (z, y, x), from intensity thresholds."""
    reference = sitk.ReadImage(str(ct_path))
    values = sitk.GetArrayFromImage(reference)
    liver = np.zeros(values.shape, np.uint8)
    liver[5:20, 30:70, 20:60] = values[5:20, 30:70, 20:60] > 0
    spleen = (values > 300).astype(np.uint8)
    return reference, {"liver": liver, "spleen": spleen}


def _writeResult(path: Path, ct_path: Path, model: str = "nano") -> dict[str, np.ndarray]:
    reference, masks = _masks(ct_path)
    specs = [segment_spec(term, term, model) for term in masks]
    outputs.write_seg_nrrd(path, masks, reference, specs)
    return masks


def _onVolumeGrid(segment, volume) -> np.ndarray:
    """The segment's voxels placed on the volume's (z, y, x) grid; fails if the geometries differ."""
    image = segment.GetRepresentation(segments.BINARY_LABELMAP)
    segmentMatrix, volumeMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(segmentMatrix)
    volume.GetIJKToRASMatrix(volumeMatrix)
    for row in range(4):
        for column in range(4):
            assert segmentMatrix.GetElement(row, column) == pytest.approx(volumeMatrix.GetElement(row, column), abs=1e-4)
    dims = volume.GetImageData().GetDimensions()
    grid = np.zeros(dims[::-1], np.uint8)
    mask, start, _ = segments._segmentMask(segment)
    i, j, k = start
    grid[k:k + mask.shape[0], j:j + mask.shape[1], i:i + mask.shape[2]] = mask
    return grid


def _names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def _tag(segment, name: str) -> str:
    value = vtk.reference("")
    assert segment.GetTag(name, value), f"segment {segment.GetName()} has no tag {name}"
    return str(value)


@pytest.fixture
def result_file(tmp_path, ct_path):
    path = tmp_path / "result.seg.nrrd"
    return path, _writeResult(path, ct_path)


def test_new_segmentation_matches_volume_geometry_terminology_and_tags(scene, ct_volume, result_file):
    path, masks = result_file
    node = segments.createOutputSegmentation(ct_volume)
    report = segments.importResults(node, str(path))

    assert _names(node) == ["liver", "spleen"]
    assert len(report.added) == 2 and not report.replaced and not report.keptBoth
    segmentation = node.GetSegmentation()
    for term in ("liver", "spleen"):
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(term))
        np.testing.assert_array_equal(_onVolumeGrid(segment, ct_volume), masks[term])
        info = vocabulary.terminology_for(term)
        assert segment.GetColor() == pytest.approx(info.color_rgb, abs=1e-5)
        assert segment.GetTerminology() == info.slicer_entry
        assert _tag(segment, segments.TAG_PROMPT) == term
        assert _tag(segment, segments.TAG_MODEL) == "nano"
        assert _tag(segment, segments.TAG_DATE).startswith("20")
        assert _tag(segment, segments.TAG_CHECKSUM) == segments.segmentChecksum(segment)
        voxel_ml = float(np.prod(ct_volume.GetSpacing())) / 1000
        assert segments.segmentVolumeMl(segment) == pytest.approx(masks[term].sum() * voxel_ml)
    # a new segmentation references the volume's geometry and sits in the volume's study
    geometry = node.GetSegmentation().GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    assert geometry, "the reference image geometry was not set"
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    hierarchy.CreateItem(study, ct_volume)  # Slicer's application does this when a volume is loaded
    second = segments.createOutputSegmentation(ct_volume)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(second)) == study


def test_unedited_module_segments_are_replaced_in_place(ct_volume, result_file):
    path, masks = result_file
    node = segments.createOutputSegmentation(ct_volume)
    first = segments.importResults(node, str(path))
    report = segments.importResults(node, str(path))
    assert _names(node) == ["liver", "spleen"]
    assert report.replaced == ["liver", "spleen"]
    assert report.added == first.added  # same segment ids: displays and references stay valid


@pytest.mark.parametrize("first, second", [("sat", "tg263"), ("tg263", "sat")])
def test_a_rerun_under_the_other_naming_choice_replaces_unedited_results_and_takes_the_new_names(
        ct_volume, result_file, first, second):
    path, _ = result_file
    node = segments.createOutputSegmentation(ct_volume)
    before = segments.importResults(node, str(path), names=first)
    report = segments.importResults(node, str(path), names=second)
    assert _names(node) == {"sat": ["liver", "spleen"], "tg263": ["Liver", "Spleen"]}[second]  # no liver next to Liver
    assert report.added == before.added and not report.keptBoth


def test_a_result_the_user_renamed_is_kept_when_the_naming_choice_changes(ct_volume, result_file):
    path, _ = result_file
    node = segments.createOutputSegmentation(ct_volume)
    segments.importResults(node, str(path))
    segmentation = node.GetSegmentation()
    segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver")).SetName("liver, before surgery")
    report = segments.importResults(node, str(path), names="tg263")
    assert _names(node) == ["liver, before surgery", "Spleen", "Liver"] and report.replaced == ["Spleen"]


def test_user_edited_segment_is_kept_and_new_one_numbered(ct_volume, result_file):
    path, masks = result_file
    node = segments.createOutputSegmentation(ct_volume)
    segments.importResults(node, str(path))
    segmentation = node.GetSegmentation()
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    image = liver.GetRepresentation(segments.BINARY_LABELMAP)
    scalars = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    scalars[np.flatnonzero(scalars == 0)[:25]] = liver.GetLabelValue()  # the user paints 25 voxels
    image.Modified()
    edited = segments.segmentChecksum(liver)
    assert not segments.isUneditedModuleSegment(liver)

    report = segments.importResults(node, str(path))
    assert _names(node) == ["liver", "spleen", "liver (2)"]
    assert report.keptBoth == {"liver": "liver (2)"} and report.replaced == ["spleen"]
    kept = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    assert segments.segmentChecksum(kept) == edited


def test_segment_made_by_the_user_is_never_replaced_by_default(ct_volume, result_file):
    path, masks = result_file
    node = segments.createOutputSegmentation(ct_volume)
    userSegmentId = node.GetSegmentation().AddEmptySegment("", "spleen")
    report = segments.importResults(node, str(path))
    assert _names(node) == ["spleen", "liver", "spleen (2)"]
    assert node.GetSegmentation().GetSegment(userSegmentId) is not None
    assert report.keptBoth == {"spleen": "spleen (2)"}
    again = segments.importResults(node, str(path))  # a re-run replaces our copies, not the user's
    assert _names(node) == ["spleen", "liver", "spleen (2)"]
    assert sorted(again.replaced) == ["liver", "spleen (2)"] and not again.keptBoth


@pytest.mark.parametrize("policy, expected_names, expected_liver_voxels", [
    (ConflictPolicy.REPLACE, ["liver", "spleen"], "new"),
    (ConflictPolicy.SKIP, ["liver", "spleen"], "old"),
    (ConflictPolicy.KEEP_BOTH, ["liver", "spleen", "liver (2)", "spleen (2)"], "old"),
])
def test_explicit_policies_on_user_segments(ct_volume, result_file, policy, expected_names, expected_liver_voxels):
    path, masks = result_file
    node = segments.createOutputSegmentation(ct_volume)
    segmentation = node.GetSegmentation()
    for name in ("liver", "spleen"):
        segmentation.AddEmptySegment("", name)  # user-made, empty
    report = segments.importResults(node, str(path), policy)
    assert _names(node) == expected_names
    liver = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("liver"))
    voxels = int(segments._segmentMask(liver)[0].sum())
    assert voxels == (int(masks["liver"].sum()) if expected_liver_voxels == "new" else 0)
    if policy is ConflictPolicy.SKIP:
        assert report.skipped == ["liver", "spleen"] and not report.added


def test_checksum_survives_layer_merging_but_not_editing(ct_volume, result_file):
    path, _ = result_file
    node = segments.createOutputSegmentation(ct_volume)
    segments.importResults(node, str(path))
    segmentation = node.GetSegmentation()
    spleen = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("spleen"))
    before = segments.segmentChecksum(spleen)
    segmentation.CollapseBinaryLabelmaps(False)  # what the Segment Editor does: shared layers, new label values
    assert segmentation.IsSharedBinaryLabelmap(segmentation.GetSegmentIdBySegmentName("liver")) or spleen.GetLabelValue() != 1
    assert segments.segmentChecksum(spleen) == before
    assert segments.isUneditedModuleSegment(spleen)


def _state(node) -> list[tuple]:
    """Each segment's id, name and voxels, in order."""
    segmentation = node.GetSegmentation()
    return [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName(),
             segments.segmentChecksum(segmentation.GetNthSegment(i))) for i in range(segmentation.GetNumberOfSegments())]


def test_scene_undo_is_off_in_slicer_so_the_module_keeps_its_own(scene):
    assert not scene.GetUndoFlag()  # vtkMRMLScene's default, also in the Slicer application


@pytest.mark.parametrize("policy", [ConflictPolicy.REPLACE, ConflictPolicy.AUTO, ConflictPolicy.KEEP_BOTH])
def test_undo_restores_replaced_segments_and_removes_added_ones(ct_volume, result_file, ct_path, tmp_path, policy):
    path, _ = result_file
    node = segments.createOutputSegmentation(ct_volume)
    segments.importResults(node, str(path))
    node.GetSegmentation().AddEmptySegment("", "mine")
    other = tmp_path / "other.seg.nrrd"
    reference, masks = _masks(ct_path)
    masks = {"spleen": masks["liver"], "kidney": masks["spleen"]}  # different voxels for spleen
    outputs.write_seg_nrrd(other, masks, reference, [segment_spec(term, term, "nano") for term in masks])
    before = _state(node)

    report = segments.importResults(node, str(other), policy)
    assert _state(node) != before
    segments.undoImport(node, report)
    assert _state(node) == before  # ids, names, voxels and order


def test_unreadable_result_file_raises_and_leaves_segments(ct_volume, tmp_path):
    node = segments.createOutputSegmentation(ct_volume)
    node.GetSegmentation().AddEmptySegment("", "mine")
    broken = tmp_path / "broken.seg.nrrd"
    broken.write_text("not a nrrd")
    with pytest.raises(OSError):
        segments.importResults(node, str(broken))
    assert _names(node) == ["mine"]


def test_module_terminology_context_loads_and_knows_the_segments_terms():
    from SATSegmentSlicerLib.paths import resourcesDir

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    names = segments.loadTerminologyContexts(logic, resourcesDir() / "Terminology")
    context = vocabulary.terminology_for("liver").slicer_entry.split("~")[0]
    assert context in names and logic.IsTerminologyContextLoaded(context)
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(vocabulary.terminology_for("liver").slicer_entry, entry)
    assert entry.GetTypeObject().GetCodeMeaning() == "Liver"


def test_terminology_file_lists_each_type_code_once_per_category():
    """Slicer finds a type by its code: a code listed twice in a category makes the second entry unreachable."""
    import json
    from collections import Counter

    from SATSegmentSlicerLib.paths import resourcesDir

    path = resourcesDir() / "Terminology" / "SegmentationCategoryTypeModifier-SATSegment.term.json"
    for category in json.loads(path.read_text(encoding="utf-8"))["SegmentationCodes"]["Category"]:
        counts = Counter((t["CodingSchemeDesignator"], t["CodeValue"]) for t in category["Type"])
        assert not [code for code, n in counts.items() if n > 1], category["CodeMeaning"]
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    segments.loadTerminologyContexts(logic, resourcesDir() / "Terminology")
    for term in ("thyroid", "thyroid gland"):  # both SAT terms still find their (shared) type
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(vocabulary.terminology_for(term).slicer_entry, entry)
        assert entry.GetTypeObject().GetCodeValue() == "69748006"
