"""Cancel storms while jobs start and end: the reader and job threads share the session state, and every
request must still get exactly one final reply, and the worker must still exit. In-process, bounded in
count (300 jobs) and time (at most two milliseconds per job)."""

from __future__ import annotations

import random
import sys
import time

import pytest

from SATSegmentLib.errors import CancelledError, InputError

JOBS = 300
FINAL_EVENTS = ("result", "error", "cancelled")


class ShortJobs:
    """Jobs of up to two milliseconds that stop when cancelled; `started` holds the inputs of the jobs that ran."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.started: set[str] = set()

    def run(self, request, emit, cancel) -> dict:
        self.started.add(request.input)
        emit({"event": "progress", "stage": "inference", "current": 0, "total": 1})
        if cancel.wait(self.rng.random() * 0.002):
            raise CancelledError("cancelled")
        if self.rng.random() < 0.1:
            raise InputError("bad image")
        return {"outputs": {}, "segments": []}

    def wait_until_started(self, name: str, timeout: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while name not in self.started and time.monotonic() < deadline:
            time.sleep(1e-4)


@pytest.fixture
def stand_in():
    return ShortJobs(seed=0)


@pytest.fixture
def fast_thread_switching():
    """Switch threads every 10 µs instead of 5 ms: many more interleavings of the reader and the job loop."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(saved)


def _storm(session, stand_in, segment, rng: random.Random) -> None:
    """Queue jobs and cancel each several times: at once (while it is queued or starting) or once it runs
    (the first cancel ends it, the next ones race with its end); some cancels target older jobs."""
    cancels = 0
    for i in range(JOBS):
        session.send(segment(f"j{i}", f"j{i}"))
        if rng.random() < 0.5:
            stand_in.wait_until_started(f"j{i}")
        for _ in range(rng.randrange(6)):
            target = f"j{i}" if rng.random() < 0.8 else f"j{rng.randrange(i + 1)}"
            session.send({"type": "cancel", "id": f"c{cancels}", "target": target})
            cancels += 1
        if i % 10 == 0:
            session.send({"type": "ping", "id": f"p{i}"})


def _replies_by_id(events: list[dict]) -> dict:
    by_id: dict = {}
    for event in events:
        by_id.setdefault(event["id"], []).append(event)
    return by_id


@pytest.mark.parametrize("ending", ["end of input", "shutdown"])
def test_every_request_is_answered_once_under_a_cancel_storm(session, stand_in, segment, fast_thread_switching, ending):
    _storm(session, stand_in, segment, random.Random(1))
    if ending == "shutdown":
        session.send({"type": "shutdown", "id": "stop"})
    events = session.finish()
    assert events[-1] == {"event": "bye", "id": "stop" if ending == "shutdown" else None}
    by_id = _replies_by_id(events[:-1])
    for i in range(JOBS):
        kinds = [e["event"] for e in by_id.pop(f"j{i}")]
        assert kinds[0] == "accepted" and kinds[-1] in FINAL_EVENTS, (i, kinds)
        assert sum(kind in FINAL_EVENTS for kind in kinds) == 1, (i, kinds)
    for request_id, replies in by_id.items():  # cancels: silent, or refused once when the job was done
        expected = "pong" if request_id.startswith("p") else "error"
        assert [e["event"] for e in replies] == [expected], (request_id, replies)
