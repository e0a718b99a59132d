"""'Compute on: server' with a volume loaded from DICOM: when the server's datastore is the PACS holding its series
(a real Orthanc with DICOMweb on 127.0.0.1), the module names the series instead of uploading the volume, and the
result lands on the volume's grid exactly as the uploaded volume's result does; otherwise it uploads as before."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402
from SATSegmentSlicerLib.dicomlinks import dicomSeries  # noqa: E402
from SATSegmentSlicerLib.remoterunner import RemoteRunner  # noqa: E402
from SATSegmentSlicerLib.runner import RunRequest  # noqa: E402
from test_slicer_results import _onVolumeGrid  # noqa: E402

RUN_TIMEOUT = 240
UPLOAD_BYTES = 96 * 96 * 19 * 2  # 19 slices of the cropped series as int16: an infer request this big uploaded them


@pytest.fixture(scope="module")
def pacs_server(tmp_path_factory, tiny_model_dir, examples_dir, pacs_label_server_starter):
    """(server, SeriesInstanceUID, series folder, Orthanc): a SATSegment server whose datastore is an Orthanc holding the series."""
    with pacs_label_server_starter(tmp_path_factory.mktemp("pacs"), tiny_model_dir, examples_dir) as started:
        yield started


def _loadedFromDicom(scene, folder: Path, seriesUid: str | None, name: str = "CT series"):
    """The series read by Slicer's volume storage node, with the UIDs Slicer's DICOM loader gives it (the
    instance UIDs attribute, a series item under a study in the subject hierarchy); `seriesUid` None: no DICOM UIDs."""
    import pydicom

    files = sorted(folder.iterdir())
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(files[0]))
    for path in files:
        storage.AddFileName(str(path))
    storage.SetSingleFile(False)
    assert storage.ReadData(volume)
    volume.SetAndObserveStorageNodeID(storage.GetID())
    if seriesUid is None:
        return volume
    volume.SetAttribute("DICOM.instanceUIDs", " ".join(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files))
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    item = hierarchy.CreateItem(study, volume)
    hierarchy.SetItemUID(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMUIDName(), seriesUid)
    return volume


class _SpyClient(LabelServerClient):
    """The real client; the size of each infer request's body recorded (an upload carries the volume)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, timeout=RUN_TIMEOUT)
        self.infer_bytes: list[int] = []

    def _request(self, method, path, body=None, content_type=None, timeout=None):
        if path.startswith("/infer/"):
            self.infer_bytes.append(len(body))
        return super()._request(method, path, body, content_type, timeout)


class _PacsDownClient(_SpyClient):
    """The server's PACS fails to say whether it holds the series (502, as the route answers then)."""

    def image_info(self, image_id: str) -> dict:
        raise RemoteError("The server's datastore failed to deliver it: connection refused", status=502, code="datastore_error")


def _run(url: str, tmp_path: Path, request: RunRequest, clientClass: type = _SpyClient, status: str = "done"):
    """(outcome, client, progress events) of one remote run, which ended with `status`."""
    from SATSegmentLib import __version__

    client, progress, outcomes = clientClass(url), [], []
    runs = tmp_path / f"runs-{len(list(tmp_path.iterdir()))}"
    runs.mkdir()
    runner = RemoteRunner(client, progress.append, outcomes.append, str(runs), __version__)
    runner.start(request)
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert len(outcomes) == 1 and outcomes[0].status == status, outcomes and outcomes[0].error
    return outcomes[0], client, [event["message"] for event in progress]


def _masks(outcome, volume) -> dict[str, np.ndarray]:
    segmentation = outcome.segmentationNode.GetSegmentation()
    return {segmentation.GetNthSegment(i).GetName(): _onVolumeGrid(segmentation.GetNthSegment(i), volume)
            for i in range(segmentation.GetNumberOfSegments())}


def _roi(scene, volume):
    """An ROI (RAS mm) over part of the volume, as the user draws one."""
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    roi.SetCenter([(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)])
    roi.SetSize([0.7 * (bounds[2 * a + 1] - bounds[2 * a]) for a in range(3)])
    return roi


