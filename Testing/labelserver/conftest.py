"""Fixtures of the server tests: an isolated model cache for every test, an engine serving the tiny model, a real
server, and helpers to follow jobs on it."""

from __future__ import annotations

import os
import threading
import time

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
def scan_writers():
    """`write_volume` and `ct_like` (the scans every test area uses) for session and module fixtures."""
    import importlib.util

    from SATSegmentLib.labelserver.testing import REPO

    spec = importlib.util.spec_from_file_location("satsegment_testing_conftest", REPO / "Testing" / "conftest.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    return shared.write_volume, shared.ct_like


def start_server(root, tiny_model_dir, scan_writers, **options):
    """A `LabelServer` serving the tiny model, its datastore in `root`/studies holding 'ct' (a CT-like scan) and 'mr'."""
    import numpy as np

    from SATSegmentLib.labelserver.testing import LabelServer, ServerStartError, server_python

    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env` (creates .venv-server), "
                    "or point SATSEGMENT_SERVER_PYTHON at a Python with `pip install 'satsegmentlib[server]'`.")
    write_volume, ct_like = scan_writers
    studies = root / "studies"
    studies.mkdir()
    write_volume(studies / "ct.nii.gz", ct_like())
    write_volume(studies / "mr.nii.gz", (ct_like(seed=1) + 1000).clip(0, 1500).astype(np.int16))
    try:
        return LabelServer(python, root, studies, f"tiny={tiny_model_dir}", **options)
    except ServerStartError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def label_server(tmp_path_factory, tiny_model_dir, scan_writers):
    """The running server (`labelserver.testing.LabelServer`); its datastore holds 'ct' and 'mr'."""
    server = start_server(tmp_path_factory.mktemp("label-server"), tiny_model_dir, scan_writers)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_starter():
    """`start_server`, for test modules that need a server of their own (other settings)."""
    return start_server


# ---- clients that wait on threads, and scans that keep the server busy -----------------------------

class Background:
    """A call (a client's blocking `segment`) on its own thread: its result or error, and when it ended."""

    def __init__(self, call) -> None:
        self.result = self.error = self.ended = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call) -> None:
        try:
            self.result = call()
        except Exception as exc:  # noqa: BLE001 - kept for the test to check
            self.error = exc
        self.ended = time.monotonic()

    def wait(self, timeout: float = 300):
        """The result (the error raised, if the call failed) once the call has ended."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the call did not end within {timeout} s"
        return self.error or self.result


def wait_until(condition, timeout: float = 120, what: str = "the condition"):
    """Poll `condition()` until it is true; its value."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture
def jobs_helpers():
    """`Background` and `wait_until`, for tests that follow jobs on a server."""
    return Background, wait_until


@pytest.fixture
def long_scan(tmp_path, volume_writer):
    """A factory of CT-like scans with random content, so no cached features shorten a job: by default one the
    tiny model needs tens of seconds for on 2 busy cores (42 windows, each a cancel point); `long_scan((16, 48, 56))`
    one of about a second (2 windows)."""
    write_volume, ct_like = volume_writer
    count = iter(range(1000))

    def make(shape=(24, 160, 200)):
        path = tmp_path / f"scan-{next(count)}.nii.gz"
        return write_volume(path, ct_like(shape, seed=int.from_bytes(os.urandom(4), "little")))

    return make
