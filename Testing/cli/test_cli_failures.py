"""`satsegment` when things go wrong: a clear message and exit code, no traceback, nothing partial
left (issue "Never hang, never silently wrong")."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import slicerio

from SATSegmentLib import outputs
from SATSegmentLib.cli import main

from .test_cli_failures_outputs import _full_disk


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def segment_argv(ct_path: Path, output: Path, model: Path, *extra) -> list:
    return ["segment", ct_path, "-o", output, "--modality", "ct", "--model", model, "--device", "cpu", *extra]


def header_text(path: Path) -> str:
    return path.read_bytes().split(b"\n\n", 1)[0].decode("utf-8")


# ---- writing the outputs -----------------------------------------------------------------------

def test_full_disk_is_a_clear_error_and_leaves_nothing(ct_path, tmp_path, tiny_model_dir, capsys):
    with _full_disk(tmp_path / "full") as disk:
        code, _, err = run(segment_argv(ct_path, disk / "r.seg.nrrd", tiny_model_dir, "-p", "liver"), capsys)
        left = sorted(p.name for p in disk.iterdir())
    assert code == 2, err
    assert f"error: Not enough space to write {disk / 'r.seg.nrrd'}" in err and "Traceback" not in err
    assert left == ["filler"]


def test_sigterm_while_writing_exits_130_and_leaves_nothing(ct_path, out_dir, tiny_model_dir, monkeypatch, capsys):
    class Killed(BaseException):
        """What SIGTERM raises here if the command does not handle it (instead of killing pytest)."""

    def killed(signum, frame):
        raise Killed

    write = outputs.write_seg_nrrd

    def write_then_terminate(path, *args):
        write(path, *args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(outputs, "write_seg_nrrd", write_then_terminate)
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        code, _, err = run(segment_argv(ct_path, out_dir / "r.seg.nrrd", tiny_model_dir, "-p", "liver",
                                        "--split-dir", out_dir / "split"), capsys)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and "Interrupted; nothing was written." in err
    assert list(out_dir.iterdir()) == []


def test_failed_run_leaves_no_split_folder(ct_path, out_dir, capsys):
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                        "--model", "nano", "--split-dir", out_dir / "split"], capsys)
    assert code == 4, err  # SAT-Nano is not installed
    assert list(out_dir.iterdir()) == []


def test_split_dir_that_is_a_file_is_named_a_file(ct_path, out_dir, capsys):
    (out_dir / "masks").write_text("not a folder")
    code, _, err = run(["segment", ct_path, "-p", "liver", "-o", out_dir / "r.seg.nrrd", "--modality", "ct",
                        "--split-dir", out_dir / "masks"], capsys)
    assert code == 2 and f"The output folder {out_dir / 'masks'} is a file, not a folder." in err


def test_output_that_is_the_input_scan_is_refused(tmp_path, out_dir, volume_writer, tiny_model_dir, capsys):
    write_volume, ct_like = volume_writer
    scan = write_volume(out_dir / "scan.seg.nrrd", ct_like())
    before = scan.read_bytes()
    code, _, err = run(segment_argv(scan, scan, tiny_model_dir, "-p", "liver", "--overwrite"), capsys)
    assert code == 2 and "would replace the scan" in err
    assert scan.read_bytes() == before


# ---- non-ASCII text ----------------------------------------------------------------------------

def test_prompts_file_with_a_byte_order_mark(ct_path, out_dir, tmp_path, tiny_model_dir, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# organs\r\nliver\r\n", encoding="utf-8-sig")  # as Windows Notepad saves it
    code, _, err = run(segment_argv(ct_path, out_dir / "r.seg.nrrd", tiny_model_dir, "--prompts-file", prompts), capsys)
    assert code == 0, err
    segment = slicerio.read_segmentation(str(out_dir / "r.seg.nrrd"))["segments"][0]
    assert segment["tags"]["SATSegment.Prompt"] == "liver"


def test_non_ascii_free_text_prompt_is_written(ct_path, out_dir, tiny_model_dir, capsys):
    code, _, err = run(segment_argv(ct_path, out_dir / "r.seg.nrrd", tiny_model_dir, "-p", "肝臓", "--allow-free-text",
                                    "--split-dir", out_dir / "split"), capsys)
    assert code == 0, err
    assert "Segment0_Name:=肝臓\n" in header_text(out_dir / "r.seg.nrrd")
    assert [p.name for p in (out_dir / "split").iterdir()] == ["肝臓.nii.gz"]


def test_model_folder_under_a_non_ascii_path(ct_path, out_dir, tmp_path, tiny_model_dir, capsys):
    model = tmp_path / "modèle SAT"
    model.symlink_to(tiny_model_dir, target_is_directory=True)
    code, _, err = run(segment_argv(ct_path, out_dir / "r.seg.nrrd", model, "-p", "liver"), capsys)
    assert code == 0, err
    assert "modèle SAT|" in header_text(out_dir / "r.seg.nrrd")  # the SATSegment.Model tag


def test_text_the_console_cannot_encode_is_escaped(tmp_path, monkeypatch, capsys):
    home = tmp_path / "données"
    monkeypatch.setenv("SATSEGMENT_HOME", str(home))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # e.g. a cp1252 Windows console and a CJK path
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["models", "path"]) == 0
    assert stdout.buffer.getvalue().decode() == str(tmp_path / "donn\\xe9es") + "\n"


# ---- printing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["terms"], ["terms", "kidney", "--json"], ["models", "list"]])
def test_closed_stdout_ends_quietly(argv, tmp_path):
    """`satsegment terms | head -1`: the reader is gone before anything is written."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = subprocess.run([sys.executable, "-m", "SATSegmentLib", *argv], stdout=writer, stderr=subprocess.PIPE,
                              text=True, timeout=120, env={**os.environ, "SATSEGMENT_HOME": str(tmp_path)})
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")


def test_text_progress_prints_a_repeated_message_once(capsys):
    from SATSegmentLib.cli import TextProgress

    progress = TextProgress()
    for done in range(10):
        progress({"event": "progress", "stage": "embed_vocabulary", "current": done, "total": 10, "fraction": 0.05,
                  "elapsed": 1.0, "eta": None, "message": "embedding SAT's vocabulary"})
    progress({"event": "progress", "stage": "load", "current": 0, "total": 1, "fraction": 0.05, "elapsed": 2.0,
              "eta": None, "message": "reading the image"})
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["embed_vocabulary: embedding SAT's vocabulary (1 s)",
                                                          "load: reading the image (2 s)"]


# ---- options and queries -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-5", "lots"])
def test_feature_cache_mb_must_be_a_size(value, monkeypatch, capsys):
    from SATSegmentLib import server

    monkeypatch.setattr(server, "serve", lambda **kwargs: pytest.fail("the worker started"))
    with pytest.raises(SystemExit) as info:
        main(["serve", "--feature-cache-mb", value])
    assert info.value.code == 2
    assert f"--feature-cache-mb: expected a number of megabytes, 0 or more, not '{value}'" in capsys.readouterr().err


def test_terms_says_why_a_structure_is_missing_for_a_modality(capsys):
    code, _, err = run(["terms", "pancreas", "--modality", "pet"], capsys)
    assert code == 2 and err == "SAT knows 'pancreas' for CT and MRI but not for PET.\n"
