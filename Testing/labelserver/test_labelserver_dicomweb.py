"""DICOMweb datastore: the server reads a series from a real Orthanc (Debian's, with its DICOMweb plugin) on
127.0.0.1 and segments it as the same series read from disk is segmented; a series it cannot read is answered
`series_unreadable`, apart from the client's own errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "SATSegment"))
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402


@pytest.fixture(scope="module")
def dicomweb_server(tmp_path_factory, tiny_model_dir, examples_dir, pacs_label_server_starter):
    """(server, SeriesInstanceUID, series folder, Orthanc) of a server whose datastore is an Orthanc holding the series."""
    with pacs_label_server_starter(tmp_path_factory.mktemp("dicomweb"), tiny_model_dir, examples_dir) as started:
        yield started


def test_the_server_tells_whether_the_pacs_holds_a_series_without_fetching_it(dicomweb_server):
    server, series, series_dir, _ = dicomweb_server
    def fetched() -> list[Path]:  # MONAI Label's cache of retrieved instances, and the test's own series folder
        return sorted(server.root.rglob("*.dcm"))

    before = fetched()
    client = LabelServerClient(server.url, timeout=60)
    assert client.image_info(series) == {"image_id": series, "datastore": "dicomweb", "exists": True,
                                         "instances": len(list(series_dir.iterdir()))}
    assert client.image_info("1.2.3.4.5") == {"image_id": "1.2.3.4.5", "datastore": "dicomweb", "exists": False}
    assert fetched() == before  # first in this module: nothing of the series was retrieved


def test_a_series_from_the_pacs_is_segmented_like_the_same_files_on_disk(dicomweb_server, engine, tmp_path):
    server, series, series_dir, _ = dicomweb_server
    remote = LabelServerClient(server.url, timeout=300).segment(["liver", "spleen"], "ct", image_id=series)
    local_path, local = engine.infer({"prompts": ["liver", "spleen"], "modality": "ct"}, str(series_dir))
    assert remote.label_names == local["label_names"] == {"liver": 1, "spleen": 2}
    remote_image, local_image = sitk.ReadImage(str(remote.save(tmp_path))), sitk.ReadImage(local_path)
    assert remote_image.GetSize() == local_image.GetSize()
    assert np.allclose(remote_image.GetOrigin(), local_image.GetOrigin(), atol=1e-3)
    assert np.allclose(remote_image.GetDirection(), local_image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(remote_image), sitk.GetArrayFromImage(local_image))


def test_an_unknown_series_uid_is_not_found(dicomweb_server):
    server, _, _, _ = dicomweb_server
    with pytest.raises(RemoteError, match="has no image") as caught:
        LabelServerClient(server.url, timeout=300).segment(["liver"], "ct", image_id="1.2.3.4.5")
    assert caught.value.status == 404


def test_a_series_the_server_cannot_read_is_series_unreadable_and_a_bad_roi_stays_the_clients_error(dicomweb_server, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    server, series, series_dir, orthanc = dicomweb_server
    gapped, uid = tmp_path / "gapped", generate_uid()
    gapped.mkdir()
    slices = sorted((pydicom.dcmread(path) for path in series_dir.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    for dataset in slices[:10] + slices[11:]:  # a slice missing
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = uid, generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(gapped / f"{dataset.SOPInstanceUID}.dcm")
    orthanc.upload(gapped)
    client = LabelServerClient(server.url, timeout=300)
    with pytest.raises(RemoteError, match=f"cannot read series {uid} from its PACS: .*slice") as unreadable:
        client.segment(["liver"], "ct", image_id=uid)
    assert (unreadable.value.status, unreadable.value.code) == (422, "series_unreadable")
    assert "Upload the volume" in unreadable.value.hint
    with pytest.raises(RemoteError, match="ROI") as outside:  # the PACS series is fine: the ROI is the user's error
        client.segment(["liver"], "ct", image_id=series, roi=[5000, 5000, 5000, 5100, 5100, 5100])
    assert (outside.value.status, outside.value.code) == (422, "bad_input")
