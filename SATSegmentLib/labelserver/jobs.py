"""The server's jobs: who asked, where each waits, and a turn at the one compute device, shared round-robin.

Every request is a `Job` with a client's id (a uuid4 hex the client made, so it can be cancelled and
observed). Jobs wait at one gate; when the running job ends, the next turn goes to the next client in
rotation (a client's own jobs run in the order it sent them), so one client's ten queued jobs do not starve
another client's one. A cancelled job leaves the queue at once, or stops at the engine's next cancel point.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import CancelledError, InputError, SATSegmentError

JOB_ID = re.compile(r"[0-9a-f]{32}")
ACTIVE = ("queued", "running")
KEEP_FINISHED = 1000  # finished jobs remembered for status and cancel answers
# Ids cancelled before their request arrived, remembered apart: without authentication anyone may DELETE made-up
# ids, which must not push real finished jobs out of the history.
KEEP_EARLY_CANCELS = 1000


class UnknownJobError(SATSegmentError):
    """No job with this id is known here (never sent, or finished long ago)."""

    code = "unknown_job"


class JobConflictError(InputError):
    """A request reuses the id of another job."""

    code = "job_id_in_use"


class NotYourJobError(SATSegmentError):
    """An authenticated user asked about another user's job."""

    code = "forbidden"


class QueueFullError(SATSegmentError):
    """The queue holds as many jobs as the server accepts; a later request will be served."""

    code = "server_busy"


class ServerStoppingError(SATSegmentError):
    """The server is stopping and takes no new jobs."""

    code = "server_stopping"


STOPPING = "the server is stopping"


@dataclass
class Job:
    """One request: its id, the client whose turn it takes, the user it belongs to (None without
    authentication), its state (queued, running, done, failed, cancelled), its cancel signal and why it was set."""

    id: str
    client: str
    user: str | None = None
    state: str = "queued"
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    arrived: bool = True  # False for an id cancelled before its request arrived
    created: float = field(default_factory=time.monotonic)
    fraction: float | None = None  # the running job's progress 0..1, from the engine's progress events

    def advance(self, fraction: float) -> None:
        """Record the engine's progress; it never goes back (a later stage may start its own count at 0)."""
        self.fraction = max(self.fraction or 0.0, min(1.0, float(fraction)))


