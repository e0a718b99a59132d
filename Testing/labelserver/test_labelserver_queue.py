"""Jobs on a real server (127.0.0.1, tiny model) through the module's client: the server answers while a job
runs, turns alternate between clients, a client cancels its queued or running job, and a client that is
killed has its job cancelled, so it does not hold the device."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "SATSegment"
SHORT = (16, 48, 56)  # a scan shape the tiny model segments in about a second
sys.path.insert(0, str(MODULE_DIR))
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError, new_job_id  # noqa: E402


@pytest.fixture
def clients(label_server):
    """A client factory: `clients(name)` is the client with client id `name`."""
    return lambda name: LabelServerClient(label_server.url, timeout=300, client_id=name)


def _state(client, job_id, state, position=None):
    status = client.status(job_id)
    return status["state"] == state and (position is None or status["position"] == position)


def _cancelled(outcome) -> bool:
    return isinstance(outcome, RemoteError) and outcome.code == "cancelled" and outcome.status == 409


def _long_job_then_a_queued_upload(clients, long_scan, ct_path, jobs_helpers, while_alone=lambda a, long_id: None):
    """Client a's long job runs (`while_alone` is called then), then client b's upload waits behind it:
    (a, b, (long id, its call), (queued id, its call))."""
    Background, wait_until = jobs_helpers
    a, b = clients("a"), clients("b")
    long_id, queued_id = new_job_id(), new_job_id()
    long_job = Background(lambda: a.segment(["liver"], "ct", image_path=long_scan(), job_id=long_id))
    wait_until(lambda: _state(a, long_id, "running"), what="the long job to run")
    while_alone(a, long_id)
    queued = Background(lambda: b.segment(["spleen"], "ct", image_path=ct_path, job_id=queued_id))
    wait_until(lambda: _state(b, queued_id, "queued", position=1), what="the second job to queue")
    return a, b, (long_id, long_job), (queued_id, queued)


def _info_answers_while_the_job_runs(a, long_id) -> None:
    tic = time.monotonic()
    assert a.check()["models"] == ["tiny"]  # MONAI Label's own handler would answer only once the job ended
    print(f"GET /info/ while a job runs: {time.monotonic() - tic:.3f} s")
    assert a.status(long_id)["state"] == "running"


def test_the_server_answers_while_a_job_runs_and_a_cancelled_running_job_frees_it(clients, long_scan, ct_path,
                                                                                   jobs_helpers):
    a, b, (long_id, long_job), (next_id, next_job) = _long_job_then_a_queued_upload(
        clients, long_scan, ct_path, jobs_helpers, _info_answers_while_the_job_runs)
    assert a.cancel(long_id) is True
    assert _cancelled(long_job.wait(120)) and a.status(long_id)["state"] == "cancelled"
    assert next_job.wait().label_names == {"spleen": 1} and b.status(next_id) == {
        "job_id": next_id, "state": "done", "position": 0, "queue_length": 0, "fraction": 1.0}


def test_a_queued_job_is_cancelled_at_once_and_leaves_no_upload_behind(clients, long_scan, ct_path, jobs_helpers,
                                                                       label_server):
    a, b, (long_id, long_job), (queued_id, queued) = _long_job_then_a_queued_upload(clients, long_scan, ct_path, jobs_helpers)
    assert b.cancel(queued_id) is True
    assert _cancelled(queued.wait(60)) and "while it waited (its client cancelled it)" in queued.error.message
    assert a.status(long_id)["state"] == "running"  # another client's job was not touched
    assert b.status(queued_id)["state"] == "cancelled"
    assert a.cancel(long_id) and _cancelled(long_job.wait(120))
    left = [path.name for path in label_server.tmp.iterdir() if path.name.endswith((".nii.gz", ".nrrd")) or "satsegment" in path.name]
    assert left == []  # the uploaded scans are gone (MONAI Label's own would stay after an error answer)


def test_a_running_jobs_status_shows_its_progress_growing(clients, long_scan, jobs_helpers):
    Background, wait_until = jobs_helpers
    a, job_id, fractions = clients("a"), new_job_id(), []
    job = Background(lambda: a.segment(["liver"], "ct", image_path=long_scan(), job_id=job_id))
    wait_until(lambda: _state(a, job_id, "running"), what="the job to run")
    while (status := a.status(job_id))["state"] == "running":
        fractions.append(status["fraction"])
        time.sleep(0.2)
    assert job.wait().label_names == {"liver": 1} and a.status(job_id)["fraction"] == 1.0
    known = [fraction for fraction in fractions if fraction is not None]
    print(f"{len(fractions)} statuses while running, fractions {known[:3]} ... {known[-3:]}")
    assert any(0 < fraction < 1 for fraction in known) and len(set(known)) > 2
    assert known == sorted(known) and fractions[fractions.index(known[0]):] == known  # never back, never None again


def test_turns_alternate_between_clients(clients, long_scan, jobs_helpers):
    Background, wait_until = jobs_helpers
    x, a, b = clients("x"), clients("a"), clients("b")
    blocker_id = new_job_id()
    blocker = Background(lambda: x.segment(["liver"], "ct", image_path=long_scan(), job_id=blocker_id))
    wait_until(lambda: _state(x, blocker_id, "running"), what="the first job to run")
    jobs = {}
    for name, client in (("a1", a), ("a2", a), ("a3", a), ("b1", b)):  # client a sends three jobs, then b one
        job_id = new_job_id()
        scan = long_scan(SHORT)  # a job of about a second, no cached features: the answers come in the order the jobs ran
        jobs[name] = (job_id, Background(lambda c=client, j=job_id, p=scan: c.segment(["spleen"], "ct", image_path=p, job_id=j)))
        wait_until(lambda c=client, j=job_id, n=len(jobs): c.status(j).get("queue_length") == n, what=f"{name} to queue")
    positions = {name: (a if name[0] == "a" else b).status(job_id)["position"] for name, (job_id, _) in jobs.items()}
    assert positions == {"a1": 1, "b1": 2, "a2": 3, "a3": 4}  # first come, first served would put b1 last
    assert x.cancel(blocker_id) and _cancelled(blocker.wait(120))
    for _, job in jobs.values():
        assert job.wait().label_names == {"spleen": 1}
    assert sorted(jobs, key=lambda name: jobs[name][1].ended) == ["a1", "b1", "a2", "a3"]


def test_unknown_malformed_and_reused_job_ids_and_a_malformed_client_id(clients):
    a = clients("a")
    job_id = new_job_id()
    assert a.cancel(job_id) is False and a.status(job_id)["state"] == "unknown"
    with pytest.raises(RemoteError, match="cancelled before its request arrived") as caught:
        a.segment(["liver"], "ct", image_id="ct", job_id=job_id)  # a cancel that overtook its request
    assert caught.value.code == "cancelled"
    with pytest.raises(RemoteError, match="32 lowercase hex") as caught:
        a.segment(["liver"], "ct", image_id="ct", job_id="job-1")
    assert caught.value.status == 422
    done_id = new_job_id()
    a.segment(["liver"], "ct", image_id="ct", job_id=done_id)
    with pytest.raises(RemoteError, match="already used") as caught:
        a.segment(["liver"], "ct", image_id="ct", job_id=done_id)
    assert caught.value.status == 409 and caught.value.code == "job_id_in_use"
    assert a.cancel(done_id) is True and a.status(done_id)["state"] == "done"  # known, finished: nothing to stop
    with pytest.raises(RemoteError, match="'client_id' must be 1 to 64") as caught:
        clients("a client").segment(["liver"], "ct", image_id="ct")
    assert caught.value.status == 400


def test_a_killed_client_has_its_job_cancelled_queued_or_running(clients, label_server, long_scan, ct_path, jobs_helpers):
    _, wait_until = jobs_helpers
    observer = clients("observer")

    def client_process(image: Path, job_id: str, client_id: str) -> subprocess.Popen:
        script = (f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r}); from SATSegmentSlicerLib.remote import LabelServerClient; "
                  f"LabelServerClient({label_server.url!r}, client_id={client_id!r}).segment(['liver'], 'ct', "
                  f"image_path={str(image)!r}, job_id={job_id!r})")
        return subprocess.Popen([sys.executable, "-c", script])

    running_id, queued_id = new_job_id(), new_job_id()
    running = client_process(long_scan(), running_id, "k1")
    wait_until(lambda: _state(observer, running_id, "running"), what="the first killed client's job to run")
    queued = client_process(ct_path, queued_id, "k2")
    wait_until(lambda: _state(observer, queued_id, "queued", position=1), what="the second killed client's job to queue")
    for process, job_id in ((queued, queued_id), (running, running_id)):
        assert process.poll() is None, "the client finished before it could be killed"
        process.kill()
        process.wait()
        wait_until(lambda j=job_id: _state(observer, j, "cancelled"), timeout=60, what="the killed client's job to be cancelled")
        if job_id == queued_id:
            assert observer.status(running_id)["state"] == "running"
    assert observer.segment(["spleen"], "ct", image_id="ct").label_names == {"spleen": 1}  # the device is free


def test_a_stopping_server_answers_its_running_and_queued_jobs(tmp_path, tiny_model_dir, scan_writers, server_starter,
                                                              long_scan, ct_path, jobs_helpers):
    server = server_starter(tmp_path, tiny_model_dir, scan_writers)  # a server of its own, to stop
    try:
        clients = lambda name: LabelServerClient(server.url, timeout=300, client_id=name)  # noqa: E731
        _, _, (_, running), (_, queued) = _long_job_then_a_queued_upload(clients, long_scan, ct_path, jobs_helpers)
    finally:
        server.stop()  # as an administrator's Ctrl+C; without the app's handler, uvicorn would wait for the whole queue
    for job, when in ((running, "while it ran"), (queued, "while it waited")):
        outcome = job.wait(60)
        assert _cancelled(outcome) and f"{when} (the server is stopping)" in outcome.message
        assert outcome.hint == "Send it again once the server is back."
