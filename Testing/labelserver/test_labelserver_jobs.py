"""The server's job queue without HTTP: turns round-robin across clients, cancel of queued and running jobs
(and why), status and queue positions, job ids and owners, stopping."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from SATSegmentLib.errors import CancelledError, InputError
from SATSegmentLib.labelserver.jobs import (KEEP_EARLY_CANCELS, KEEP_FINISHED, JobConflictError, JobQueue, NotYourJobError,
                                            QueueFullError, ServerStoppingError, UnknownJobError, cancelled)


class Runner:
    """Jobs of one queue on their own threads: the order they got their turn, how each ended; `hold` keeps a
    job's turn until released."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue, self.order, self.ended, self.threads = queue, [], {}, []

    def start(self, client: str, user: str | None = None, hold: threading.Event | None = None):
        job = self.queue.submit(uuid.uuid4().hex, client, user)
        queued = self.queue.status(job.id, user)["queue_length"]
        self.threads.append(threading.Thread(target=self._run, args=(job, hold), daemon=True))
        self.threads[-1].start()
        _wait(lambda: self.queue.status(job.id, user)["queue_length"] > queued or job.state != "queued")  # at the gate
        return job

    def _run(self, job, hold) -> None:
        try:
            with self.queue.turn(job):
                self.order.append(job.id)
                if hold is not None:
                    hold.wait(30)
                    if job.cancel.is_set():
                        raise CancelledError("stopped at a cancel point")
            state = "done"
        except CancelledError:
            state = "cancelled"
        self.queue.finish(job, state)
        self.ended[job.id] = state

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive()


