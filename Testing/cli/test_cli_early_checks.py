"""Checks that need no model run before torch is imported: a bad prompt, an image without foreground or an ROI
outside the image costs a fraction of a second, not the seconds of importing torch and loading a model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

PROBE = ("import sys; from SATSegmentLib.cli import main; code = main(sys.argv[1:]); "
         "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)")


def segment(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, "segment", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def scan(out_dir, volume_writer):
    write_volume, ct_like = volume_writer
    return write_volume(out_dir.parent / "ct.nii.gz", ct_like(), origin=(0.0, 0.0, 0.0))


def test_unknown_prompt_is_refused_before_torch(scan, out_dir, tiny_model_dir):
    done = segment(scan, "-p", "flux capacitor", "--modality", "ct", "--model", tiny_model_dir, "-o", out_dir / "a.seg.nrrd")
    assert done.returncode == 3 and "torch not imported" in done.stdout, done.stderr


def test_image_without_foreground_is_refused_before_torch(out_dir, tiny_model_dir, volume_writer):
    write_volume, _ = volume_writer
    dark = write_volume(out_dir.parent / "dark.nii.gz", np.full((8, 16, 16), -40, np.int16))
    done = segment(dark, "-p", "liver", "--modality", "ct", "--model", tiny_model_dir, "-o", out_dir / "a.seg.nrrd")
    assert done.returncode == 2 and "no voxel above 0" in done.stderr
    assert "torch not imported" in done.stdout


@pytest.mark.parametrize("roi, message", [([0, 0, 0, "nan", 1, 1], "Invalid ROI"),
                                          ([900, 900, 900, 950, 950, 950], "outside the image")])
def test_bad_roi_is_refused_before_torch(scan, out_dir, tiny_model_dir, roi, message):
    done = segment(scan, "-p", "liver", "--modality", "ct", "--model", tiny_model_dir, "-o", out_dir / "a.seg.nrrd",
                   "--roi", *roi)
    assert done.returncode == 2 and message in done.stderr and "torch not imported" in done.stdout
    assert list(out_dir.iterdir()) == []


def test_dicom_outputs_of_a_series_without_uids_are_refused_before_torch(examples_dir, out_dir, tiny_model_dir):
    done = segment(examples_dir / "example_ct_dicom", "-p", "liver", "--model", tiny_model_dir,
                   "--rtstruct", out_dir / "rt.dcm")
    assert done.returncode == 2 and "StudyInstanceUID" in done.stderr and "anonymised" in done.stderr, done.stderr
    assert "torch not imported" in done.stdout and list(out_dir.iterdir()) == []
