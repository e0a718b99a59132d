"""What makes a request acceptable (ids, type, fields, numbers), and that every refusal says exactly what is
wrong in a short reply. In-process, with a stand-in job runner."""

from __future__ import annotations

import pytest

from SATSegmentLib import server


def _error(replies: list[dict]) -> dict:
    assert len(replies) == 1 and replies[0]["event"] == "error", replies
    assert replies[0]["code"] == "bad_request" and replies[0]["exit_code"] == 2
    return replies[0]


@pytest.mark.parametrize("line, message", [
    ('{"type": "ping", "id": 1.5}', "'id' must be a string or an integer, got a float."),
    ('{"type": "ping", "id": 1e3}', "'id' must be a string or an integer, got a float."),
    ('{"type": "ping", "id": true}', "'id' must be a string or an integer, got a boolean."),
    ('{"type": "ping", "id": {"a": 1}}', "'id' must be a string or an integer, got an object."),
    ('{"type": "ping", "id": ["1"]}', "'id' must be a string or an integer, got a list."),
    ('{"type": "ping", "id": null}', "'id' must be a string or an integer, got null."),
    ('{"type": "ping", "id": NaN}', "NaN is not a JSON number."),
    ('{"type": "ping", "id": ""}', "'id' must be 1 to 256 characters long, got 0."),
    ('{"type": "ping", "id": "%s"}' % ("x" * 257), "'id' must be 1 to 256 characters long, got 257."),
    ('{"type": "ping", "id": 9007199254740992}', "'id' must be an integer between -9007199254740991 and 9007199254740991 (2**53 - 1)."),
    ('{"type": "ping"}', "The request has no 'id'."),
])
def test_an_unacceptable_id_is_named_exactly(ask, line, message):
    error = _error(ask(line))
    assert error["id"] is None and error["message"] == message


@pytest.mark.parametrize("request_id", ["a", "π-日本", "\ud800", 0, -5, 2**53 - 1])
def test_an_acceptable_id_is_echoed_exactly(ask, request_id):
    assert ask({"type": "ping", "id": request_id})[0] == {"event": "pong", "id": request_id, "version": server.__version__, "busy": None}


@pytest.mark.parametrize("kind, message", [
    (["ping"], "'type' must be a string, got a list."),
    ({"ping": 1}, "'type' must be a string, got an object."),
    (7, "'type' must be a string, got an integer."),
])
def test_a_type_that_is_not_a_string_is_refused_with_the_id(ask, kind, message):
    error = _error(ask({"type": kind, "id": "t"}))
    assert error["id"] == "t" and error["message"] == message


@pytest.mark.parametrize("target, message", [
    ([1], "'target' must be a string or an integer, got a list."),
    ({"id": "j"}, "'target' must be a string or an integer, got an object."),
    (None, "'target' must be a string or an integer, got null."),
    ("nothing", "No queued or running job has id 'nothing'."),
])
def test_a_cancel_without_a_pending_target_is_refused(ask, target, message):
    error = _error(ask({"type": "cancel", "id": "c", "target": target}))
    assert error["id"] == "c" and error["message"] == message


@pytest.mark.parametrize("number, message", [
    ("1" * 5000, "A number in the request has 5,000 digits; at most 100 are accepted."),
    ("-" + "9" * 101, "A number in the request has 101 digits; at most 100 are accepted."),
    ("1e999", "The number '1e999' is too large."),
    ("Infinity", "Infinity is not a JSON number."),
    ("-Infinity", "-Infinity is not a JSON number."),
    ("NaN", "NaN is not a JSON number."),
])
def test_numbers_must_be_finite_and_of_ordinary_size(ask, number, message):
    line = '{"type": "segment", "id": "s", "input": "quick", "prompts": ["liver"], "output": "x.seg.nrrd", ' \
           '"options": {"roi": [0, 0, 0, 1, 1, %s]}}' % number
    assert _error(ask(line))["message"] == message


@pytest.mark.parametrize("fields, message", [
    ({"input": "a\0b"}, "'input' contains a NUL character."),
    ({"output": ""}, "'output' must be a non-empty string."),
    ({"modality": ["ct"]}, "'modality' must be a non-empty string, got a list."),
    ({"options": []}, "'options' must be an object, got a list."),
    ({"options": {"checkpoint": 5}}, "Option 'checkpoint' must be a non-empty string, got an integer."),
    ({"options": {"split_dir": ["d"]}}, "Option 'split_dir' must be a non-empty string, got a list."),
    ({"options": {"overwrite": "yes"}}, "Option 'overwrite' must be true or false, got a string."),
    ({"options": {"roi": [True, 0, 0, 1, 1, 1]}}, "Option 'roi' must be a list of six numbers [x0, y0, z0, x1, y1, z1] (RAS mm)."),
    ({"options": {"input": "other"}}, "Unknown option(s): 'input'."),
])
def test_segment_fields_are_checked_before_the_job_is_accepted(ask, segment, fields, message):
    error = _error(ask(segment("s", **fields)))
    assert error["id"] == "s" and error["message"] == message


@pytest.mark.parametrize("output", [None, "absent"])
def test_a_request_without_output_names_the_outputs_it_could_give(ask, segment, output):
    request = segment("s", output=output)
    if output == "absent":
        del request["output"]
    error = _error(ask(request))
    assert error["message"] == "The request has no 'output'."
    assert "'dicom_seg'" in error["hint"] and "'rtstruct'" in error["hint"]


def test_null_modality_and_options_mean_the_defaults(ask, segment):
    replies = ask(segment("s", modality=None, options={"checkpoint": None, "roi": None}))
    assert [r["event"] for r in replies] == ["accepted", "result"]


@pytest.mark.parametrize("message", [
    {"type": "x" * 100_000, "id": "1"},
    {"type": "segment", "id": "1", "input": "quick", "prompts": ["liver"], "output": "x.seg.nrrd",
     "options": {f"option{i}" * 50: 1 for i in range(10_000)}},
])
def test_a_refusal_quotes_the_client_briefly(ask, message):
    assert len(_error(ask(message))["message"]) < 600


def test_non_ascii_fields_round_trip(ask, segment):
    output, prompt = "/tmp/résumé-π/日本.seg.nrrd", "foie ü"
    result = ask(segment("é", "echo", output=output, prompts=[prompt]))[-1]
    assert result == {"event": "result", "id": "é", "outputs": {"segmentation": output}, "segments": [{"prompt": prompt}]}
