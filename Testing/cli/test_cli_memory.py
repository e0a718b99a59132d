"""Memory budgets end to end: --max-memory, --precision auto, the CPU fall-back, refusals before the model
loads, and the worker's cache report taken from the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from SATSegmentLib import budget
from SATSegmentLib.cli import main
from SATSegmentLib.errors import InputError, OutOfMemoryError
from SATSegmentLib.job import SegmentRequest, Worker
from SATSegmentLib.model import SATConfig, resolve_device


def run_json(argv, capsys) -> tuple[int, list[dict]]:
    code = main([str(a) for a in argv] + ["--progress", "json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def gpu_present(monkeypatch):
    """Pretend a CUDA GPU is there (the device query is mocked; no maths runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def free(bytes_free):
        monkeypatch.setattr(budget, "free_gpu_memory", lambda device: bytes_free)
    return free


# ---- sizes and precision ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("4.5GB", 4_500_000_000), ("4500MB", 4_500_000_000), ("3GiB", 3 * 2**30),
                                            (" 2 gb ", 2_000_000_000), ("1e9", 10**9), (2_000_000_000, 2_000_000_000)])
def test_memory_sizes_are_read_with_their_units(text, expected):
    assert budget.parse_size(text) == expected


@pytest.mark.parametrize("text", ["4.5 apples", "GB", "-3GB", "nan", "inf", "10MB", True, ""])
def test_bad_memory_sizes_are_refused_with_an_example(text):
    with pytest.raises(InputError, match="4.5GB"):
        budget.parse_size(text)


def test_auto_precision_is_fp16_when_cuda_is_there(gpu_present):
    gpu_present(80e9)
    device = resolve_device("auto")
    run = budget.plan_run(SATConfig.nano(), device, "auto", 5)
    assert (device.type, run.device.type, run.precision) == ("cuda", "cuda", "fp16")
    assert run.estimate.plan.name == "plain" and not run.warnings  # the GPU has room: the fastest plan


def test_auto_precision_is_fp32_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = budget.plan_run(SATConfig.nano(), resolve_device("auto"), "auto", 5, max_memory=20e9)
    assert (run.device.type, run.precision, run.estimate.plan.name) == ("cpu", "fp32", "lean")


# ---- device choice -------------------------------------------------------------------------------

def test_a_small_gpu_takes_the_lean_plan(gpu_present):
    gpu_present(4e9)
    run = budget.plan_run(SATConfig.nano(), resolve_device("auto"), "auto", 5)
    assert run.device.type == "cuda" and run.estimate.plan.name == "lean" and run.estimate.needed <= 4e9


def test_a_gpu_too_small_falls_back_to_the_cpu_with_a_warning(gpu_present):
    gpu_present(0.5e9)
    run = budget.plan_run(SATConfig.nano(), resolve_device("auto"), "auto", 5, device_requested="auto")
    assert (run.device.type, run.precision) == ("cpu", "fp32")
    (warning,) = run.warnings
    assert "GPU cannot hold" in warning and "0.5 GB of GPU memory" in warning and "CPU" in warning


def test_an_explicit_gpu_too_small_is_refused_with_the_numbers(gpu_present):
    gpu_present(0.5e9)
    with pytest.raises(OutOfMemoryError, match=r"needs \d+\.\d GB .*0\.5 GB of GPU memory") as error:
        budget.plan_run(SATConfig.nano(), resolve_device("cuda"), "auto", 5, device_requested="cuda")
    assert error.value.exit_code == 5


def test_max_memory_caps_the_gpu_budget(gpu_present):
    gpu_present(80e9)
    run = budget.plan_run(SATConfig.pro(), resolve_device("cuda"), "auto", 5, max_memory=8e9, device_requested="cuda")
    assert run.estimate.plan.name == "lean" and run.estimate.needed <= 8e9


# ---- the command line ----------------------------------------------------------------------------