def _wait(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_turns_go_round_robin_across_clients_and_positions_say_so():
    queue, release = JobQueue(), threading.Event()
    runner = Runner(queue)
    blocker = runner.start("x", hold=release)
    _wait(lambda: blocker.state == "running")
    a1, a2, a3 = (runner.start("a") for _ in range(3))  # one client's three jobs, then another client's one
    b1 = runner.start("b")
    assert [queue.status(job.id)["position"] for job in (a1, b1, a2, a3)] == [1, 2, 3, 4]
    assert queue.status(blocker.id) == {"job_id": blocker.id, "state": "running", "position": 0, "queue_length": 4,
                                        "fraction": None}
    release.set()
    runner.join()
    assert runner.order == [blocker.id, a1.id, b1.id, a2.id, a3.id]  # first come first served would run b1 last
    assert all(state == "done" for state in runner.ended.values()) and queue.status(a3.id)["state"] == "done"


def test_one_job_runs_at_a_time():
    queue, inside, most, lock = JobQueue(), [0], [0], threading.Lock()

    def job(client):
        handle = queue.submit(None, client)
        with queue.turn(handle):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.01)
            with lock:
                inside[0] -= 1
        queue.finish(handle, "done")

    threads = [threading.Thread(target=job, args=(f"c{n % 3}",)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1 and inside[0] == 0


def test_a_cancelled_queued_job_leaves_the_queue_at_once_and_its_client_keeps_its_place():
    queue, release = JobQueue(), threading.Event()
    runner = Runner(queue)
    blocker = runner.start("x", hold=release)
    a1, b1, a2 = runner.start("a"), runner.start("b"), runner.start("a")
    assert queue.cancel(a1.id) is a1
    _wait(lambda: a1.id in runner.ended)
    assert runner.ended[a1.id] == "cancelled" and queue.status(a1.id)["state"] == "cancelled"
    assert blocker.state == "running"  # the running job was not disturbed
    assert [queue.status(job.id)["position"] for job in (a2, b1)] == [1, 2]  # 'a' is still first in rotation
    release.set()
    runner.join()
    assert runner.order == [blocker.id, a2.id, b1.id]


def test_a_cancelled_running_job_is_signalled_and_frees_the_device():
    queue, release = JobQueue(), threading.Event()
    runner = Runner(queue)
    running = runner.start("a", hold=release)
    waiting = runner.start("b")
    _wait(lambda: running.state == "running")
    queue.cancel(running.id)
    assert running.cancel.is_set() and not waiting.cancel.is_set()
    release.set()  # the engine reaches its next cancel point
    runner.join()
    assert runner.ended == {running.id: "cancelled", waiting.id: "done"}
    assert queue.status(running.id)["state"] == "cancelled"


def test_with_authentication_only_the_owner_can_follow_or_cancel_a_job():
    queue = JobQueue()
    job = queue.submit(uuid.uuid4().hex, "user:ann", "ann")
    for call in (queue.cancel, queue.status):
        with pytest.raises(NotYourJobError, match="belongs to another user"):
            call(job.id, "bob")
        with pytest.raises(NotYourJobError):
            call(job.id, None)
    assert not job.cancel.is_set() and queue.status(job.id, "ann")["state"] == "queued"
    assert queue.cancel(job.id, "ann").cancel.is_set()


def test_an_id_cancelled_before_its_request_arrives_is_refused_when_it_comes():
    queue, job_id = JobQueue(), uuid.uuid4().hex
    with pytest.raises(UnknownJobError):
        queue.cancel(job_id, "ann")
    with pytest.raises(UnknownJobError):
        queue.status(job_id, "ann")
    with pytest.raises(JobConflictError):
        queue.submit(job_id, "user:bob", "bob")  # someone else cannot use (or clear) it
    with pytest.raises(CancelledError, match="cancelled before its request arrived"):
        queue.submit(job_id, "user:ann", "ann")
    assert queue.status(job_id, "ann")["state"] == "cancelled"


def test_made_up_cancels_never_push_real_jobs_out_of_the_history():
    queue = JobQueue()
    finished = [queue.submit(None, "a") for _ in range(3)]
    for job in finished:
        queue.finish(job, "done")
    first_early = uuid.uuid4().hex
    for job_id in [first_early] + [uuid.uuid4().hex for _ in range(KEEP_FINISHED + KEEP_EARLY_CANCELS)]:
        with pytest.raises(UnknownJobError):
            queue.cancel(job_id)  # anyone without authentication can send these
    assert [queue.status(job.id)["state"] for job in finished] == ["done"] * 3
    assert queue.submit(first_early, "a").state == "queued"  # the early cancels are capped apart: the oldest is forgotten


def test_the_status_follows_a_running_jobs_progress_and_it_never_goes_back():
    queue = JobQueue()
    job = queue.submit(None, "a")
    assert queue.status(job.id)["fraction"] is None  # queued
    with queue.turn(job):
        assert queue.status(job.id)["fraction"] is None  # running, no progress yet
        seen = []
        for fraction in (0.05, 0.4, 0.0, 0.9, 1.5):  # a later stage may start its count at 0
            job.advance(fraction)
            seen.append(queue.status(job.id)["fraction"])
        assert seen == [0.05, 0.4, 0.4, 0.9, 1.0]
    queue.finish(job, "done")
    assert queue.status(job.id)["fraction"] == 1.0
    failed = queue.submit(None, "a")
    failed.advance(0.3)
    queue.finish(failed, "failed")
    assert queue.status(failed.id)["fraction"] is None


def test_a_job_that_ended_before_the_engine_had_it_is_refused_not_run_as_a_new_job():
    queue = JobQueue()
    job = queue.submit(uuid.uuid4().hex, "a")
    assert queue.claim(job.id) is job
    queue.abandon(job)  # its request was answered (timed out) before the engine had it
    with pytest.raises(CancelledError, match=f"Job {job.id} was not run: it ended \\(failed, its request was answered\\)"):
        queue.claim(job.id)
    early = uuid.uuid4().hex
    with pytest.raises(UnknownJobError):
        queue.cancel(early)
    with pytest.raises(CancelledError, match="was not run"):
        queue.claim(early)
    with pytest.raises(UnknownJobError):
        queue.claim(uuid.uuid4().hex)


def test_job_ids_are_checked_and_never_reused():
    queue = JobQueue(max_queued=2)
    with pytest.raises(InputError, match="32 lowercase hex"):
        queue.submit("job-1", "a")
    job = queue.submit(uuid.uuid4().hex, "a")
    with pytest.raises(JobConflictError, match="already used"):
        queue.submit(job.id, "a")
    queue.finish(job, "done")
    queue.finish(job, "failed")  # only the first call counts
    assert queue.status(job.id)["state"] == "done"
    with pytest.raises(JobConflictError):
        queue.submit(job.id, "a")
    assert len(queue.submit(None, "a").id) == 32
    queue.submit(None, "b")
    with pytest.raises(QueueFullError, match="2 jobs queued"):
        queue.submit(None, "c")


def test_an_abandoned_job_is_failed_before_the_gate_and_cancelled_at_it():
    queue, release = JobQueue(), threading.Event()
    never = queue.submit(None, "a")  # its request failed before the engine had it
    queue.abandon(never)
    assert queue.status(never.id)["state"] == "failed"
    with pytest.raises(CancelledError):
        with queue.turn(never):
            pass
    runner = Runner(queue)
    running = runner.start("a", hold=release)
    _wait(lambda: running.state == "running")
    queue.abandon(running)  # its request timed out while it ran
    assert running.cancel.is_set() and queue.status(running.id)["state"] == "running"
    release.set()
    runner.join()
    assert queue.status(running.id)["state"] == "cancelled"
    queue.abandon(running)  # finished: nothing changes
    assert queue.status(running.id)["state"] == "cancelled"


def test_a_stopping_server_cancels_every_job_says_why_and_takes_no_new_one():
    queue, release = JobQueue(), threading.Event()
    runner = Runner(queue)
    running = runner.start("a", hold=release)
    _wait(lambda: running.state == "running")
    waiting = runner.start("b")
    queue.stop()
    assert running.cancel.is_set() and waiting.cancel.is_set()
    _wait(lambda: waiting.id in runner.ended)
    release.set()
    runner.join()
    assert runner.ended == {running.id: "cancelled", waiting.id: "cancelled"}
    error = cancelled(waiting)
    assert "(the server is stopping)" in error.message and error.hint == "Send it again once the server is back."
    with pytest.raises(ServerStoppingError, match="takes no new jobs"):
        queue.submit(None, "c")


def test_the_answer_to_a_cancelled_job_says_when_and_why():
    queue = JobQueue()
    job = queue.submit(None, "a")
    queue.cancel(job.id, reason="its client disconnected")
    queue.cancel(job.id)  # a second cancel does not change why
    error = cancelled(job)
    assert error.message == f"Job {job.id} was cancelled while it waited (its client disconnected); nothing was written."
    assert error.code == "cancelled" and error.hint == ""