def test_a_volume_from_the_pacs_series_is_named_not_uploaded_and_its_result_is_the_uploaded_one(scene, pacs_server, tmp_path):
    server, series, folder, _ = pacs_server
    fromDicom, plain = _loadedFromDicom(scene, folder, series), _loadedFromDicom(scene, folder, None, "same voxels")
    named, namedClient, namedSaid = _run(server.url, tmp_path, RunRequest(fromDicom, ["liver", "spleen"], "ct",
                                                                          roiNode=_roi(scene, fromDicom)))
    uploaded, uploadClient, uploadSaid = _run(server.url, tmp_path, RunRequest(plain, ["liver", "spleen"], "ct",
                                                                               roiNode=_roi(scene, plain)))
    assert namedClient.infer_bytes[0] < 2000 and uploadClient.infer_bytes[0] > UPLOAD_BYTES  # no volume in the request
    assert len(list(server.root.rglob(f".cache/**/{series}/*.dcm"))) == len(list(folder.iterdir()))  # the server fetched it
    assert "the server reads the series from the PACS" in namedSaid and "uploading the volume" in uploadSaid
    namedMasks, uploadedMasks = _masks(named, fromDicom), _masks(uploaded, plain)  # each on its volume's grid
    assert list(namedMasks) == list(uploadedMasks) == ["liver", "spleen"]
    assert sum(int(mask.sum()) for mask in namedMasks.values()) > 0
    for name in namedMasks:
        np.testing.assert_array_equal(namedMasks[name], uploadedMasks[name])


def test_a_series_the_pacs_does_not_hold_holds_otherwise_or_cannot_tell_is_uploaded(scene, pacs_server, tmp_path):
    server, series, folder, _ = pacs_server
    elsewhere = _loadedFromDicom(scene, folder, "1.2.826.0.1.3680043.8.498.1")  # another site's series
    fewer = _loadedFromDicom(scene, folder, series, "part of the series")
    fewer.SetAttribute("DICOM.instanceUIDs", " ".join(fewer.GetAttribute("DICOM.instanceUIDs").split()[1:]))
    whole = _loadedFromDicom(scene, folder, series, "the series, the PACS down")
    for volume, clientClass in ((elsewhere, _SpyClient), (fewer, _SpyClient), (whole, _PacsDownClient)):
        _, client, said = _run(server.url, tmp_path, RunRequest(volume, ["liver"], "ct"), clientClass)
        assert client.infer_bytes[0] > UPLOAD_BYTES and "uploading the volume" in said


def test_a_folder_datastore_gets_the_volume_uploaded(scene, label_server, pacs_server, tmp_path):
    _, series, folder, _ = pacs_server
    volume = _loadedFromDicom(scene, folder, series)
    assert LabelServerClient(label_server.url).image_info(series) == {"image_id": series, "datastore": "local", "exists": False}
    _, client, said = _run(label_server.url, tmp_path, RunRequest(volume, ["liver"], "ct"))
    assert client.infer_bytes[0] > UPLOAD_BYTES and "uploading the volume" in said


def test_only_an_unchanged_volume_loaded_from_dicom_names_its_series(scene, pacs_server):
    _, series, folder, _ = pacs_server
    volume = _loadedFromDicom(scene, folder, series)
    assert dicomSeries(volume) == (series, len(list(folder.iterdir())))
    assert dicomSeries(_loadedFromDicom(scene, folder, None)) is None  # not from DICOM
    volume.GetImageData().Modified()  # e.g. the voxels edited, or the volume resampled in place
    assert dicomSeries(volume) is None


