"""The SATSegment app in a real MONAI Label server on 127.0.0.1 (tiny model), through the module's client:
a request per modality, synonyms and typos, unknown prompts, bad requests, two clients at once."""

from __future__ import annotations

import io
import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "SATSegment"))  # as Slicer puts the module folder on sys.path
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402

from SATSegmentLib import __version__  # noqa: E402


@pytest.fixture
def client(label_server):
    return LabelServerClient(label_server.url, timeout=300)


def _image(result, tmp_path) -> sitk.Image:
    return sitk.ReadImage(str(result.save(tmp_path)))


def test_the_server_says_what_it_serves(client):
    task = client.check(__version__)
    assert task["models"] == ["tiny"] and task["satsegment_version"] == __version__
    with pytest.raises(RemoteError, match="The server runs SATSegment 0.1.0, this module 9.0.0"):
        client.check("9.0.0")


def test_a_ct_request_with_synonyms_and_typos(client, label_server, tmp_path):
    result = client.segment(["hepar", "livr", "L kidney"], "ct", image_id="ct")
    assert result.label_names == {"liver": 1, "left kidney": 2}
    assert any("segmented once" in w["message"] for w in result.params["warnings"])  # 'livr' repeats 'hepar'
    labels = _image(result, tmp_path)
    scan = sitk.ReadImage(str(label_server.studies / "ct.nii.gz"))
    assert labels.GetSize() == scan.GetSize() and np.allclose(labels.GetOrigin(), scan.GetOrigin(), atol=1e-3)
    assert set(np.unique(sitk.GetArrayFromImage(labels))) <= {0, 1, 2}


def test_an_mri_request_and_a_pet_request(client):
    assert client.segment(["Liver"], "mri", image_id="mr").params["modality"] == "mri"
    assert client.segment(["lymph node"], "pet", image_id="mr").label_names == {"lymph node": 1}


def test_an_uploaded_scan_is_segmented_and_seg_nrrd_is_returned_when_asked(client, ct_path, tmp_path):
    result = client.segment(["spleen"], "ct", image_path=ct_path, output_format="seg.nrrd")
    assert result.file_name.endswith(".seg.nrrd") and result.params["label_names"] == {"spleen": 1}
    assert b"Segment0_Name:=spleen" in result.data[:8192]


def test_an_unknown_prompt_is_refused_with_suggestions(client):
    with pytest.raises(RemoteError) as caught:
        client.segment(["liver", "splen"], "ct", image_id="ct")
    assert caught.value.status == 422 and caught.value.code == "unknown_prompt"
    assert "spleen" in caught.value.suggestions and "--" not in caught.value.hint


@pytest.mark.parametrize("call, status, message", [
    (dict(prompts=["liver"], modality="ct", image_id="no-such-scan"), 404, "has no image 'no-such-scan'"),
    (dict(prompts=["liver"], modality="ct", image_id=str(Path(__file__))), 400, "image id of the server's datastore, not a path"),
    (dict(prompts=["liver"], modality="ct", image_id="../studies/ct"), 400, "not a path"),
    (dict(prompts=["liver"], modality="ultrasound", image_id="ct"), 422, "modality"),
    (dict(prompts=["liver"], modality="ct", image_id="ct", sat_model="pro"), 400, "Model 'pro' is not served here"),
    (dict(prompts=["liver"], modality="ct", image_id="ct", roi=[1, 2, 3]), 400, "six numbers"),
    (dict(prompts=[f"structure {i}" for i in range(1001)], modality="ct", image_id="ct"), 422, "at most 1,000"),
    (dict(prompts=[], modality="ct", image_id="ct"), 422, "No prompts given"),
])
def test_bad_requests_get_our_message_and_the_server_stays_up(client, call, status, message):
    with pytest.raises(RemoteError, match=message) as caught:
        client.segment(**call)
    assert caught.value.status == status
    assert client.check(__version__)["models"] == ["tiny"]


@pytest.mark.parametrize("query, params, status, message", [
    ("image=ct", '{"prompts": ["liver"', 400, "'params' is not valid JSON"),
    ("image=ct", '["liver"]', 400, "'params' must be a JSON object"),
    ("image=ct", '{"prompts": "liver"}', 400, "'prompts' must be a list"),
    ("image=ct", '{"prompts": ["liver"], "output_format": "dicom"}', 400, "'output_format' must be one of"),
])
def test_malformed_params_are_answered_with_400(label_server, query, params, status, message):
    from SATSegmentSlicerLib.remote import encode_multipart

    body, kind = encode_multipart({"params": (None, params.encode(), "application/json")})
    request = urllib.request.Request(f"{label_server.url}/infer/sat?{query}&output=json", body, {"Content-Type": kind})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    detail = json.load(io.BytesIO(caught.value.read()))["detail"]
    assert caught.value.code == status and message in detail["message"]


def test_an_unknown_task_is_a_bad_request(label_server):
    from SATSegmentSlicerLib.remote import encode_multipart

    body, kind = encode_multipart({"params": (None, b'{"prompts": ["liver"]}', "application/json")})
    request = urllib.request.Request(f"{label_server.url}/infer/vista?image=ct", body, {"Content-Type": kind})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.code == 400 and "no model 'vista'" in json.load(caught.value)["detail"]["message"]


def test_two_clients_at_once_each_get_their_own_answer(label_server, tmp_path):
    requests = {"a": (["liver"], "ct", "ct"), "b": (["left kidney", "spleen"], "ct", "ct"), "c": (["liver"], "mri", "mr")}
    alone = {name: LabelServerClient(label_server.url).segment(p, m, image_id=i) for name, (p, m, i) in requests.items()}
    together: dict = {}

    def run(name):
        prompts, modality, image = requests[name]
        together[name] = LabelServerClient(label_server.url, timeout=300).segment(prompts, modality, image_id=image)

    threads = [threading.Thread(target=run, args=(name,)) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for name in requests:
        assert together[name].label_names == alone[name].label_names
        assert together[name].params["modality"] == alone[name].params["modality"]
        folders = [tmp_path / name / kind for kind in ("together", "alone")]
        for folder in folders:
            folder.mkdir(parents=True)
        got = sitk.GetArrayFromImage(_image(together[name], folders[0]))
        np.testing.assert_array_equal(got, sitk.GetArrayFromImage(_image(alone[name], folders[1])))


def test_a_client_refuses_an_address_that_is_no_server():
    with pytest.raises(RemoteError, match="is not a server address"):
        LabelServerClient("gpu-server:8000")
    with pytest.raises(RemoteError, match="Cannot reach"):
        LabelServerClient("http://127.0.0.1:9", timeout=5).check()
