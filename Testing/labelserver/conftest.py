"""Fixtures of the server tests: an isolated model cache for every test and an engine serving the tiny model."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(isolated_model_home):
    return isolated_model_home


@pytest.fixture
def engine(tiny_model_dir, tmp_path, monkeypatch):
    """An `InferEngine` serving the tiny model as 'tiny', on the CPU; its temporary files go to `engine_temp`."""
    import tempfile

    from SATSegmentLib.labelserver.engine import InferEngine
    from SATSegmentLib.labelserver.params import ServerSettings

    (tmp_path / "engine-temp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "engine-temp"))

    return InferEngine(ServerSettings(models={"tiny": str(tiny_model_dir)}, device="cpu", feature_cache_mb=256))


# ---- a real MONAI Label server with the SATSegment app, on 127.0.0.1 ------------------------------

@pytest.fixture(scope="session")
def label_server(tmp_path_factory, tiny_model_dir):
    """The running server (`labelserver.testing.LabelServer`); its datastore holds 'ct' (a CT-like scan) and 'mr'."""
    import importlib.util

    import numpy as np

    from SATSegmentLib.labelserver.testing import REPO, LabelServer, ServerStartError, server_python

    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env` (creates .venv-server), "
                    "or point SATSEGMENT_SERVER_PYTHON at a Python with `pip install 'satsegmentlib[server]'`.")
    spec = importlib.util.spec_from_file_location("satsegment_testing_conftest", REPO / "Testing" / "conftest.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)  # write_volume and ct_like, the scans every test area uses
    root = tmp_path_factory.mktemp("label-server")
    studies = root / "studies"
    studies.mkdir()
    shared.write_volume(studies / "ct.nii.gz", shared.ct_like())
    shared.write_volume(studies / "mr.nii.gz", (shared.ct_like(seed=1) + 1000).clip(0, 1500).astype(np.int16))
    try:
        server = LabelServer(python, root, studies, f"tiny={tiny_model_dir}")
    except ServerStartError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()