def test_a_series_the_server_cannot_read_from_the_pacs_is_uploaded_instead(scene, pacs_server, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    server, _, folder, orthanc = pacs_server
    gapped, uid = tmp_path / "gapped", generate_uid()
    gapped.mkdir()
    slices = sorted((pydicom.dcmread(path) for path in folder.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    for dataset in slices[:10] + slices[11:]:  # a slice missing: the server refuses the series, Slicer reads it
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = uid, generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(gapped / f"{dataset.SOPInstanceUID}.dcm")
    orthanc.upload(gapped)
    outcome, client, said = _run(server.url, tmp_path, RunRequest(_loadedFromDicom(scene, gapped, uid), ["liver"], "ct"))
    assert client.infer_bytes[0] < 2000 and client.infer_bytes[1] > UPLOAD_BYTES and len(client.infer_bytes) == 2
    assert said[0] == "the server reads the series from the PACS"
    uploading = [message for message in said if message.startswith("uploading the volume")]
    assert len(uploading) == 1 and uploading[0].startswith("uploading the volume (the server could not read the series "
                                                           "from the PACS: "), said
    assert outcome.segments and outcome.segments[0]["term"] == "liver"


def test_the_users_own_error_on_the_pacs_path_is_reported_and_nothing_uploaded(scene, pacs_server, tmp_path):
    server, series, folder, _ = pacs_server
    volume = _loadedFromDicom(scene, folder, series)
    roi = _roi(scene, volume)
    roi.SetCenter([coordinate + 5000.0 for coordinate in roi.GetCenter()])  # drawn far from the scan
    outcome, client, said = _run(server.url, tmp_path, RunRequest(volume, ["liver"], "ct", roiNode=roi), status="error")
    assert outcome.error["code"] == "bad_input" and "outside the image" in outcome.error["message"], outcome.error
    assert len(client.infer_bytes) == 1 and client.infer_bytes[0] < 2000  # the series named, never uploaded
    assert not [message for message in said if message.startswith("uploading")], said


class _SeriesUnreadableClient(_SpyClient):
    """Stand-in for the server's answer of interface (A) to a named series it cannot read from its PACS."""

    def segment(self, *args, **kwargs):
        self.job_ids = [*getattr(self, "job_ids", []), kwargs.get("job_id")]
        if kwargs.get("image_id") is not None:
            self.infer_bytes.append(0)
            raise RemoteError("slice 11 of 20 is missing", status=422,
                              code="series_unreadable")
        return super().segment(*args, **kwargs)


def test_a_series_the_server_says_it_cannot_read_is_uploaded_instead(scene, pacs_server, tmp_path):
    server, series, folder, _ = pacs_server
    outcome, client, said = _run(server.url, tmp_path, RunRequest(_loadedFromDicom(scene, folder, series), ["liver"], "ct"),
                                 _SeriesUnreadableClient)
    assert client.infer_bytes[0] == 0 and client.infer_bytes[1] > UPLOAD_BYTES and len(client.infer_bytes) == 2
    assert said[0] == "the server reads the series from the PACS" and said[1] == (
        "uploading the volume (the server could not read the series from the PACS: slice 11 of 20 is missing)")
    assert outcome.segments[0]["term"] == "liver"


class _CancelBeforeUpload(queue.Queue):
    """The runner's event queue, cancelling the run the moment the runner says it will upload after a failed PACS
    run (after it checked that the run was not cancelled, before the upload is sent) and waiting for the cancel."""

    def __init__(self, runner: RemoteRunner) -> None:
        super().__init__()
        self.runner = runner

    def put(self, item, *args, **kwargs) -> None:
        super().put(item, *args, **kwargs)
        jobId, kind, payload = item
        if kind == "status" and payload.get("message", "").startswith("uploading the volume (the server could not"):
            self.runner.cancel()
            thread = next(t for t in threading.enumerate() if t.name == f"SATSegment cancel {jobId}")
            thread.join(10)


def test_an_upload_replacing_a_failed_pacs_run_after_cancel_is_refused_by_the_server(scene, pacs_server, tmp_path):
    from SATSegmentLib import __version__

    server, series, folder, _ = pacs_server
    client, outcomes = _SeriesUnreadableClient(server.url), []
    (tmp_path / "runs").mkdir()
    runner = RemoteRunner(client, lambda event: None, outcomes.append, str(tmp_path / "runs"), __version__)
    runner._events = _CancelBeforeUpload(runner)
    runner.start(RunRequest(_loadedFromDicom(scene, folder, series), ["liver"], "ct"))
    runner.waitUntilFinished(RUN_TIMEOUT)
    assert [outcome.status for outcome in outcomes] == ["cancelled"]
    assert len(client.infer_bytes) == 2 and client.job_ids[0] != client.job_ids[1]  # the upload was sent, with its id
    assert client.status(client.job_ids[1])["state"] == "cancelled"  # and refused: it never ran
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
