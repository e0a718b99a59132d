"""Worker protocol semantics in-process (queueing, cancel of queued and running jobs, shutdown), with a
stand-in job runner so the test checks the protocol, not the model."""

from __future__ import annotations


def _by_id(events: list[dict]) -> dict:
    by_id: dict = {}
    for event in events:
        by_id.setdefault(event.get("id"), []).append(event["event"])
    return by_id


def test_queue_cancel_and_shutdown(session, stand_in, segment):
    session.send(segment("a", "block"), segment("b"), segment("c"), segment("a"))
    assert stand_in.started.wait(timeout=30)
    session.send({"type": "cancel", "id": "k1", "target": "b"}, {"type": "ping", "id": "p"}, {"type": "shutdown", "id": "s"})
    events = session.finish()
    by_id = _by_id(events)
    # the duplicate id is refused (its error may come before or after the job's progress); shutdown cancels the job
    assert by_id["a"][0] == "accepted" and by_id["a"][-1] == "cancelled" and sorted(by_id["a"][1:3]) == ["error", "progress"]
    assert by_id["b"] == ["accepted", "cancelled"]  # cancelled while queued: never ran
    assert by_id["c"] == ["accepted", "cancelled"]  # dropped by shutdown
    assert by_id["p"] == ["pong"] and events[[e.get("id") for e in events].index("p")]["busy"] == "a"
    assert events[-1] == {"event": "bye", "id": "s"}
    assert stand_in.ran == ["block"]


def test_errors_are_replies_and_the_worker_carries_on(ask, segment):
    events = ask(segment("1", "bad"), segment("2", "crash"), segment("3"),
                 segment("4", options={"roi": [1, 2]}), segment("5", prompts="liver"),
                 {"type": "ping"}, '{"type": "ping", "id": "6"', '"just a string"')
    finals = {e["id"]: e for e in events if e["event"] in ("result", "error")}
    assert finals["1"]["code"] == "bad_input" and finals["1"]["hint"] == "give a good one"
    assert finals["2"]["code"] == "internal_error" and "oops" in finals["2"]["message"]
    assert finals["3"]["event"] == "result"
    assert finals["4"]["code"] == "bad_request" and "roi" in finals["4"]["message"]
    assert finals["5"]["code"] == "bad_request" and "prompts" in finals["5"]["message"]
    anonymous = [e for e in events if e["event"] == "error" and e["id"] is None]
    assert len(anonymous) == 3  # ping without id, truncated JSON, non-object
