"""`satsegment` command line: help, bad input of every kind (message, exit code, no partial output), real runs."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from SATSegmentLib.cli import main


REPO = Path(__file__).resolve().parents[2]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_nothing_written(folder: Path) -> None:
    assert list(folder.iterdir()) == [], f"left behind: {list(folder.iterdir())}"


@pytest.mark.parametrize("argv", [[], ["segment"], ["terms"], ["models"], ["models", "download"], ["models", "import"], ["serve"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: satsegment")
    assert "Exit codes" in out


# ---- bad images: exit 2 before any model is needed (the model cache is empty) ---------------------

def _corrupt_gzip(tmp_path, write_volume, ct_like):
    path = write_volume(tmp_path / "corrupt.nii.gz", ct_like())  # a real scan, truncated mid-stream
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert gzip.decompress(data)  # the untruncated file was fine
    return path


def _image_2d(tmp_path, *helpers):
    path = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16)), str(path))
    return path


def _image_4d(tmp_path, *helpers):
    path = tmp_path / "time.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 20, 20), np.int16), isVector=False), str(path))
    return path


def _zero_size(tmp_path, *helpers):
    path = tmp_path / "empty.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 20 20 0\nencoding: raw\n\n")
    return path


def _nan_voxels(tmp_path, write_volume, ct_like):
    array = ct_like().astype(np.float32)
    array[3, 10, 10] = np.nan
    array[4, 11, 11] = np.inf
    return write_volume(tmp_path / "nan.nrrd", array)


def _nan_voxels_nifti(tmp_path, write_volume, ct_like):
    """ITK's NIfTI reader silently turns NaN and Inf into 0: the check must not rely on it."""
    array = ct_like().astype(np.float32)
    array[3, 10, 10] = np.nan
    return write_volume(tmp_path / "nan.nii.gz", array)


def _absurd_spacing(tmp_path, write_volume, ct_like):
    return write_volume(tmp_path / "huge.nii.gz", ct_like(), spacing=(1.5, 1.5, 5000.0))


