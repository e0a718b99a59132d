"""The line layer of the worker: any byte sequence gets one reply per line (blank lines: none), in bounded
memory, and the next request is always answered. In-process, with a stand-in job runner."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from SATSegmentLib import server

PING = {"type": "ping", "id": "after"}


def _answered_then_pong(replies: list[dict]) -> dict:
    """The single reply to a bad line, after checking that the ping sent next was answered."""
    assert len(replies) == 2 and replies[1]["event"] == "pong" and replies[1]["id"] == "after", replies
    assert replies[0]["event"] == "error" and replies[0]["code"] == "bad_request"
    return replies[0]


def test_invalid_utf8_is_refused_and_reading_goes_on(ask):
    error = _answered_then_pong(ask(b'{"type": "ping", "id": "\xff\xfe"}', PING))
    assert error["id"] is None and error["message"] == "The line is not valid UTF-8 (byte 0xff at offset 24)."


def test_a_nul_byte_is_refused_and_reading_goes_on(ask):
    error = _answered_then_pong(ask(b'{"type": "ping",\0 "id": "1"}', PING))
    assert error["message"].startswith("The line is not valid JSON")


def test_deep_nesting_is_refused_and_reading_goes_on(ask):
    error = _answered_then_pong(ask("[" * 100_000, PING))
    assert error["message"] == "The line is nested too deeply to be a request."


def test_crlf_line_endings_are_accepted(ask):
    assert ask(b'{"type": "ping", "id": "1"}\r')[0]["event"] == "pong"


def test_blank_lines_get_no_reply(ask):
    assert [reply["id"] for reply in ask(b"", b"   ", b"\r", b"\t \r", PING)] == ["after"]


@pytest.mark.parametrize("extra, event", [(0, "pong"), (1, "error")])
def test_the_line_limit_is_exact(ask, extra, event):
    ping = b'{"type": "ping", "id": "1"}'
    assert ask(ping.ljust(server.MAX_LINE_BYTES + extra))[0]["event"] == event


def test_an_over_long_line_is_refused_in_bounded_memory(session):
    chunk = b"[" * 2**16
    tracemalloc.start()
    try:
        for _ in range(8 * server.MAX_LINE_BYTES // len(chunk)):
            session.write(chunk)
        session.send(b"", PING)  # ends the long line
        replies = session.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * server.MAX_LINE_BYTES  # the line was 8 times as long
    error = _answered_then_pong(replies[:-1])
    assert error["message"] == f"The line is longer than {server.MAX_LINE_BYTES:,} bytes, the limit for one request; it was skipped."


# ---- fuzz: random and structured garbage ---------------------------------------------------

_NOT_JSON_BYTES = bytes([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), 0x80, 0xc0, 0xfe, 0xff])
_WRONG_VALUES = ["1.5", "true", "false", "null", "[[]]", "[[[[1]]]]", "{}", '{"a": {"b": []}}', "NaN", "-Infinity",
                 "1e999", "1" * 200, '""', "[" * 5000 + "]" * 5000]
_TEMPLATES = [
    ({"type": "ping", "id": "x"}, ["id", "type"]),
    ({"type": "cancel", "id": "x", "target": "x"}, ["id", "type", "target"]),
    ({"type": "segment", "id": "x", "input": "quick", "prompts": ["liver"], "output": "o.seg.nrrd"},
     ["id", "type", "input", "output", "prompts"]),
]


def _garbage(rng: random.Random) -> bytes:
    """One line that is never a valid request: random bytes, or a request with one thing broken."""
    template, breakable = rng.choice(_TEMPLATES)
    message = dict(template)
    name = rng.choice(breakable)
    how = rng.randrange(5)
    if how == 0:
        return bytes(rng.choice(range(256)) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"")
    if how == 1:
        del message[name]
        return json.dumps(message).encode()
    text = json.dumps(message).encode()
    if how == 2:  # cut short
        return text[:rng.randrange(1, len(text))]
    if how == 3:  # a byte that is neither JSON nor UTF-8 text, anywhere
        at = rng.randrange(len(text) + 1)
        return text[:at] + bytes([rng.choice(_NOT_JSON_BYTES)]) + text[at:]
    message[name] = "@@"  # a value of the wrong kind for this field
    return json.dumps(message).replace('"@@"', rng.choice(_WRONG_VALUES)).encode()


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_every_line_gets_one_reply_and_the_next_ping_an_answer(ask, seed):
    rng = random.Random(seed)
    lines = [_garbage(rng) for _ in range(200)]
    replies = ask(*(item for i, line in enumerate(lines) for item in (line, {"type": "ping", "id": f"ping-{i}"})))
    for i, line in enumerate(lines):
        pong = next(at for at, reply in enumerate(replies) if reply.get("id") == f"ping-{i}")
        answer, replies = replies[:pong], replies[pong + 1:]
        if line.strip(b" \t\r"):
            assert [(r["event"], r["code"]) for r in answer] == [("error", "bad_request")], (line, answer)
        else:
            assert answer == [], (line, answer)  # a blank line gets no reply
    assert replies == []