class JobQueue:
    """The registry of jobs and the gate in front of the device: one job runs at a time, turns go round-robin
    across clients. Thread-safe: requests wait on their own threads; cancel and status come from others."""

    def __init__(self, max_queued: int = 256) -> None:
        self.max_queued = max_queued
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}  # queued and running
        self._finished: OrderedDict[str, Job] = OrderedDict()
        self._early: OrderedDict[str, Job] = OrderedDict()  # ids cancelled before their request arrived
        self._waiting: dict[str, deque[Job]] = {}  # client → its jobs at the gate; key order = rotation order
        self._running: Job | None = None
        self._stopping = False
        self._bound = threading.local()

    def submit(self, job_id: str | None, client: str, user: str | None = None) -> Job:
        """Register a new job (a fresh id when `job_id` is None). Raises InputError for a malformed id,
        JobConflictError for one in use, CancelledError when that id was cancelled before it arrived."""
        if job_id is not None and not JOB_ID.fullmatch(job_id):
            raise InputError(f"'job_id' must be 32 lowercase hex digits (a uuid4 hex), not {str(job_id)[:40]!r}.",
                             "Let the client make it: uuid.uuid4().hex.")
        job_id = job_id or uuid.uuid4().hex
        with self._lock:
            if self._stopping:
                raise ServerStoppingError("The server is stopping and takes no new jobs.", "Send it again once the server is back.")
            early = self._early.get(job_id)
            if early is not None and early.user == user:
                early.arrived = True
                self._remember(self._early.pop(job_id))
                raise CancelledError(f"Job {job_id} was cancelled before its request arrived; nothing was run.")
            if job_id in self._jobs or job_id in self._finished or early is not None:
                raise JobConflictError(f"Job id {job_id} is already used by another request.", "Make a new id for every request.")
            if len(self._jobs) >= self.max_queued:
                raise QueueFullError(f"The server has {len(self._jobs)} jobs queued, the most it accepts.",
                                     "Try again in a few minutes.")
            job = self._jobs[job_id] = Job(job_id, client, user)
            return job

    @contextmanager
    def turn(self, job: Job) -> Iterator[Job]:
        """Wait for `job`'s turn at the device, then hold it; CancelledError if it is cancelled while it waits."""
        with self._lock:
            self._waiting.setdefault(job.client, deque()).append(job)
            self._lock.wait_for(lambda: job.cancel.is_set() or (self._running is None and self._next() is job))
            if job.cancel.is_set():
                self._leave_queue(job, rotate=False)
                self._lock.notify_all()
                raise cancelled(job)
            self._leave_queue(job, rotate=True)
            self._running, job.state = job, "running"
        try:
            yield job
        finally:
            with self._lock:
                self._running = None
                self._lock.notify_all()

    def finish(self, job: Job, state: str) -> None:
        """Record how `job` ended (done, failed or cancelled) and forget it as an active job."""
        with self._lock:
            if self._jobs.get(job.id) is job:  # only the first call counts
                job.state = "cancelled" if job.cancel.is_set() and state != "done" else state
                del self._jobs[job.id]
                self._remember(job)

    def abandon(self, job: Job) -> None:
        """The request of `job` has been answered: a job still waiting or running (its request timed out inside
        MONAI Label) is cancelled, and finishes when its thread stops; one that never reached the gate (its
        request failed before the engine had it) is recorded as failed, and refused should it still get there."""
        with self._lock:
            if self._jobs.get(job.id) is not job:
                return
            if job is not self._running and not any(job in jobs for jobs in self._waiting.values()):
                self.finish(job, "failed")
            self._cancel(job, "its request was answered")

    def stop(self) -> None:
        """Cancel every job and take no new ones: the server is stopping (it waits for every open request)."""
        with self._lock:
            self._stopping = True
            for job in list(self._jobs.values()):
                self._cancel(job, STOPPING)

    def cancel(self, job_id: str, user: str | None = None, reason: str = "its client cancelled it") -> Job:
        """Stop `job_id`: a queued job leaves the queue, a running one stops at the engine's next cancel point.
        Returns the job. An id not known yet is remembered as cancelled (its request may still be on the way)
        and UnknownJobError is raised; NotYourJobError for another user's job."""
        with self._lock:
            job = self._find(job_id, user)
            if job is None:
                if JOB_ID.fullmatch(job_id):
                    self._remember_early(Job(job_id, "", user, "cancelled", arrived=False))
                raise UnknownJobError(f"No job {job_id[:40]!r} is known to this server.",
                                      "It may have finished long ago; if its request is still on the way, it will be refused.")
            if job.state in ACTIVE:
                self._cancel(job, reason)
            return job

    def status(self, job_id: str, user: str | None = None) -> dict:
        """{"job_id", "state", "position", "queue_length", "fraction"}: position counts the jobs that run before this
        one starts (the running one included), 0 once it runs; queue_length the jobs waiting for the device; fraction
        the running job's progress 0..1 (None while queued or before its first progress, 1 once done, None if it
        failed or was cancelled). UnknownJobError, NotYourJobError as for `cancel`."""
        with self._lock:
            job = self._find(job_id, user)
            if job is None or not job.arrived:
                raise UnknownJobError(f"No job {job_id[:40]!r} is known to this server.")
            fraction = {"running": job.fraction, "done": 1.0}.get(job.state)
            return {"job_id": job.id, "state": job.state, "position": self._position(job),
                    "queue_length": sum(map(len, self._waiting.values())), "fraction": fraction}

    def claim(self, job_id: str) -> Job:
        """The active job `job_id`, for the engine to run. A job whose request was already answered (abandoned,
        cancelled) raises its CancelledError, an id never registered UnknownJobError: neither may run as a new job."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job
            gone = self._finished.get(job_id) or self._early.get(job_id)
        if gone is None:
            raise UnknownJobError(f"No job {job_id[:40]!r} is known to this server.")
        raise CancelledError(f"Job {job_id} was not run: it ended ({gone.state}, {gone.reason or 'no reason given'}) "
                             "before the engine had it; nothing was written.")

    @contextmanager
    def bound(self, job: Job) -> Iterator[Job]:
        """Make `job` this thread's current job while a request is handled on it (see `current`)."""
        self._bound.job = job
        try:
            yield job
        finally:
            self._bound.job = None

    def current(self) -> Job | None:
        """The job bound to this thread, if a request is being handled on it."""
        return getattr(self._bound, "job", None)

    def _cancel(self, job: Job, reason: str) -> None:
        if not job.cancel.is_set():
            job.reason = reason
            job.cancel.set()
        self._lock.notify_all()

    def _find(self, job_id: str, user: str | None) -> Job | None:
        job = self._jobs.get(job_id) or self._finished.get(job_id) or self._early.get(job_id)
        if job is not None and job.user != user:
            raise NotYourJobError(f"Job {job_id} belongs to another user.", "A user can cancel and follow only their own jobs.")
        return job

    def _next(self) -> Job | None:
        """The job whose turn is next: the first waiting job of the client first in rotation."""
        return next((jobs[0] for jobs in self._waiting.values()), None)

    def _order(self) -> list[Job]:
        """The waiting jobs in the order they would run: round r takes every client's r-th job, clients in rotation order."""
        queues = list(self._waiting.values())
        return [q[r] for r in range(max(map(len, queues), default=0)) for q in queues if r < len(q)]

    def _position(self, job: Job) -> int:
        if job.state != "queued":
            return 0
        order = self._order()
        ahead = order.index(job) if job in order else len(order)  # not at the gate yet: behind every waiting job
        return ahead + (self._running is not None)

    def _leave_queue(self, job: Job, rotate: bool) -> None:
        """Take `job` out of the waiting jobs; with `rotate` (it takes its turn) its client, if it has more jobs,
        moves to the end of the rotation, else (cancelled) the client keeps its place."""
        jobs = self._waiting[job.client]
        jobs.remove(job)
        if rotate or not jobs:
            del self._waiting[job.client]
        if rotate and jobs:
            self._waiting[job.client] = jobs

    def _remember(self, job: Job) -> None:
        self._finished[job.id] = job
        while len(self._finished) > KEEP_FINISHED:
            self._finished.popitem(last=False)

    def _remember_early(self, job: Job) -> None:
        self._early[job.id] = job
        while len(self._early) > KEEP_EARLY_CANCELS:
            self._early.popitem(last=False)


def cancelled(job: Job) -> CancelledError:
    """The error that answers a cancelled job's request: when, who or what cancelled it, and what to do."""
    when = "while it waited" if job.state == "queued" else "while it ran"
    return CancelledError(f"Job {job.id} was cancelled {when} ({job.reason or 'no reason given'}); nothing was written.",
                          "Send it again once the server is back." if job.reason == STOPPING else "")