@pytest.mark.parametrize("make, message", [
    (lambda tmp, *helpers: tmp / "does-not-exist.nii.gz", "not found"),
    (_corrupt_gzip, ""),
    (_image_2d, "2D"),
    (_image_4d, ""),
    (_zero_size, ""),
    (_nan_voxels, "NaN"),
    (_nan_voxels_nifti, "NaN"),
    (_absurd_spacing, "spacing"),
])
def test_bad_images_exit_2_without_output(make, message, tmp_path, out_dir, volume_writer, tiny_model_dir, capsys):
    path = make(tmp_path, *volume_writer)
    code, out, err = run(["segment", path, "--prompt", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "auto",
                          "--model", tiny_model_dir], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and "hint: " in err
    assert message.lower() in err.lower()
    assert_nothing_written(out_dir)


def test_auto_modality_refuses_nifti(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--model", tiny_model_dir], capsys)
    assert code == 2 and "--modality ct" in err
    assert_nothing_written(out_dir)


@pytest.mark.parametrize("prompts, message", [
    ([], "No prompts"),
    (["x" * 10_000], "10000 characters"),
    (["   "], "empty"),
])
def test_bad_prompts_exit_2(prompts, message, ct_path, out_dir, capsys):
    argv = ["segment", ct_path, "-o", out_dir / "r.seg.nrrd", "--modality", "ct"]
    for prompt in prompts:
        argv += ["--prompt", prompt]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err
    assert_nothing_written(out_dir)


def test_prompts_file_is_read(ct_path, out_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# organs\n\n" + "y" * 300 + "\n")
    code, _, err = run(["segment", ct_path, "--prompts-file", prompts, "-o", out_dir / "r.seg.nrrd", "--modality", "ct"], capsys)
    assert code == 2 and "300 characters" in err


def test_output_folder_missing(ct_path, tmp_path, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", tmp_path / "nope" / "r.seg.nrrd", "--modality", "ct"], capsys)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "nope").exists()


def test_output_folder_read_only(ct_path, tmp_path, monkeypatch, capsys):
    from SATSegmentLib import outputs

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root ignores permissions: make the write probe fail as it does for users
        monkeypatch.setattr(outputs.tempfile, "TemporaryFile", lambda **kw: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    try:
        code, _, err = run(["segment", ct_path, "-p", "liver", "-o", folder / "r.seg.nrrd", "--modality", "ct"], capsys)
    finally:
        folder.chmod(0o700)
    assert code == 2 and "Cannot write" in err
    assert_nothing_written(folder)


def test_existing_output_is_kept(ct_path, out_dir, capsys):
    existing = out_dir / "r.seg.nrrd"
    existing.write_text("precious")
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", existing, "--modality", "ct"], capsys)
    assert code == 2 and "--overwrite" in err
    assert existing.read_text() == "precious"


def test_cuda_on_cpu_machine_exit_7(ct_path, out_dir, tiny_model_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct", "--device", "cuda",
                        "--model", tiny_model_dir], capsys)
    assert code == 7 and "--device cpu" in err
    assert_nothing_written(out_dir)


def test_model_not_installed_says_how_to_get_it(ct_path, out_dir, tmp_path, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct", "--model", "nano"], capsys)
    assert code == 4 and "satsegment models download nano" in err
    assert_nothing_written(out_dir)
    # --download is needed to fetch, and a bad image is reported before any download starts
    code, _, err = run(["segment", tmp_path / "missing.nii.gz", "-p", "liver", "-o", out_dir / "r.seg.nrrd",
                        "--modality", "ct", "--download"], capsys)
    assert code == 2 and "not found" in err


def test_corrupt_model_files_exit_4(ct_path, out_dir, tiny_model_dir, tmp_path, capsys):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    data = (broken / "segmentation.pth").read_bytes()
    (broken / "segmentation.pth").write_bytes(data[: len(data) // 3])
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct", "--model", broken], capsys)
    assert code == 4, err
    assert_nothing_written(out_dir)
    (broken / "text_encoder.pth").unlink()
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct", "--model", broken], capsys)
    assert code == 4, err


def test_checkpoint_flags_need_each_other(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                        "--checkpoint", tiny_model_dir / "segmentation.pth"], capsys)
    assert code == 2 and "--text-encoder-checkpoint" in err


def test_unknown_term_exit_3_with_suggestions(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver tumour x", "-o", out_dir / "r.seg.nrrd", "--modality", "ct", "--model", tiny_model_dir], capsys)
    assert code == 3 and "--allow-free-text" in err
    assert "did you mean: liver" in err
    assert_nothing_written(out_dir)


# ---- real runs with the tiny model -------------------------------------------------------------

def test_segment_writes_slicer_segmentation(ct_path, out_dir, tiny_model_dir, capsys):
    output = out_dir / "r.seg.nrrd"
    code, out, err = run(["segment", ct_path, "-p", "Liver", "-p", "left kidney", "-p", "liver", "-o", output,
                          "--modality", "ct", "--model", tiny_model_dir, "--device", "cpu", "--split-dir", out_dir / "split"], capsys)
    assert code == 0, err
    assert "segmented once" in err  # 'Liver' and 'liver' are one term
    seg = slicerio.read_segmentation(str(output))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["liver", "left kidney"]
    liver = slicerio.segment_from_name(seg, "liver")
    assert liver["tags"]["SATSegment.Prompt"] == "Liver"
    reference = sitk.ReadImage(str(ct_path))
    np.testing.assert_allclose(seg["ijkToLPS"][:3, 3], reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(np.diag(seg["ijkToLPS"])[:3], reference.GetSpacing(), atol=1e-5)
    assert seg["voxels"].shape[-3:] == reference.GetSize()
    split = sorted(p.name for p in (out_dir / "split").iterdir())
    assert split == ["left_kidney.nii.gz", "liver.nii.gz"]
    mask = sitk.ReadImage(str(out_dir / "split" / "liver.nii.gz"))
    assert mask.GetSize() == reference.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask).transpose(2, 1, 0) > 0, slicerio.segment_mask(seg, "liver"))
    assert "wrote" in out and ("EMPTY" in out or " ml" in out)
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.seg.nrrd", "split"]  # no temp files


def test_progress_json_and_modality_warning(mr_path, out_dir, tiny_model_dir, capsys):
    code, out, err = run(["segment", mr_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                          "--model", tiny_model_dir, "--progress", "json"], capsys)
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and "progress" in kinds
    assert any(e["event"] == "warning" and "Hounsfield" in e["message"] for e in events)
    inference = [e for e in events if e["event"] == "progress" and e["stage"] == "inference"]
    assert inference and inference[-1]["current"] == inference[-1]["total"]
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] == 1.0
    result = events[-1]
    assert result["segments"][0]["term"] == "liver" and isinstance(result["segments"][0]["volume_ml"], float)
    assert result["outputs"]["segmentation"] == str(out_dir / "r.seg.nrrd")


def test_free_text_runs_only_when_allowed(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "purple banana", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                        "--model", tiny_model_dir, "--allow-free-text"], capsys)
    assert code == 0, err
    assert "warning:" in err and "free text" in err
    assert slicerio.read_segmentation(str(out_dir / "r.seg.nrrd"))["segments"][0]["name"] == "purple banana"


def test_overwrite_replaces_existing(ct_path, out_dir, tiny_model_dir, capsys):
    existing = out_dir / "r.seg.nrrd"
    existing.write_text("old")
    code, _, err = run(["segment", ct_path, "-p", "spleen", "-o", existing, "--modality", "ct", "--model", tiny_model_dir, "--overwrite"], capsys)
    assert code == 0, err
    assert slicerio.read_segmentation(str(existing))["segments"][0]["name"] == "spleen"


def test_console_entry_subprocess(ct_path, out_dir, tiny_model_dir, tmp_path):
    env = {**os.environ, "SATSEGMENT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "SATSegmentLib", "segment", str(ct_path), "-p", "liver", "-o",
                         str(out_dir / "r.seg.nrrd"), "--modality", "ct", "--model", str(tiny_model_dir), "--progress", "none"],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (out_dir / "r.seg.nrrd").is_file()
    bad = subprocess.run([sys.executable, "-m", "SATSegmentLib", "segment", str(ct_path), "-p", "liver",
                          "-o", str(out_dir / "x.seg.nrrd"), "--modality", "ct"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 4 and "satsegment models download nano" in bad.stderr


def test_help_and_models_list_do_not_import_torch(tmp_path):
    code = ("import sys; from SATSegmentLib.cli import main; "
            "main(['models', 'list']); assert 'torch' not in sys.modules and 'SimpleITK' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SATSEGMENT_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "SAT-Nano" in done.stdout and "not installed" in done.stdout


def test_dicom_series_auto_modality(examples_dir):
    from SATSegmentLib.imageio import resolve_modality
    from SATSegmentLib.job import Worker

    image, meta = Worker().read(str(examples_dir / "example_ct_dicom"))
    assert resolve_modality("auto", meta) == "ct"
    assert image.GetSize()[2] == 20


def test_roi_limits_masks_to_the_box(ct_path, out_dir, tiny_model_dir, capsys):
    reference = sitk.ReadImage(str(ct_path))
    # RAS box covering the lower half of the volume in x (voxel x index < 28): LPS x = -RAS x
    corner_lps = np.array(reference.TransformIndexToPhysicalPoint((27, 47, 15)))
    origin_lps = np.array(reference.GetOrigin())
    x_ras = sorted([-origin_lps[0], -corner_lps[0]])
    y_ras = sorted([-origin_lps[1], -corner_lps[1]])
    roi = [x_ras[0], y_ras[0], origin_lps[2], x_ras[1], y_ras[1], corner_lps[2]]
    code, out, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "roi.seg.nrrd", "--modality", "ct",
                          "--model", tiny_model_dir, "--roi", *roi, "--split-dir", out_dir / "split"], capsys)
    assert code == 0, err
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "split" / "liver.nii.gz")))  # (z, y, x)
    assert mask.shape == (16, 48, 56)
    assert not mask[:, :, 29:].any()  # nothing beyond the box (one voxel of tolerance for the box edge)


def test_auto_modality_follows_the_dicom_tag_and_explicit_names_win():
    from SATSegmentLib.imageio import resolve_modality

    assert resolve_modality("auto", {"modality": "PT"}) == "pet"
    assert resolve_modality("MRI", {"modality": "CT"}) == "mri"


def test_unexpected_errors_map_to_user_errors():
    from SATSegmentLib.errors import as_user_error

    assert as_user_error(MemoryError()).exit_code == 5
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2 GiB")
    assert as_user_error(oom).code == "out_of_memory" and "--roi" in as_user_error(oom).hint
    internal = as_user_error(ValueError("boom"))
    assert internal.exit_code == 1 and "boom" in internal.message and "report" in internal.hint


def test_existing_split_file_is_refused_before_compute(ct_path, out_dir, tiny_model_dir, capsys):
    split = out_dir / "split"
    split.mkdir()
    (split / "liver.nii.gz").write_text("mine")
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                        "--model", tiny_model_dir, "--split-dir", split], capsys)
    assert code == 2 and "liver.nii.gz already exists" in err
    assert (split / "liver.nii.gz").read_text() == "mine"
    assert sorted(p.name for p in out_dir.iterdir()) == ["split"]


