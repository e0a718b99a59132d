"""The module's download process (`python -m SATSegmentSlicerLib.modeldownload NAME`) against a local
HTTP server standing in for the official repository: JSON progress lines, then the installed folder;
and one clear error event with the library's exit code when the server fails."""

from __future__ import annotations

import json
import subprocess

from SATSegmentSlicerLib import paths


def _download(name: str, home, url_base: str) -> tuple[int, list[dict]]:
    env = paths.workerEnvironment()
    env.update(SATSEGMENT_HOME=str(home), SATSEGMENT_MODEL_URL_BASE=url_base, SATSEGMENT_DOWNLOAD_TIMEOUT="10")
    done = subprocess.run(paths.workerCommand()[:2] + ["SATSegmentSlicerLib.modeldownload", name],
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_download_reports_progress_and_installs(hub, tmp_path):
    code, events = _download("nano", tmp_path / "home", hub.url)
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
