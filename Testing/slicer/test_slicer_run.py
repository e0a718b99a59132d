"""The module's run path for real: a scalar volume node from the real CT, the `satsegment serve`
worker in its own process with a tiny random-weight SAT model, results imported into a scene that
already holds user segments; and Cancel, which must leave that scene exactly as it was."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from SATSegmentSlicerLib import paths, segments  # noqa: E402
from SATSegmentSlicerLib.runner import RunRequest, SegmentationRunner  # noqa: E402
from SATSegmentSlicerLib.worker import WorkerClient  # noqa: E402

RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """One persistent worker for the whole file, as in Slicer (the model stays loaded)."""
    progress, outcomes, logs = [], [], []
    client = WorkerClient(paths.workerCommand("serve"), paths.workerEnvironment(), onLog=logs.append)
    runner = SegmentationRunner(client, progress.append, outcomes.append, tempRoot=str(tmp_path_factory.mktemp("runs")))
    runner.events, runner.outcomes, runner.logs = progress, outcomes, logs
    yield runner
    runner.shutdown()
    assert not client.running


def _snapshot(scene, node) -> tuple:
    """Everything Cancel must not change: the scene's nodes, and each segment's id, name, voxels, colour."""
    segmentation = node.GetSegmentation()
    segs = [(segmentation.GetNthSegmentID(i), segmentation.GetNthSegment(i).GetName(),
             segments.segmentChecksum(segmentation.GetNthSegment(i)), segmentation.GetNthSegment(i).GetColor())
            for i in range(segmentation.GetNumberOfSegments())]
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())], segs


def _run(runner, request) -> object:
    before = len(runner.outcomes)
    runner.start(request)
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert len(runner.outcomes) == before + 1
    return runner.outcomes[-1]


def test_run_imports_segments_on_the_volume_grid_next_to_user_work(scene, small_ct, runner, tiny_model_dir):
    output = segments.createOutputSegmentation(small_ct, "mine")
    userId = output.GetSegmentation().AddEmptySegment("", "liver")  # the user's own liver segment
    userChecksum = segments.segmentChecksum(output.GetSegmentation().GetSegment(userId))

    outcome = _run(runner, RunRequest(small_ct, ["liver", "spleen"], "ct", model=str(tiny_model_dir), device="cpu",
                                      outputSegmentationNode=output))
    assert outcome.status == "done", outcome.error
    assert outcome.segmentationNode is output
    segmentation = output.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["liver", "liver (2)", "spleen"]
    assert segments.segmentChecksum(segmentation.GetSegment(userId)) == userChecksum
    stages = {event["stage"] for event in runner.events}
    assert {"preprocess", "map_back"} <= stages, stages
    fractions = [event["fraction"] for event in runner.events]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1

    ijkToRas = vtk.vtkMatrix4x4()
    small_ct.GetIJKToRASMatrix(ijkToRas)
    dims = small_ct.GetImageData().GetDimensions()
    for segmentId in outcome.report.added:
        segment = segmentation.GetSegment(segmentId)
        image = segment.GetRepresentation(segments.BINARY_LABELMAP)
        imageToWorld = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(imageToWorld)
        assert [imageToWorld.GetElement(r, c) for r in range(4) for c in range(4)] == pytest.approx(
            [ijkToRas.GetElement(r, c) for r in range(4) for c in range(4)], abs=1e-4)
        extent = image.GetExtent()
        assert extent[0] >= 0 and extent[2] >= 0 and extent[4] >= 0
        assert extent[1] < dims[0] and extent[3] < dims[1] and extent[5] < dims[2]
        summary = next(s for s in outcome.segments if s["name"] == segment.GetName().replace(" (2)", ""))
        voxel_ml = float(np.prod(small_ct.GetSpacing())) / 1000
        assert segments.segmentVolumeMl(segment) == pytest.approx(summary["voxels"] * voxel_ml, rel=1e-6)
        assert segments.isUneditedModuleSegment(segment)

    # the same request again: this module's unedited segments are replaced, the user's liver stays
    again = _run(runner, RunRequest(small_ct, ["liver", "spleen"], "ct", model=str(tiny_model_dir), device="cpu",
                                    outputSegmentationNode=output))
    assert again.status == "done", again.error
    assert sorted(again.report.replaced) == ["liver (2)", "spleen"] and not again.report.keptBoth
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["liver", "liver (2)", "spleen"]
    assert segments.segmentChecksum(segmentation.GetSegment(userId)) == userChecksum


def test_cancel_leaves_the_scene_untouched(scene, small_ct, runner, tiny_model_dir, tmp_path):
    # a voxel the earlier runs did not see: the worker's caches (keyed on content) must not finish the job at once
    scalars = small_ct.GetImageData().GetPointData().GetScalars()
    scalars.SetTuple1(0, scalars.GetTuple1(0) + 1)
    small_ct.GetImageData().Modified()
    output = segments.createOutputSegmentation(small_ct, "existing")
    output.GetSegmentation().AddEmptySegment("", "spleen")
    before = _snapshot(scene, output)
    runner.events.clear()
    runner.start(RunRequest(small_ct, ["liver", "spleen", "left kidney"], "ct", model=str(tiny_model_dir), device="cpu",
                            outputSegmentationNode=output))
    workDirs = list(Path(runner.tempRoot).iterdir())
    assert workDirs, "the volume was not exported"
    end = time.monotonic() + RUN_TIMEOUT  # cancel as soon as the job is running
    while not runner.events and time.monotonic() < end:
        runner.poll()
        time.sleep(0.05)
    runner.cancel()
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert runner.outcomes[-1].status == "cancelled"
    assert _snapshot(scene, output) == before
    assert not any(p.exists() for p in workDirs), "temporary files were left behind"
    assert not runner.busy


def test_output_under_another_transform_is_refused_before_any_work(scene, small_ct, runner, tiny_model_dir):
    output = segments.createOutputSegmentation(small_ct, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    output.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ValueError, match="another transform"):
        runner.start(RunRequest(small_ct, ["liver"], "ct", model=str(tiny_model_dir), outputSegmentationNode=output))
    assert not runner.busy and list(Path(runner.tempRoot).iterdir()) == []


def _startAndWait(runner, request, before) -> object:
    """Start `request`, let `before()` change the scene while the job runs, and return how the run ended."""
    count = len(runner.outcomes)
    runner.start(request)
    workDirs = list(Path(runner.tempRoot).iterdir())
    before()
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert len(runner.outcomes) == count + 1 and not runner.busy
    assert not any(p.exists() for p in workDirs), "temporary files were left behind"
    return runner.outcomes[-1]


def test_input_deleted_during_the_run_ends_it_with_an_error(scene, small_ct, runner, tiny_model_dir):
    outcome = _startAndWait(runner, RunRequest(small_ct, ["liver"], "ct", model=str(tiny_model_dir), device="cpu"),
                            lambda: scene.RemoveNode(small_ct))
    assert outcome.status == "error" and outcome.error["code"] == "input_removed"
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_output_deleted_during_the_run_gets_a_new_segmentation(scene, small_ct, runner, tiny_model_dir):
    output = segments.createOutputSegmentation(small_ct, "deleted later")
    outcome = _startAndWait(runner, RunRequest(small_ct, ["liver"], "ct", model=str(tiny_model_dir), device="cpu",
                                               outputSegmentationNode=output), lambda: scene.RemoveNode(output))
    assert outcome.status == "done" and outcome.outputReplaced and outcome.createdNode
    assert outcome.segmentationNode is not output and outcome.segmentationNode.GetScene() is scene
    assert outcome.segmentationNode.GetSegmentation().GetNumberOfSegments() == 1


def test_a_failing_import_ends_the_run_cleanly(scene, small_ct, runner, tiny_model_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the labelmap could not be converted")

    monkeypatch.setattr(segments, "importResults", broken)
    outcome = _startAndWait(runner, RunRequest(small_ct, ["liver"], "ct", model=str(tiny_model_dir), device="cpu"),
                            lambda: None)
    assert outcome.status == "error" and outcome.error["code"] == "internal_error"
    assert "could not be converted" in outcome.error["message"]


def test_undo_of_a_run_removes_the_segmentation_it_created(scene, small_ct, runner, tiny_model_dir):
    outcome = _run(runner, RunRequest(small_ct, ["liver"], "ct", model=str(tiny_model_dir), device="cpu"))
    node = outcome.segmentationNode
    assert outcome.canUndo and node.GetScene() is scene
    outcome.undo()
    assert node.GetScene() is None and not outcome.canUndo
    with pytest.raises(RuntimeError):
        outcome.undo()


# A worker that copies a prepared result to the output it was asked for and echoes a garbled path back, as a
# worker writing in another code page would.
ECHOES_A_GARBLED_PATH = """
import json, shutil, sys
for line in sys.stdin:
    request = json.loads(line)
    if request["type"] == "segment":
        shutil.copy(sys.argv[1], request["output"])
        print(json.dumps({"event": "result", "id": request["id"], "segments": [], "timings": {},
                          "outputs": {"segmentation": "C:/Users/ZoÃ«/garbled.seg.nrrd"}}), flush=True)
"""


def test_the_result_is_read_from_the_path_the_runner_chose(scene, small_ct, tmp_path):
    import sys

    from SATSegmentLib import outputs
    from SATSegmentLib.outputs import segment_spec

    reference = sitk.ReadImage(str(tmp_path / "ct_block.nii.gz"))
    mask = (sitk.GetArrayFromImage(reference) > 0).astype(np.uint8)
    prepared = tmp_path / "prepared.seg.nrrd"
    outputs.write_seg_nrrd(prepared, {"liver": mask}, reference, [segment_spec("liver", "liver", "nano")])
    finished = []
    client = WorkerClient([sys.executable, "-c", ECHOES_A_GARBLED_PATH, str(prepared)], None)
    runner = SegmentationRunner(client, onFinished=finished.append, tempRoot=str(tmp_path))
    runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.waitUntilFinished(30)
    runner.shutdown()
    assert finished[0].status == "done", finished[0].error
    assert finished[0].segmentationNode.GetSegmentation().GetNumberOfSegments() == 1
