"""The module's download process (`python -m SATSegmentSlicerLib.modeldownload NAME`) against a local
HTTP server standing in for the official repository: JSON progress lines, then the installed folder;
and one clear error event with the library's exit code when the server fails."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import threading

import pytest

from SATSegmentLib import modelstore
from SATSegmentLib.model.config import SATConfig
from SATSegmentLib.model.testing import write_shape_only_segmentation, write_shape_only_text_encoder
from SATSegmentSlicerLib import paths


class _HubHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the SHA-256 in `X-Linked-Etag`, as the official hub publishes it."""

    def end_headers(self):
        path = self.translate_path(self.path)
        try:
            with open(path, "rb") as f:
                self.send_header("X-Linked-Etag", hashlib.sha256(f.read()).hexdigest())
        except OSError:
            pass
        super().end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path):
    """Serves the registry's file paths for SAT-Nano from a folder, on 127.0.0.1 (shape-only files:
    a download is loaded strictly before it is installed)."""
    root = tmp_path / "hub"
    files = modelstore.registry()["nano"]["files"]
    write_shape_only_segmentation(root / files["segmentation.pth"]["path"], SATConfig.nano())
    write_shape_only_text_encoder(root / files["text_encoder.pth"]["path"], SATConfig.nano())
    handler = functools.partial(_HubHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _download(name: str, home, url_base: str) -> tuple[int, list[dict]]:
    env = paths.workerEnvironment()
    env.update(SATSEGMENT_HOME=str(home), SATSEGMENT_MODEL_URL_BASE=url_base, SATSEGMENT_DOWNLOAD_TIMEOUT="10")
    done = subprocess.run(paths.workerCommand()[:2] + ["SATSegmentSlicerLib.modeldownload", name],
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_download_reports_progress_and_installs(hub, tmp_path):
    code, events = _download("nano", tmp_path / "home", hub)
    assert code == 0, events
    assert events[-1]["event"] == "result"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["current"] <= e["total"] for e in progress if e["total"])
    assert (tmp_path / "home" / "models" / "nano" / "manifest.json").is_file()
    assert events[-1]["path"] == str(tmp_path / "home" / "models" / "nano")


def test_download_failure_is_one_error_event_with_the_exit_code(tmp_path):
    code, events = _download("nano", tmp_path / "home", "http://127.0.0.1:9/nothing-listens-here")
    assert code == 6 and events[-1]["event"] == "error" and events[-1]["code"] == "download_error"
    assert events[-1]["message"] and events[-1]["hint"]
    code, events = _download("giant", tmp_path / "home", "http://127.0.0.1:9")
    assert code == 2 and [(e["event"], e["code"]) for e in events] == [("error", "bad_input")]
