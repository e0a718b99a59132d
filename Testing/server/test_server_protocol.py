"""Worker protocol semantics in-process (queueing, cancel of queued and running jobs, shutdown), with a
stand-in job runner so the test checks the protocol, not the model."""

from __future__ import annotations

import io
import json
import os
import threading

from SATSegmentLib import server
from SATSegmentLib.errors import CancelledError, InputError


class BlockingWorker:
    """Runs a 'job' that waits until it is cancelled, or fails for the input 'bad'."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ran: list[str] = []

    def run(self, request, emit, cancel):
        self.ran.append(request.input)
        if request.input == "bad":
            raise InputError("bad image", "give a good one")
        if request.input == "crash":
            raise ZeroDivisionError("oops")
        if request.input == "quick":
            return {"outputs": {}, "segments": [], "timings": {}, "cache": {}}
        emit({"event": "progress", "stage": "inference", "current": 0, "total": 3})
        self.started.set()
        if not cancel.wait(timeout=30):
            raise AssertionError("never cancelled")
        raise CancelledError("cancelled")


def _session(lines_before: list, lines_after: list, worker: BlockingWorker, wait_for_job: bool = True) -> list[dict]:
    """Feed requests, then (once the blocking job has started, if `wait_for_job`) `lines_after`, then EOF."""
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd, "r")
    pipe = os.fdopen(write_fd, "w")
    out = io.StringIO()
    srv = server._Server(stdin, out, worker)
    threading.Thread(target=srv.read_requests, daemon=True).start()

    def feed():
        for line in lines_before:
            pipe.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
        pipe.flush()
        if wait_for_job:
            worker.started.wait(timeout=30)
        for line in lines_after:
            pipe.write(json.dumps(line) + "\n")
        pipe.close()
    threading.Thread(target=feed, daemon=True).start()
    srv.run_jobs()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _segment(job_id: str, image: str) -> dict:
    return {"type": "segment", "id": job_id, "input": image, "prompts": ["liver"], "output": "x.seg.nrrd"}


def test_queue_cancel_and_shutdown():
    worker = BlockingWorker()
    events = _session(
        [_segment("a", "block"), _segment("b", "quick"), _segment("c", "quick"), _segment("a", "quick")],
        [{"type": "cancel", "id": "k1", "target": "b"}, {"type": "ping", "id": "p"}, {"type": "shutdown", "id": "s"}],
        worker)
    by_id = {}
    for event in events:
        by_id.setdefault(event.get("id"), []).append(event["event"])
    # the duplicate id is refused (its error may come before or after the job's progress); shutdown cancels the job
    assert by_id["a"][0] == "accepted" and by_id["a"][-1] == "cancelled" and sorted(by_id["a"][1:3]) == ["error", "progress"]
    assert by_id["b"] == ["accepted", "cancelled"]  # cancelled while queued: never ran
    assert by_id["c"] == ["accepted", "cancelled"]  # dropped by shutdown
    assert by_id["p"] == ["pong"] and events[[e.get("id") for e in events].index("p")]["busy"] == "a"
    assert events[-1] == {"event": "bye", "id": "s"}
    assert worker.ran == ["block"]


def test_errors_are_replies_and_the_worker_carries_on():
    worker = BlockingWorker()
    events = _session([_segment("1", "bad"), _segment("2", "crash"), _segment("3", "quick"),
                       {"type": "segment", "id": "4", "input": "quick", "prompts": ["liver"], "output": "x", "options": {"roi": [1, 2]}},
                       {"type": "segment", "id": "5", "input": "quick", "prompts": "liver", "output": "x"},
                       {"type": "ping"}, '{"type": "ping", "id": "6"', '"just a string"'],
                      [], worker, wait_for_job=False)
    finals = {e["id"]: e for e in events if e["event"] in ("result", "error")}
    assert finals["1"]["code"] == "bad_input" and finals["1"]["hint"] == "give a good one"
    assert finals["2"]["code"] == "internal_error" and "oops" in finals["2"]["message"]
    assert finals["3"]["event"] == "result"
    assert finals["4"]["code"] == "bad_request" and "roi" in finals["4"]["message"]
    assert finals["5"]["code"] == "bad_request" and "prompts" in finals["5"]["message"]
    anonymous = [e for e in events if e["event"] == "error" and e["id"] is None]
    assert len(anonymous) == 3  # ping without id, truncated JSON, non-object
    assert events[-1] == {"event": "bye", "id": None}  # end of input: queued jobs ran first
