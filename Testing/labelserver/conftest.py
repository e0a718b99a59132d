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

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "SATSegmentLib" / "labelserver" / "app"
START_TIMEOUT = 180


def server_python() -> str:
    """The interpreter with MONAI Label: $SATSEGMENT_SERVER_PYTHON, the repository's .venv-server, or this one."""
    candidates = [os.environ.get("SATSEGMENT_SERVER_PYTHON"), str(REPO / ".venv-server" / "bin" / "python"), sys.executable]
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run([python, "-c", "import monailabel"], capture_output=True).returncode == 0:
            return python
    pytest.fail("MONAI Label is not installed: run `bash .ci/server-env` (creates .venv-server), "
                "or point SATSEGMENT_SERVER_PYTHON at a Python with `pip install satsegmentlib[server]`.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelServer:
    """A `monailabel start_server` process serving the tiny model from a folder datastore."""

    def __init__(self, root: Path, studies: Path, model: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "SATSEGMENT_HOME": str(root / "home"), "HOME": str(root),
               "SATSEGMENT_MODEL_URL_BASE": "http://127.0.0.1:9", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}
        command = [server_python(), "-m", "monailabel.main", "start_server", "--app", str(APP_DIR), "--studies", str(studies),
                   "--conf", "models", f"tiny={model}", "--conf", "device", "cpu", "--conf", "feature_cache_mb", "512",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=5):
                    return
            except OSError:
                time.sleep(0.5)
        self.stop()
        pytest.fail(f"the server did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def label_server(tmp_path_factory, tiny_model_dir):
    """The running server; its datastore holds 'ct' (a CT-like scan) and 'mr' (an MR-like scan)."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("satsegment_testing_conftest", REPO / "Testing" / "conftest.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)  # write_volume and ct_like, the scans every test area uses
    ct_like, write_volume = shared.ct_like, shared.write_volume
    root = tmp_path_factory.mktemp("label-server")
    studies = root / "studies"
    studies.mkdir()
    write_volume(studies / "ct.nii.gz", ct_like())
    write_volume(studies / "mr.nii.gz", (ct_like(seed=1) + 1000).clip(0, 1500).astype(np.int16))
    server = LabelServer(root, studies, tiny_model_dir)
    yield server
    server.stop()
