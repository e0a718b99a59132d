"""The server's engine without HTTP: params checked like the worker's, prompts resolved like the CLI's,
results as label images or .seg.nrrd with label names, cancelled jobs."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SATSegmentLib.errors import CancelledError, InputError, UnknownPromptError
from SATSegmentLib.labelserver.engine import SeriesUnreadableError
from SATSegmentLib.labelserver.httperrors import http_error
from SATSegmentLib.labelserver.jobs import UnknownJobError
from SATSegmentLib.labelserver.labelmap import write_labelmap
from SATSegmentLib.labelserver.params import ServerSettings, parse_params
from SATSegmentLib.server import BadRequestError


def test_a_ct_request_returns_a_label_image_on_the_scan_with_label_names(engine, ct_path):
    path, info = engine.infer({"prompts": ["Liver", "L kidney"], "modality": "ct", "sat_model": "tiny"}, str(ct_path))
    labels, scan = sitk.ReadImage(path), sitk.ReadImage(str(ct_path))
    assert labels.GetSize() == scan.GetSize() and np.allclose(labels.GetOrigin(), scan.GetOrigin())
    assert info["label_names"] == {"liver": 1, "left kidney": 2}
    assert [(s["prompt"], s["term"], s["label"]) for s in info["segments"]] == [("Liver", "liver", 1), ("L kidney", "left kidney", 2)]
    values = sitk.GetArrayFromImage(labels)
    for segment in info["segments"]:  # the label image holds what the engine counted (the two may overlap)
        assert np.count_nonzero(values == segment["label"]) <= segment["voxels"]
    assert np.count_nonzero(values) + info["overlap_voxels"] == sum(s["voxels"] for s in info["segments"])
    assert info["modality"] == "ct" and info["sat_model"] == "tiny" and path.endswith(".nii.gz")
    assert list(Path(path).parent.iterdir()) == [Path(path)]  # nothing else the job wrote is left behind


def test_a_failed_job_leaves_no_files(engine, ct_path, tmp_path):
    with pytest.raises(UnknownPromptError):
        engine.infer({"prompts": ["xyzzy organ"], "modality": "ct"}, str(ct_path))
    assert list((tmp_path / "engine-temp").iterdir()) == []


def test_mri_and_pet_requests_use_their_modality(engine, mr_path):
    _, mri = engine.infer({"prompts": ["hepar"], "modality": "mri"}, str(mr_path))
    assert mri["modality"] == "mri" and mri["label_names"] == {"liver": 1}
    _, pet = engine.infer({"prompts": ["lymph node"], "modality": "pet"}, str(mr_path))
    assert pet["modality"] == "pet" and pet["label_names"] == {"lymph node": 1}


def test_a_follow_up_prompt_on_the_same_scan_skips_the_backbone(engine, ct_path):
    engine.infer({"prompts": ["liver"], "modality": "ct"}, str(ct_path))
    _, again = engine.infer({"prompts": ["spleen"], "modality": "ct"}, str(ct_path))
    assert again["cache"]["backbone_skipped"] is True


def test_seg_nrrd_output_keeps_names_and_terminology(engine, ct_path):
    path, info = engine.infer({"prompts": ["livr"], "modality": "ct", "output_format": "seg.nrrd"}, str(ct_path))
    segmentation = slicerio.read_segmentation(path)
    assert [s["name"] for s in segmentation["segments"]] == ["liver"] and info["output_format"] == "seg.nrrd"
    assert "Liver" in segmentation["segments"][0]["terminology"]["category"][0] + str(segmentation["segments"][0]["terminology"])


def test_unknown_prompts_are_refused_with_suggestions(engine, ct_path):
    with pytest.raises(UnknownPromptError) as caught:
        engine.infer({"prompts": ["liver", "splen"], "modality": "ct"}, str(ct_path))
    assert "spleen" in caught.value.suggestions


def test_a_prompt_unknown_for_the_modality_is_refused(engine, ct_path):
    with pytest.raises(UnknownPromptError, match="not for PET"):
        engine.infer({"prompts": ["spleen"], "modality": "pet"}, str(ct_path))


@pytest.mark.parametrize("params, message", [
    ({}, "'prompts' must be a list"),
    ({"prompts": "liver"}, "'prompts' must be a list"),
    ({"prompts": [1, 2]}, "'prompts' must be a list of strings"),
    ({"prompts": ["liver"], "sat_model": "pro"}, "Model 'pro' is not served here"),
    ({"prompts": ["liver"], "sat_model": ["tiny"]}, "is not served here"),
    ({"prompts": ["liver"], "roi": [1, 2, 3]}, "Option 'roi' must be a list of six numbers"),
    ({"prompts": ["liver"], "roi": "everywhere"}, "Option 'roi' must be a list of six numbers"),
    ({"prompts": ["liver"], "allow_free_text": "yes"}, "Option 'allow_free_text' must be true or false"),
    ({"prompts": ["liver"], "modality": 3}, "'modality' must be a non-empty string"),
    ({"prompts": ["liver"], "output_format": "dicom"}, "'output_format' must be one of labelmap, seg.nrrd"),
])
def test_malformed_params_are_refused_before_any_work(engine, ct_path, params, message):
    with pytest.raises(BadRequestError, match=message):
        engine.infer(params, str(ct_path))


def test_bad_values_are_refused_like_the_worker_refuses_them(engine, ct_path):
    with pytest.raises(InputError, match="Unknown modality|modality"):
        engine.infer({"prompts": ["liver"], "modality": "ultrasound"}, str(ct_path))
    with pytest.raises(InputError, match="one job segments at most 1,000"):
        engine.infer({"prompts": [f"structure {i}" for i in range(1001)], "modality": "ct"}, str(ct_path))


def test_clients_cannot_choose_server_paths_devices_or_memory(tmp_path):
    settings = ServerSettings(models={"nano": "/models/nano"}, device="cuda:1", max_memory="40GB")
    job = parse_params({"prompts": ["liver"], "model": "sat", "device": "cpu", "checkpoint": "/etc/passwd", "max_memory": 1,
                        "split_dir": "/tmp/x"}, "/data/ct.nii.gz", tmp_path, settings)
    assert (job.request.model, job.request.device, job.request.max_memory) == ("/models/nano", "cuda:1", "40GB")
    assert job.request.checkpoint is None and job.request.split_dir == str(tmp_path / "split")
    assert Path(job.request.output).parent == tmp_path


def test_settings_from_monai_label_conf():
    settings = ServerSettings.from_conf({"models": "nano, pro=/srv/sat-pro", "device": "cuda", "feature_cache_mb": "8192"})
    assert settings.models == {"nano": "nano", "pro": "/srv/sat-pro"} and settings.default_model == "nano"
    assert (settings.device, settings.feature_cache_mb, settings.max_memory) == ("cuda", 8192.0, None)
    with pytest.raises(ValueError, match="at least one model"):
        ServerSettings.from_conf({"models": " , "})


def test_the_label_image_gives_overlapping_voxels_to_the_first_mask(tmp_path):
    masks = []
    for n, rows in enumerate([slice(0, 3), slice(2, 5)]):
        array = np.zeros((2, 5, 4), np.uint8)
        array[:, rows] = 1
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.5, 0.7, 2.0))
        sitk.WriteImage(image, str(tmp_path / f"m{n}.nii.gz"))
        masks.append(tmp_path / f"m{n}.nii.gz")
    path, overlap = write_labelmap(tmp_path / "labels.nii.gz", masks)
    labels = sitk.ReadImage(str(path))
    assert overlap == 2 * 4 and np.allclose(labels.GetSpacing(), (0.5, 0.7, 2.0))
    assert sitk.GetArrayFromImage(labels)[0, :, 0].tolist() == [1, 1, 1, 2, 2]


def test_a_cancelled_job_is_refused_and_leaves_no_files_and_others_run(engine, ct_path, tmp_path):
    job = engine.jobs.submit(uuid.uuid4().hex, "client:a")
    engine.jobs.cancel(job.id)
    with pytest.raises(CancelledError):
        engine.infer({"prompts": ["liver"], "modality": "ct"}, str(ct_path), job.id)
    assert engine.jobs.status(job.id)["state"] == "cancelled" and list((tmp_path / "engine-temp").iterdir()) == []
    other = engine.jobs.submit(uuid.uuid4().hex, "client:b")
    _, info = engine.infer({"prompts": ["liver"], "modality": "ct"}, str(ct_path), other.id)
    assert info["job_id"] == other.id and engine.jobs.status(other.id)["state"] == "done"


def test_a_job_whose_request_was_answered_before_the_engine_had_it_is_never_run(engine, ct_path, monkeypatch):
    runs = []
    monkeypatch.setattr(engine.worker, "run", lambda *args: runs.append(args))
    job = engine.jobs.submit(uuid.uuid4().hex, "client:a")
    engine.jobs.abandon(job)  # MONAI Label's infer timeout answered the request while the job waited for a thread
    with pytest.raises(CancelledError, match="was not run"):
        engine.infer({"prompts": ["liver"], "modality": "ct"}, str(ct_path), job.id)
    with pytest.raises(UnknownJobError):
        engine.infer({"prompts": ["liver"], "modality": "ct"}, str(ct_path), uuid.uuid4().hex)
    assert runs == [] and engine.jobs.status(job.id)["state"] == "failed"


@pytest.fixture
def gapped_series(examples_dir, tmp_path) -> Path:
    """The example CT series with its middle slice missing."""
    import shutil

    import pydicom

    files = sorted((examples_dir / "example_ct_dicom").iterdir(),
                   key=lambda path: float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2]))
    folder = tmp_path / "gapped"
    folder.mkdir()
    for path in files[:10] + files[11:]:
        shutil.copy(path, folder / path.name)
    return folder


def test_a_pacs_series_the_server_cannot_read_is_told_apart_from_the_clients_errors(engine, gapped_series, examples_dir):
    params, series = {"prompts": ["liver"], "modality": "ct"}, str(examples_dir / "example_ct_dicom")
    outside = {**params, "roi": [5000, 5000, 5000, 5100, 5100, 5100]}
    for _ in range(2):  # the second time after a failed read: the worker's last read must not be kept as the image
        with pytest.raises(InputError, match="ROI") as roi:  # a readable series, the client's ROI outside it
            engine.infer(outside, series, series="1.2.3")
        assert roi.value.code == "bad_input" and http_error(roi.value)[1]["code"] == "bad_input"
        with pytest.raises(SeriesUnreadableError, match="cannot read series 1.2.3 from its PACS: .*slice") as caught:
            engine.infer(params, str(gapped_series), series="1.2.3")
    status, body = http_error(caught.value)
    assert status == 422 and body["code"] == "series_unreadable" and "Upload the volume" in body["hint"]
    with pytest.raises(InputError) as uploaded:  # the same files uploaded: the client's own input
        engine.infer(params, str(gapped_series))
    assert uploaded.value.code == "bad_input"


def test_satsegment_server_starts_monai_label_with_the_app():
    from SATSegmentLib.cli import build_parser
    from SATSegmentLib.labelserver.command import APP_DIR, monailabel_command

    args = build_parser().parse_args(["server", "--studies", "/data/scans", "--models", "nano,pro", "--device", "cuda",
                                      "--max-memory", "40GB"])
    command = monailabel_command(args, python="py")
    assert command[:8] == ["py", "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", "/data/scans"]
    assert command[8:] == ["--host", "127.0.0.1", "--port", "8000", "--conf", "models", "nano,pro", "--conf", "device", "cuda",
                           "--conf", "max_memory", "40GB"]
    assert (APP_DIR / "main.py").is_file()


def test_satsegment_server_without_monai_label_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    from SATSegmentLib.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "monailabel" else real(name, *a))
    assert main(["server", "--studies", "/data/scans"]) == 2
    assert "pip install 'satsegmentlib[server]'" in capsys.readouterr().err
