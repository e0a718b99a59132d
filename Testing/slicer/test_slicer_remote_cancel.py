"""Cancel and module close never wait on the network: against a server that accepts connections and never
answers, `cancel()` and `shutdown()` return at once (they are called on Slicer's GUI thread) and the run ends
within a few seconds; only the infer request waits long for its answer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from SATSegmentSlicerLib import logic, remoterunner  # noqa: E402
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError  # noqa: E402
from SATSegmentSlicerLib.remoterunner import RemoteRunner  # noqa: E402
from SATSegmentSlicerLib.runner import RunRequest  # noqa: E402

GUI_CALL_S = 0.5  # what a call on the GUI thread may take at most
RUN_TIMEOUT_S = 3600.0  # what the module gives the infer request (logic.RUN_TIMEOUT_S)


def _runner(client: LabelServerClient, tmp_path: Path) -> RemoteRunner:
    outcomes: list = []
    (tmp_path / "runs").mkdir()
    runner = RemoteRunner(client, lambda event: None, outcomes.append, str(tmp_path / "runs"))
    runner.outcomes = outcomes
    return runner


def _timed(call) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def _secondsUntilEnded(runner: RemoteRunner, limit: float) -> float:
    """Poll as the GUI's timer does until the run ended; the seconds it took."""
    started = time.monotonic()
    while runner.busy and time.monotonic() - started < limit:
        runner.poll()
        time.sleep(0.02)
    return time.monotonic() - started


def test_control_calls_give_up_after_the_short_timeout_not_the_run_timeout(silent_server):
    client = LabelServerClient(silent_server, timeout=RUN_TIMEOUT_S, control_timeout=0.5)
    for call in (client.check, lambda: client.image_info("1.2.3"), lambda: client.status("0" * 32),
                 lambda: client.cancel("0" * 32)):
        started = time.monotonic()
        with pytest.raises(RemoteError):
            call()
        assert time.monotonic() - started < 3


def test_the_modules_server_client_waits_long_only_for_the_infer_request(monkeypatch, silent_server, tmp_path):
    monkeypatch.setattr(logic, "CONNECTION_TIMEOUT_S", 0.5)
    module = logic.ModuleLogic.__new__(logic.ModuleLogic)  # only the server runner is needed, not the worker parts
    module.temporaryPath = lambda: str(tmp_path)
    client = module._serverRunner(logic.ServerChoice(silent_server)).client
    assert client.timeout == logic.RUN_TIMEOUT_S
    started = time.monotonic()
    with pytest.raises(RemoteError):
        client.status("0" * 32)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("stop", ["cancel", "shutdown"])
def test_cancel_and_close_return_at_once_and_end_the_run_soon_when_the_server_never_answers(
        stop, scene, small_ct, silent_server, tmp_path):
    runner = _runner(LabelServerClient(silent_server, timeout=RUN_TIMEOUT_S), tmp_path)  # control calls: 15 s
    runner.start(RunRequest(small_ct, ["liver"], "ct"))
    time.sleep(0.2)  # the worker thread is waiting for the server's answer
    assert _timed(getattr(runner, stop)) < GUI_CALL_S
    assert _secondsUntilEnded(runner, 30) < remoterunner.CANCEL_GRACE_S + 1
    assert [o.status for o in runner.outcomes] == ["cancelled"] and not runner.busy
    assert not list(Path(runner.tempRoot).iterdir())


def test_a_request_without_an_answer_in_time_says_so_not_that_the_server_is_unreachable(silent_server, tmp_path):
    image = tmp_path / "ct.nrrd"
    image.write_bytes(b"NRRD0004\n")
    with pytest.raises(RemoteError) as raised:
        LabelServerClient(silent_server, timeout=90.0, control_timeout=0.5).check()
    assert raised.value.code == "timed_out" and raised.value.message.endswith("gave no answer within 0.5 s.")
    with pytest.raises(RemoteError) as raised:
        LabelServerClient(silent_server, timeout=1.0).segment(["liver"], "ct", image_path=image)
    error = raised.value
    assert error.code == "timed_out" and error.message == f"{silent_server} gave no answer within 1 s."
    assert "Cannot reach" not in error.message and "address" not in error.hint and "try again later" in error.hint


def test_a_job_the_server_did_not_answer_in_time_is_cancelled_there_and_the_error_says_so(scene, ct_volume, label_server,
                                                                                         tmp_path):
    runner = _runner(LabelServerClient(label_server.url, timeout=0.3), tmp_path)  # the whole CT takes longer
    jobId = runner.start(RunRequest(ct_volume, ["liver", "spleen"], "ct"))
    runner.waitUntilFinished(120)
    [outcome] = runner.outcomes
    assert outcome.status == "error" and outcome.error["code"] == "timed_out", outcome.error
    assert outcome.error["message"] == f"{label_server.url} gave no answer within 0.3 s. The job was cancelled on the server."
    deadline = time.monotonic() + 60
    while runner.client.status(jobId)["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.client.status(jobId)["state"] == "cancelled"