def test_max_memory_is_reported_and_respected(ct_path, out_dir, tiny_model_dir, capsys):
    code, events = run_json(["segment", ct_path, "-p", "liver", "-o", out_dir / "a.seg.nrrd", "--modality", "ct",
                             "--model", tiny_model_dir, "--device", "cpu", "--max-memory", "2GB"], capsys)
    assert code == 0
    memory = events[-1]["memory"]
    assert memory["budget_mb"] <= 2e9 / 2**20 and 0 < memory["estimate_mb"] <= memory["budget_mb"]
    assert memory["plan"].startswith("lean") and events[-1]["precision"] == "fp32"


def test_a_volume_that_cannot_fit_is_refused_before_the_model_loads(out_dir, tiny_model_dir, volume_writer, capsys):
    """100×100×50 voxels at 20 mm resample to ~1.3 billion voxels of SAT's 1×1×3 mm grid (tens of GB)."""
    write_volume, ct_like = volume_writer
    huge = write_volume(out_dir.parent / "coarse.nii.gz", ct_like((50, 100, 100)), spacing=(20.0, 20.0, 20.0))
    code, events = run_json(["segment", huge, "-p", "liver", "-o", out_dir / "a.seg.nrrd", "--modality", "ct",
                             "--model", tiny_model_dir, "--device", "cpu"], capsys)
    error = events[-1]
    assert code == 5 and error["event"] == "error" and error["code"] == "out_of_memory"
    assert "needs" in error["message"] and "preprocessing" in error["message"] and "GB of RAM free" in error["message"]
    assert not any(e.get("stage") == "load_model" for e in events)
    assert list(out_dir.iterdir()) == []


def test_bad_max_memory_is_a_bad_input(ct_path, out_dir, tiny_model_dir, capsys):
    code = main(["segment", str(ct_path), "-p", "liver", "-o", str(out_dir / "a.seg.nrrd"), "--modality", "ct",
                 "--model", str(tiny_model_dir), "--max-memory", "lots"])
    assert code == 2 and "not a memory size" in capsys.readouterr().err


# ---- the worker's cache report -------------------------------------------------------------------

def test_cache_report_counts_real_cache_hits_only(tiny_model_dir, out_dir, volume_writer):
    """A follow-up whose ROI covers only windows that were never cached reuses none of them (the report used
    to say 'reused' for as many windows as the cache held)."""
    write_volume, ct_like = volume_writer
    # LPS origin 0: voxel (i, j, k) lies at RAS (-i, -j, 3k) mm
    scan = write_volume(out_dir.parent / "wide.nii.gz", ct_like((16, 160, 200)), spacing=(1.0, 1.0, 3.0),
                        origin=(0.0, 0.0, 0.0))
    one_window = 8 * 64 * 64 * 32 * 4 + 2**20   # the tiny model's pixel features plus tokens, with room
    worker = Worker(feature_cache_mb=2 * one_window / 2**20)
    centre, edge = [-110, -90, 0, -90, -70, 45], [-30, -90, 0, -20, -70, 45]

    def job(name, roi):
        request = SegmentRequest(input=str(scan), prompts=["liver"], output=str(out_dir / f"{name}.seg.nrrd"),
                                 modality="ct", model=str(tiny_model_dir), device="cpu", roi=roi)
        return worker.run(request, lambda event: None)["cache"]

    first = job("first", centre)
    assert first["backbone_windows_computed"] > 2 and first["backbone_windows_reused"] == 0
    assert 0 < first["feature_cache_mb"] <= first["feature_cache_cap_mb"]
    other = job("other", edge)  # windows that were never cached (the cache is full with two central ones)
    assert other["preprocessed_volume"] is True
    assert other["backbone_windows_reused"] == 0 and other["backbone_windows_computed"] >= 1
    again = job("again", centre)
    assert again["backbone_windows_reused"] == 2
    assert again["backbone_windows_computed"] == first["backbone_windows_computed"] - 2