def test_first_use_of_a_model_embeds_the_whole_vocabulary_once(ct_path, out_dir, tiny_model_dir, tmp_path, capsys):
    from SATSegmentLib import vocabulary
    from SATSegmentLib.model import load_model_folder

    model = tmp_path / "fresh-model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("text_embeddings", "fingerprints.json"))

    def embedding_stages(output: str) -> list[dict]:
        return [e for e in map(json.loads, output.splitlines()) if e.get("stage") == "embed_vocabulary"]

    argv = ["segment", ct_path, "-p", "spleen", "--modality", "ct", "--model", model, "--progress", "json"]
    code, out, err = run(argv + ["-o", out_dir / "first.seg.nrrd"], capsys)
    assert code == 0, err
    pairs = [(t.term, m) for t in vocabulary.terms() for m in t.modalities]
    assert embedding_stages(out)[-1]["current"] == len(pairs) == 498
    cached = load_model_folder(model, "cpu").embeddings
    assert [p for p in pairs if cached.get(*p) is None] == []
    code, out, err = run(argv + ["-o", out_dir / "second.seg.nrrd"], capsys)
    assert code == 0, err
    assert embedding_stages(out) == []


def test_precision_option(ct_path, out_dir, tiny_model_dir, capsys):
    base = ["segment", ct_path, "-p", "spleen", "--modality", "ct", "--model", tiny_model_dir, "--device", "cpu"]
    code, _, err = run(base + ["-o", out_dir / "fp16.seg.nrrd", "--precision", "fp16"], capsys)
    assert code == 2 and "fp16 autocast needs a CUDA GPU" in err and "hint: " in err
    assert_nothing_written(out_dir)
    code, out, err = run(base + ["-o", out_dir / "bf16.seg.nrrd", "--precision", "bf16", "--progress", "json"], capsys)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["event"] == "result"
    assert (out_dir / "bf16.seg.nrrd").is_file()


def test_worker_reads_the_image_once_per_job(ct_path, out_dir, tiny_model_dir, monkeypatch):
    """The worker validates the image before loading the model; the pipeline must reuse that read."""
    from SATSegmentLib import imageio, pipeline
    from SATSegmentLib.job import SegmentRequest, Worker

    calls = []
    real = imageio.read_image
    for module in (imageio, pipeline):
        monkeypatch.setattr(module, "read_image", lambda path, **kw: calls.append(path) or real(path, **kw))
    worker = Worker(feature_cache_mb=64)
    for n, prompt in enumerate(["liver", "spleen"]):
        request = SegmentRequest(input=str(ct_path), prompts=[prompt], output=str(out_dir / f"r{n}.seg.nrrd"),
                                 modality="ct", model=str(tiny_model_dir), device="cpu")
        result = worker.run(request, lambda event: None)
    assert len(calls) == 1  # first job reads once, the follow-up on the unchanged file not at all
    assert result["cache"]["preprocessed_volume"] is True
