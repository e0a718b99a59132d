"""WorkerClient against small stand-in workers that misbehave on purpose: a worker that ignores
cancel must be killed (with its children) and the job reported cancelled; a worker that dies must
turn its pending jobs into errors; non-JSON stdout must not break the stream."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from SATSegmentSlicerLib.worker import WorkerClient

# Accepts a job, reports progress, then ignores everything (also cancel); starts a child process.
STUBBORN = textwrap.dedent("""
    import json, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(child.pid, file=sys.stderr, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["type"] == "segment":
            print("not json at all", flush=True)
            print(json.dumps({"event": "accepted", "id": request["id"]}), flush=True)
            print(json.dumps({"event": "progress", "id": request["id"], "stage": "backbone", "fraction": 0.5}), flush=True)
    time.sleep(600)
""")

DIES = "import sys; sys.stdin.readline(); sys.exit(3)"


def _client(script: str, **kwargs) -> tuple[WorkerClient, list, list]:
    events, logs = [], []
    client = WorkerClient([sys.executable, "-c", script], onEvent=events.append, onLog=logs.append, **kwargs)
    return client, events, logs


def _alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap it counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    return not (os.path.exists(stat) and open(stat).read().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.skipif(os.name == "nt", reason="process-group check uses POSIX signals")
def test_cancel_kills_a_worker_that_does_not_answer_and_its_children():
    client, events, logs = _client(STUBBORN, cancelTimeout=1.0)
    job = client.submitSegment("in.nrrd", ["liver"], "out.seg.nrrd", "ct")
    deadline = time.monotonic() + 30
    while not any(e.get("event") == "progress" for e in events) and time.monotonic() < deadline:
        client.poll()
        time.sleep(0.05)
    assert any(line.startswith("[worker stdout, not JSON]") for line in logs)
    child_pid = int(next(line for line in logs if line.strip().isdigit()))
    assert _alive(child_pid)

    client.cancel(job)
    started = time.monotonic()
    final = client.waitFor(job, timeout=15)
    assert final == {"event": "cancelled", "id": job}
    assert 0.9 <= time.monotonic() - started < 10
    assert not client.running
    time.sleep(0.2)
    assert not _alive(child_pid), "the worker's child process survived the kill"
    assert client.pendingJobs == []


def test_worker_that_dies_turns_pending_jobs_into_errors():
    exits = []
    client, events, logs = _client(DIES, onExit=exits.append)
    job = client.submitSegment("in.nrrd", ["liver"], "out.seg.nrrd")
    final = client.waitFor(job, timeout=30)
    assert exits == [3]
    assert final["event"] == "error" and final["id"] == job
    assert "exit code 3" in final["message"] and final["hint"]
    assert "worker exited with code 3" in logs


def test_requests_follow_the_protocol_and_worker_restarts_on_demand(tmp_path):
    record = tmp_path / "requests.jsonl"
    echo = (f"import json, sys\nout = open({str(record)!r}, 'a')\n"
            "for line in sys.stdin:\n"
            "    out.write(line); out.flush(); r = json.loads(line)\n"
            "    if r['type'] == 'segment': print(json.dumps({'event': 'result', 'id': r['id'], 'outputs': {}}), flush=True)\n"
            "    if r['type'] == 'shutdown': print(json.dumps({'event': 'bye', 'id': r['id']}), flush=True); break\n")
    client, events, _ = _client(echo)
    first = client.submitSegment("a.nrrd", ["liver", "L3"], "a.seg.nrrd", "mri", {"model": "nano", "roi": [0, 0, 0, 1, 1, 1]})
    assert client.waitFor(first, timeout=30)["event"] == "result"
    client.shutdown()
    assert not client.running and events[-1]["event"] == "bye"
    second = client.submitSegment("b.nrrd", ["spleen"], "b.seg.nrrd")  # starts a new worker
    assert client.waitFor(second, timeout=30)["event"] == "result"
    client.shutdown()
    requests = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["type"] for r in requests] == ["segment", "shutdown", "segment", "shutdown"]
    assert requests[0] == {"type": "segment", "id": first, "input": "a.nrrd", "prompts": ["liver", "L3"],
                           "output": "a.seg.nrrd", "modality": "mri", "options": {"model": "nano", "roi": [0, 0, 0, 1, 1, 1]}}
    assert len({r["id"] for r in requests}) == 4


# Echoes each request's path back, in the encoding Python chose for stdout, and names it on stderr.
ECHO = textwrap.dedent("""
    import json, sys
    for line in sys.stdin:
        request = json.loads(line)
        print("writing", request["output"], file=sys.stderr, flush=True)
        print(json.dumps({"event": "result", "id": request["id"], "path": request["output"]}, ensure_ascii=False), flush=True)
""")


def test_non_ascii_paths_survive_the_pipes_whatever_the_code_page(tmp_path):
    """A user profile such as C:/Users/Zoë: the worker's environment fixes UTF-8, which the client decodes."""
    from SATSegmentSlicerLib import paths

    env = paths.workerEnvironment({**os.environ, "PYTHONIOENCODING": "latin-1"})  # an ANSI code page
    assert env["PYTHONIOENCODING"] == "utf-8"
    events, logs = [], []
    client = WorkerClient([sys.executable, "-c", ECHO], env, onEvent=events.append, onLog=logs.append)
    client.start()
    output = str(tmp_path / "Zoë 東京 \u2028" / "result.seg.nrrd")
    jobId = client.submitSegment("in.nrrd", ["liver"], output, "ct")
    client.waitFor(jobId, 30)
    client.shutdown()
    assert events[-1]["path"] == output
    assert any(output in line for line in logs)
