"""The module's 'Compute on: server' path for real: a volume node of the real CT on the slicer-core scene, a
SATSegment MONAI Label server with the tiny model on 127.0.0.1, the result imported by the same path as
local results (names, colours, terminology, conflict policy, undo); and what goes wrong: an unknown
prompt (suggestions), no server at the address, another server version, cancel."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from SATSegmentLib import vocabulary  # noqa: E402
from SATSegmentSlicerLib import remoterunner, segments  # noqa: E402
from SATSegmentSlicerLib.policies import ConflictPolicy  # noqa: E402
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402
from SATSegmentSlicerLib.remoterunner import RemoteRunner  # noqa: E402
from SATSegmentSlicerLib.runner import RunRequest  # noqa: E402

RUN_TIMEOUT = 240


def _runner(url: str, tmp_path: Path, version: str | None = None, client=None) -> RemoteRunner:
    from SATSegmentLib import __version__

    progress, outcomes = [], []
    (tmp_path / "runs").mkdir()
    runner = RemoteRunner(client or LabelServerClient(url, timeout=RUN_TIMEOUT), progress.append, outcomes.append,
                          str(tmp_path / "runs"), version or __version__)
    runner.events, runner.outcomes = progress, outcomes
    return runner


def _run(runner, request):
    runner.start(request)
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert len(runner.outcomes) == 1, "the run did not end exactly once"
    assert not list(Path(runner.tempRoot).iterdir()), "the temporary folder was left behind"
    return runner.outcomes[0]


def _names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def test_a_server_result_is_imported_like_a_local_one_with_tg263_names(scene, small_ct, label_server, tmp_path):
    output = segments.createOutputSegmentation(small_ct, "mine")
    userId = output.GetSegmentation().AddEmptySegment("", "SpinalCord")  # the user's own, named as TG-263 names it
    runner = _runner(label_server.url, tmp_path)
    outcome = _run(runner, RunRequest(small_ct, ["spinal cord", "left parotid gland"], "ct",
                                      outputSegmentationNode=output, names="tg263"))
    assert outcome.status == "done", outcome.error
    assert _names(output) == ["SpinalCord", "SpinalCord (2)", "Parotid_L"]  # kept both: the user's segment stays
    assert outcome.report.keptBoth == {"SpinalCord": "SpinalCord (2)"} and userId not in outcome.report.added
    segmentation = output.GetSegmentation()
    parotid = segmentation.GetSegment(outcome.report.added[1])
    info = vocabulary.terminology_for("left parotid gland")
    assert parotid.GetColor() == pytest.approx(info.color_rgb, abs=1e-3)
    terminology = vtk.reference("")
    assert parotid.GetTag(parotid.GetTerminologyEntryTagName(), terminology) and "Parotid" in str(terminology)
    term = vtk.reference("")
    assert parotid.GetTag(segments.TAG_TERM, term) and str(term) == "left parotid gland"
    assert segments.isUneditedModuleSegment(parotid)
    outcome.undo()
    assert _names(output) == ["SpinalCord"]


def test_sat_names_and_a_new_segmentation_referencing_the_volume(scene, small_ct, label_server, tmp_path):
    runner = _runner(label_server.url, tmp_path)
    outcome = _run(runner, RunRequest(small_ct, ["liver", "spleen"], "ct", policy=ConflictPolicy.REPLACE))
    assert outcome.status == "done", outcome.error
    node = outcome.segmentationNode
    assert outcome.createdNode and _names(node) == ["liver", "spleen"]
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is small_ct
    assert [s["term"] for s in outcome.segments] == ["liver", "spleen"]


def test_a_segmentation_the_user_made_on_the_dicom_volume_is_linked_for_export_one_on_another_volume_is_not(
        scene, small_ct, ct_volume, label_server, tmp_path):
    from SATSegmentSlicerLib import dicomlinks

    small_ct.SetAttribute(dicomlinks.INSTANCE_UIDS, "1.2.826.0.1.3680043.8.498.1")  # as Slicer's DICOM loader leaves it
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    hierarchy.CreateItem(study, small_ct)
    mine, onOther = (scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name) for name in ("mine", "on the whole CT"))
    mine.SetReferenceImageGeometryParameterFromVolumeNode(small_ct)  # as the Segment Editor does
    onOther.SetReferenceImageGeometryParameterFromVolumeNode(ct_volume)
    runner = _runner(label_server.url, tmp_path)
    for node in (mine, onOther):
        assert _run(runner, RunRequest(small_ct, ["liver"], "ct", outputSegmentationNode=node)).status == "done"
        runner.outcomes.clear()
    assert dicomlinks.whyNotExportable(mine) == "" and hierarchy.GetItemParent(hierarchy.GetItemByDataNode(mine)) == study
    assert dicomlinks.whyNotExportable(onOther) == "not_dicom"  # its own volume is no DICOM volume: left as it was
    assert onOther.GetNodeReference(onOther.GetReferenceImageGeometryReferenceRole()) is ct_volume


def test_an_unknown_prompt_ends_as_an_error_with_suggestions(scene, small_ct, label_server, tmp_path):
    runner = _runner(label_server.url, tmp_path)
    outcome = _run(runner, RunRequest(small_ct, ["lefft lung upper"], "ct"))
    assert outcome.status == "error"
    assert outcome.error["status"] == 422 and outcome.error["code"] == "unknown_prompt", outcome.error
    assert outcome.error["suggestions"][0] == "left lung upper lobe"
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_no_server_at_the_address_is_an_error_that_says_so(scene, small_ct, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    runner = _runner(f"http://127.0.0.1:{port}", tmp_path)
    outcome = _run(runner, RunRequest(small_ct, ["liver"], "ct"))
    assert outcome.status == "error" and "Cannot reach" in outcome.error["message"]
    assert "server runs" in outcome.error["hint"]


def test_another_server_version_is_refused_before_the_upload(scene, small_ct, label_server, tmp_path):
    runner = _runner(label_server.url, tmp_path, version="0.0.1")
    outcome = _run(runner, RunRequest(small_ct, ["liver"], "ct"))
    assert outcome.status == "error" and "this module 0.0.1" in outcome.error["message"]
    assert "same version" in outcome.error["hint"]


def test_cancel_ends_the_run_at_once_and_changes_nothing(scene, small_ct, label_server, tmp_path):
    output = segments.createOutputSegmentation(small_ct, "existing")
    output.GetSegmentation().AddEmptySegment("", "liver")
    runner = _runner(label_server.url, tmp_path)
    runner.start(RunRequest(small_ct, ["liver", "spleen", "left kidney"], "ct", outputSegmentationNode=output))
    runner.cancel()
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert [o.status for o in runner.outcomes] == ["cancelled"]
    assert _names(output) == ["liver"] and not runner.busy
    runner.waitUntilFinished(1)  # the server's late answer (if it cannot cancel) is dropped, not imported
    assert _names(output) == ["liver"] and len(runner.outcomes) == 1


def test_cancel_of_a_running_job_stops_it_on_the_server(scene, ct_volume, label_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remoterunner, "STATUS_INTERVAL_S", 0.05)
    runner = _runner(label_server.url, tmp_path)
    jobId = runner.start(RunRequest(ct_volume, ["liver", "spleen", "left kidney"], "ct"))  # the whole CT: many windows
    deadline = time.monotonic() + RUN_TIMEOUT
    while not any((e.get("fraction") or 0) > 0 for e in runner.events) and runner.busy and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.05)
    assert runner.busy, "the job ended before it could be cancelled"
    running = [e["fraction"] for e in runner.events if e.get("state") == "running"]
    assert 0 < running[-1] < 1  # the server's own progress of the job reached the run's progress events
    runner.cancel()
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert [o.status for o in runner.outcomes] == ["cancelled"]
    deadline = time.monotonic() + 60  # the run ends CANCEL_GRACE_S after Cancel at the latest; the job ends between windows
    while runner.client.status(jobId)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.client.status(jobId)["state"] == "cancelled"  # stopped there, not merely abandoned here


class _CancellingClient(LabelServerClient):
    """The real client; the cancel and status routes of remote.py's API recorded as the runner calls them.
    `known`: how cancel answers (True: the server's answer, False: it does not know the id, None: no cancel route);
    the first `lost` cancels are lost on the network."""

    def __init__(self, url: str, known: bool | None, lost: int = 0) -> None:
        super().__init__(url, timeout=RUN_TIMEOUT)
        self.known, self.lost, self.cancelled, self.asked = known, lost, [], []

    def cancel(self, job_id: str) -> bool:
        self.cancelled.append(job_id)
        if len(self.cancelled) <= self.lost:
            raise RemoteError(f"Cannot reach {self.url}: connection reset.")  # no HTTP status: the network
        if self.known is None:
            raise RemoteError("The server answered HTTP 404: Not Found", status=404)
        return super().cancel(job_id) if self.known else False

    def status(self, job_id: str) -> dict:
        self.asked.append(job_id)
        return {"state": "queued", "position": 2}

    def segment(self, *args, **kwargs):
        self.models = [*getattr(self, "models", []), kwargs.get("sat_model")]
        return super().segment(*args, **kwargs)


def _cancelling(jobId: str) -> bool:
    return any(thread.name == f"SATSegment cancel {jobId}" for thread in threading.enumerate())


def _cancelThreadsEnd(jobId: str, seconds: float) -> bool:
    """The runner's thread cancelling `jobId` has ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while _cancelling(jobId) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _cancelling(jobId)


@pytest.mark.parametrize("known", [None, False], ids=["no cancel route", "job not known yet"])
def test_cancel_of_a_job_the_server_cannot_cancel_or_does_not_know_yet_ends_the_run_at_once_asking_once(
        known, scene, small_ct, label_server, tmp_path):
    client = _CancellingClient(label_server.url, known=known)  # not known yet: e.g. still receiving the upload
    runner = _runner(label_server.url, tmp_path, client=client)
    jobId = runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.cancel()
    assert _cancelThreadsEnd(jobId, 2)
    runner.poll()
    assert [o.status for o in runner.outcomes] == ["cancelled"] and not runner.busy  # at once, for the user
    assert client.cancelled[0] == jobId and len(set(client.cancelled)) == len(client.cancelled) == 2  # and its upload id
    runner.waitUntilFinished(1)  # (the server remembers an unknown id as cancelled: nothing to ask again)
    assert len(client.cancelled) == 2


def test_a_cancel_lost_on_the_network_is_sent_again(scene, small_ct, label_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remoterunner, "STATUS_INTERVAL_S", 0.01)
    client = _CancellingClient(label_server.url, known=True, lost=2)
    runner = _runner(label_server.url, tmp_path, client=client)
    jobId = runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.cancel()
    assert _cancelThreadsEnd(jobId, 2)
    assert client.cancelled[:3] == [jobId] * 3 and len(client.cancelled) == 4  # then its upload id, once
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert [o.status for o in runner.outcomes] == ["cancelled"]


def test_a_server_that_accepted_cancel_but_answers_late_is_left_behind(scene, small_ct, label_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remoterunner, "CANCEL_GRACE_S", 0.0)
    client = _CancellingClient(label_server.url, known=True)
    runner = _runner(label_server.url, tmp_path, client=client)
    runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.cancel()
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert [o.status for o in runner.outcomes] == ["cancelled"]


def test_the_chosen_model_is_asked_for_only_when_the_server_serves_it(scene, small_ct, label_server, tmp_path):
    client = _CancellingClient(label_server.url, known=True)
    runner = _runner(label_server.url, tmp_path, client=client)
    for model in ("tiny", "pro"):  # the test server serves 'tiny' only: 'pro' leaves the choice to the server
        outcome = _run(runner, RunRequest(small_ct, ["liver"], "ct", model=model))
        assert outcome.status == "done", outcome.error
        runner.outcomes.clear()
    assert client.models == ["tiny", None]


def test_queue_position_is_reported_as_progress(scene, small_ct, label_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remoterunner, "STATUS_INTERVAL_S", 0.01)
    client = _CancellingClient(label_server.url, known=True)
    runner = _runner(label_server.url, tmp_path, client=client)
    jobId = runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert runner.outcomes[0].status == "done", runner.outcomes[0].error
    assert client.asked and set(client.asked) == {jobId}
    assert [e["message"] for e in runner.events[:2]] == ["uploading the volume", "waiting: 2 jobs ahead"]
    assert runner.events[1]["state"] == "queued" and runner.events[1]["position"] == 2
    assert runner.events[1]["fraction"] is None


class _ProgressClient(_CancellingClient):
    """Stand-in for the status of a running job with its progress (interface B), until the server reports it."""

    def status(self, job_id: str) -> dict:
        self.asked.append(job_id)
        return {"job_id": job_id, "state": "running", "position": 0, "fraction": min(0.9, 0.1 * len(self.asked))}


def test_the_servers_progress_of_a_running_job_is_the_runs_fraction(scene, small_ct, label_server, tmp_path, monkeypatch):
    monkeypatch.setattr(remoterunner, "STATUS_INTERVAL_S", 0.01)
    runner = _runner(label_server.url, tmp_path, client=_ProgressClient(label_server.url, known=True))
    runner.start(RunRequest(small_ct, ["liver"], "ct"))
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert runner.outcomes[0].status == "done", runner.outcomes[0].error
    fractions = [event["fraction"] for event in runner.events if event["state"] == "running"]
    assert fractions and fractions[0] == pytest.approx(0.1) and fractions == sorted(fractions)
    assert [event["message"] for event in runner.events[1:3]] == ["running", "running"]
