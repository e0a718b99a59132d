"""`satsegment serve` as a real subprocess: protocol robustness, progress, caches, cancel, shutdown."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import slicerio


def _sigint_as_in_a_terminal() -> None:
    """Ctrl+C's default in the worker, even when the test run itself was started in the background (where a
    shell ignores SIGINT, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class WorkerProcess:
    """A `python -m SATSegmentLib serve` child with threads collecting its JSON replies and its stderr.

    The pipes are binary, so that the tests see the bytes the worker reads and writes."""

    def __init__(self, env: dict, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "SATSegmentLib", "serve", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_sigint_as_in_a_terminal)
        self.events: queue.Queue = queue.Queue()
        self.stdout: list[bytes] = []
        self.non_json: list[bytes] = []
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            try:
                self.events.put(json.loads(line))
            except ValueError:  # not JSON, or not UTF-8
                self.non_json.append(line)

    def send(self, message: dict | str | bytes) -> None:
        """Write one request line: a dict as JSON, a str as UTF-8, bytes as they are."""
        data = message if isinstance(message, bytes) else (message if isinstance(message, str) else json.dumps(message)).encode()
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 120) -> dict:
        return self.events.get(timeout=timeout)

    def until(self, predicate, timeout: float = 180) -> list[dict]:
        """Events up to and including the first one matching `predicate`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if predicate(event):
                return seen


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "SATSEGMENT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
            "SATSEGMENT_MODEL_URL_BASE": "http://127.0.0.1:9"}


@pytest.fixture
def spawn(env):
    """`spawn(**extra_env)` starts a worker; those still running when the test ends are killed."""
    workers = []

    def spawn(**extra_env: str) -> WorkerProcess:
        workers.append(WorkerProcess({**env, **extra_env}))
        return workers[-1]
    yield spawn
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()


def _final(job_id):
    return lambda e: e.get("id") == job_id and e["event"] in ("result", "error", "cancelled")


def test_worker_session(env, ct_path, out_dir, tmp_path, tiny_model_dir, volume_writer):
    write_volume, ct_like = volume_writer
    big = write_volume(tmp_path / "big.nii.gz", ct_like(shape=(48, 160, 160), seed=1), spacing=(1.0, 1.0, 3.0))
    worker = WorkerProcess(env)
    options = {"model": str(tiny_model_dir), "device": "cpu"}
    try:
        # malformed input never crashes the worker
        worker.send("this is not json")
        worker.send("[1, 2]")
        worker.send({"type": "explode", "id": "x"})
        worker.send({"type": "segment", "id": "s0", "prompts": ["liver"]})
        worker.send({"type": "segment", "id": "s00", "input": str(ct_path), "prompts": ["liver"], "output": "o.seg.nrrd",
                     "options": {"overwrite": "yes"}})
        errors = [worker.next() for _ in range(5)]
        assert [e["event"] for e in errors] == ["error"] * 5
        assert [e["id"] for e in errors] == [None, None, "x", "s0", "s00"]
        assert all(e["code"] == "bad_request" and e["exit_code"] == 2 and e["message"] for e in errors)

        worker.send({"type": "ping", "id": "p1"})
        pong = worker.next()
        assert pong == {"event": "pong", "id": "p1", "version": pong["version"], "busy": None}

        # first request: everything computed
        first_out = out_dir / "first.seg.nrrd"
        worker.send({"type": "segment", "id": "s1", "input": str(ct_path), "prompts": ["liver"], "output": str(first_out),
                     "modality": "ct", "options": options})
        events = worker.until(_final("s1"))
        assert events[0] == {"event": "accepted", "id": "s1"}
        result = events[-1]
        assert result["event"] == "result", result
        progress = [e for e in events if e["event"] == "progress"]
        inference = [e for e in progress if e["stage"] == "inference"]
        assert inference and inference[-1]["current"] == inference[-1]["total"] >= 1
        assert all({"elapsed", "eta", "fraction", "message"} <= set(e) for e in progress)
        assert result["cache"]["preprocessed_volume"] is False and result["cache"]["backbone_windows_computed"] >= 1
        assert result["outputs"]["segmentation"] == str(first_out) and first_out.is_file()
        assert result["segments"][0]["term"] == "liver"

        # follow-up on the same volume with three new prompts: no backbone at all
        second_out = out_dir / "second.seg.nrrd"
        worker.send({"type": "segment", "id": "s2", "input": str(ct_path), "prompts": ["spleen", "left kidney", "aorta"],
                     "output": str(second_out), "modality": "ct", "options": options})
        result2 = worker.until(_final("s2"))[-1]
        assert result2["event"] == "result", result2
        assert result2["cache"]["preprocessed_volume"] is True
        assert result2["cache"]["backbone_skipped"] is True and result2["cache"]["backbone_windows_computed"] == 0
        names = [s["name"] for s in slicerio.read_segmentation(str(second_out))["segments"]]
        assert names == ["spleen", "left kidney", "aorta"]

        # cancel mid-job (and ping while busy): no output
        cancelled_out = out_dir / "cancelled.seg.nrrd"
        worker.send({"type": "segment", "id": "s3", "input": str(big), "prompts": ["liver"], "output": str(cancelled_out),
                     "modality": "ct", "options": options})
        events = worker.until(lambda e: e.get("id") == "s3" and e.get("stage") == "inference")
        worker.send({"type": "ping", "id": "p2"})
        worker.send({"type": "cancel", "id": "c1", "target": "s3"})
        events += worker.until(_final("s3"))
        pongs = [e for e in events if e["event"] == "pong"]
        assert pongs and pongs[0]["busy"] == "s3"
        assert events[-1]["event"] == "cancelled"
        windows = [e for e in events if e.get("stage") == "inference"]
        assert windows[-1]["current"] < windows[-1]["total"]
        assert not cancelled_out.exists()
        assert sorted(p.name for p in out_dir.iterdir()) == ["first.seg.nrrd", "second.seg.nrrd"]

        # an error reply carries the user-facing code and hint; the worker carries on
        worker.send({"type": "segment", "id": "s4", "input": str(tmp_path / "missing.nii.gz"), "prompts": ["liver"],
                     "output": str(out_dir / "x.seg.nrrd"), "modality": "ct", "options": options})
        error = worker.until(_final("s4"))[-1]
        assert error["event"] == "error" and error["code"] == "bad_input" and error["exit_code"] == 2 and error["hint"]

        worker.send({"type": "cancel", "id": "c2", "target": "nothing"})
        assert worker.next()["event"] == "error"

        worker.send({"type": "shutdown", "id": "bye1"})
        assert worker.until(lambda e: e["event"] == "bye")[-1]["id"] == "bye1"
        assert worker.proc.wait(timeout=30) == 0
        assert worker.non_json == []
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()


def test_end_of_input_shuts_down(env):
    worker = WorkerProcess(env, "--feature-cache-mb", "0")
    worker.send({"type": "ping", "id": 7})
    assert worker.next()["event"] == "pong"
    worker.proc.stdin.close()
    assert worker.next() == {"event": "bye", "id": None}
    assert worker.proc.wait(timeout=30) == 0


def test_ctrl_c_cancels_the_running_job_and_ends_the_worker(spawn, tmp_path, out_dir, tiny_model_dir, volume_writer):
    """Ctrl+C in the terminal running `satsegment serve`: the job is answered `cancelled`, nothing is written,
    and the worker exits 130 with one line on stderr, not an internal-error reply and a traceback."""
    write_volume, ct_like = volume_writer
    big = write_volume(tmp_path / "big.nii.gz", ct_like(shape=(48, 160, 160), seed=1), spacing=(1.0, 1.0, 3.0))
    worker = spawn()
    worker.send({"type": "segment", "id": "s", "input": str(big), "prompts": ["liver"], "modality": "ct",
                 "output": str(out_dir / "never.seg.nrrd"), "options": {"model": str(tiny_model_dir), "device": "cpu"}})
    worker.until(lambda e: e.get("id") == "s" and e.get("stage") == "inference")
    worker.proc.send_signal(signal.SIGINT)
    assert worker.until(_final("s"), timeout=60)[-1] == {"event": "cancelled", "id": "s"}
    assert worker.proc.wait(timeout=30) == 130
    assert list(out_dir.iterdir()) == []
    deadline = time.monotonic() + 10
    while b"Interrupted" not in b"".join(worker.stderr) and time.monotonic() < deadline:
        time.sleep(0.1)
    stderr = b"".join(worker.stderr).decode()
    assert "Interrupted" in stderr and "Traceback" not in stderr


POISON_LINES = {
    "type is a list": b'{"type": ["ping"], "id": "t"}',
    "type is an object": b'{"type": {"ping": 1}, "id": "t"}',
    "100,000 nested brackets": b"[" * 100_000,
    "an integer of 5,000 digits": b'{"type": "ping", "id": ' + b"1" * 5000 + b"}",
    "cancel target is a list": b'{"type": "cancel", "id": "c", "target": [1]}',
    "invalid UTF-8": b'{"type": "ping", "id": "\xff"}',
}


@pytest.mark.parametrize("line", POISON_LINES.values(), ids=POISON_LINES.keys())
def test_a_poison_line_gets_an_error_and_the_worker_carries_on(spawn, line):
    worker = spawn()
    worker.send(line)
    worker.send({"type": "ping", "id": "after"})
    assert worker.next(timeout=15)["event"] == "error"
    assert worker.next(timeout=15)["id"] == "after"
    worker.proc.stdin.close()
    assert worker.next(timeout=15) == {"event": "bye", "id": None}
    assert worker.proc.wait(timeout=30) == 0


def test_non_ascii_round_trips_whatever_the_locale(spawn, tmp_path):
    worker = spawn(PYTHONIOENCODING="latin-1", PYTHONUTF8="0", LC_ALL="C")
    name = "π-ü-日本"
    worker.send(f'{{"type": "ping", "id": "{name}"}}')  # raw UTF-8
    worker.send({"type": "ping", "id": name})  # \u escapes
    output = str(tmp_path / f"{name}.nrrd")  # the wrong suffix: the job refuses it, naming the path
    worker.send({"type": "segment", "id": name + "-1", "input": "in.nii.gz", "prompts": ["liver"], "output": output})
    worker.send({"type": "segment", "id": name + "-2", "input": "in.nii.gz", "prompts": [name * 30], "output": output})
    pongs = [worker.next(timeout=15), worker.next(timeout=15)]
    assert [(pong["event"], pong["id"]) for pong in pongs] == [("pong", name)] * 2
    errors = {event["id"]: event for event in worker.until(lambda e: e["id"] == name + "-2" and e["event"] == "error", timeout=60)}
    assert output in errors[name + "-1"]["message"] and name in errors[name + "-2"]["message"]
    worker.proc.stdin.close()
    assert worker.proc.wait(timeout=30) == 0
    assert all(line.isascii() for line in worker.stdout)
