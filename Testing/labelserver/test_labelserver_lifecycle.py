"""A server restarted between requests answers as before (a client killed mid-request: test_labelserver_queue.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

MODULE_DIR = Path(__file__).resolve().parents[2] / "SATSegment"
sys.path.insert(0, str(MODULE_DIR))
from SATSegmentSlicerLib.remote import LabelServerClient  # noqa: E402

from SATSegmentLib.labelserver.testing import LabelServer, ServerStartError, server_python  # noqa: E402


def _start(root: Path, studies: Path, model: Path) -> LabelServer:
    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env`.")
    try:
        return LabelServer(python, root, studies, f"tiny={model}")
    except ServerStartError as exc:
        pytest.fail(str(exc))


def _labels(server: LabelServer, folder: Path, image_id: str = "ct") -> np.ndarray:
    folder.mkdir()
    result = LabelServerClient(server.url, timeout=300).segment(["liver", "spleen"], "ct", image_id=image_id)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(result.save(folder))))


def test_a_restarted_server_answers_as_before(tmp_path, tiny_model_dir, volume_writer):
    write_volume, ct_like = volume_writer
    studies = tmp_path / "studies"
    studies.mkdir()
    write_volume(studies / "ct.nii.gz", ct_like())
    server = _start(tmp_path, studies, tiny_model_dir)
    try:
        before = _labels(server, tmp_path / "before")
    finally:
        assert server.stop() is not None
    restarted = _start(tmp_path, studies, tiny_model_dir)
    try:
        np.testing.assert_array_equal(_labels(restarted, tmp_path / "after-restart"), before)
    finally:
        restarted.stop()
