"""A SATSegment MONAI Label server in a child process on 127.0.0.1, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log."""


def server_python() -> str | None:
    """An interpreter with MONAI Label: $SATSEGMENT_SERVER_PYTHON, the repository's .venv-server, or this one."""
    candidates = [os.environ.get("SATSEGMENT_SERVER_PYTHON"), str(REPO / ".venv-server" / "bin" / "python"), sys.executable]
    for python in filter(None, candidates):
        if Path(python).exists() and subprocess.run([python, "-c", "import monailabel"], capture_output=True).returncode == 0:
            return python
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelServer:
    """`satsegment server` serving `models` ('name=/folder,...') from the `studies` folder, on the CPU; `env`
    adds to its environment (e.g. MONAI Label's authentication settings)."""

    def __init__(self, python: str, root: Path, studies: Path, models: str, feature_cache_mb: float = 512,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root, self.studies = Path(root), Path(studies)
        self.log = self.root / "server.log"
        self.tmp = self.root / "server-tmp"  # the server's temporary files (uploaded scans, results)
        self.tmp.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "SATSEGMENT_HOME": str(self.root / "home"), "HOME": str(self.root),
               "SATSEGMENT_MODEL_URL_BASE": "http://127.0.0.1:9", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
               "TMPDIR": str(self.tmp), **(env or {})}
        command = [python, "-m", "SATSegmentLib", "server", "--studies", str(studies), "--models", models,
                   "--device", "cpu", "--feature-cache-mb", str(feature_cache_mb), "--port", str(self.port)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=5):
                    return
            except urllib.error.HTTPError:  # an answer all the same (401 with authentication on)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"the server did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> int:
        """Stop the server as an administrator's Ctrl+C would; returns its exit status."""
        self.process.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
