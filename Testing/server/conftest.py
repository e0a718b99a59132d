"""Fixtures of the worker tests: an isolated model cache for every test (never the user's, never the
internet), and an in-process protocol session with stand-in job runners, for tests of the protocol itself."""

from __future__ import annotations

import io
import json
import os
import queue
import threading

import pytest

from SATSegmentLib import server
from SATSegmentLib.errors import CancelledError, InputError


@pytest.fixture(autouse=True)
def _isolated_home(isolated_model_home):
    return isolated_model_home


class StandInWorker:
    """Runs 'jobs' by their input name: 'quick' returns a result at once, 'bad' and 'crash' fail, 'echo'
    returns its request's paths and prompts, anything else reports progress and waits until cancelled."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.ran: list[str] = []

    def run(self, request, emit, cancel) -> dict:
        self.ran.append(request.input)
        if request.input == "bad":
            raise InputError("bad image", "give a good one")
        if request.input == "crash":
            raise ZeroDivisionError("oops")
        if request.input == "quick":
            return {"outputs": {}, "segments": [], "timings": {}, "cache": {}}
        if request.input == "echo":
            return {"outputs": {"segmentation": request.output}, "segments": [{"prompt": p} for p in request.prompts]}
        emit({"event": "progress", "stage": "inference", "current": 0, "total": 3})
        self.started.set()
        if not cancel.wait(timeout=30):
            raise AssertionError("never cancelled")
        raise CancelledError("cancelled")


class Session:
    """An in-process `server._Server` fed through a real pipe by a writer thread; its job loop runs on a thread
    that must end in time (so a reader that died fails the test instead of hanging it)."""

    def __init__(self, worker) -> None:
        read_fd, write_fd = os.pipe()
        self.out = io.BytesIO()
        self.server = server._Server(os.fdopen(read_fd, "rb"), self.out, worker)
        self._input: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._feed, args=(os.fdopen(write_fd, "wb"),), name="test-writer", daemon=True).start()
        threading.Thread(target=self.server.read_requests, name="test-reader", daemon=True).start()
        self.job_loop = threading.Thread(target=self.server.run_jobs, name="test-jobs", daemon=True)
        self.job_loop.start()

    def _feed(self, pipe) -> None:
        with pipe:
            while (data := self._input.get()) is not None:
                pipe.write(data)
                pipe.flush()

    def write(self, data: bytes) -> None:
        """Write raw bytes to the worker's stdin (in order, from the writer thread)."""
        self._input.put(data)

    def send(self, *lines: bytes | str | dict) -> None:
        """Write requests, one per line: a dict as JSON, a str as UTF-8, bytes as they are."""
        for line in lines:
            self.write((line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode()) + b"\n")

    def close(self) -> None:
        """End of input."""
        self._input.put(None)

    def finish(self, timeout: float = 20) -> list[dict]:
        """Close stdin, wait for the worker to say `bye`, and return every reply (all of it ASCII JSON)."""
        self.close()
        self.job_loop.join(timeout)
        assert not self.job_loop.is_alive(), "the worker hung: no bye within the timeout"
        data = self.out.getvalue()
        assert data.isascii()
        return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def stand_in() -> StandInWorker:
    return StandInWorker()


@pytest.fixture
def session(stand_in):
    """An in-process worker session on the stand-in runner; `finish()` ends it and returns its replies."""
    session = Session(stand_in)
    yield session
    session.close()  # a failed test must not leave the reader waiting


@pytest.fixture
def ask(session):
    """Send lines (EOF after them) and return the replies, without the final `bye`."""
    def ask(*lines) -> list[dict]:
        session.send(*lines)
        replies = session.finish()
        assert replies[-1] == {"event": "bye", "id": None}
        return replies[:-1]
    return ask


def _segment(job_id, image: str = "quick", **fields) -> dict:
    return {"type": "segment", "id": job_id, "input": image, "prompts": ["liver"], "output": "x.seg.nrrd", **fields}


@pytest.fixture
def segment():
    """`segment(id, image, **fields)`: a valid `segment` request for the stand-in runner (the image name says what the job does)."""
    return _segment
