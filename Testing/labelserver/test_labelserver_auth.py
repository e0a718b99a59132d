"""MONAI Label's authentication on a real server (127.0.0.1, tiny model) with a stand-in Keycloak realm that
publishes a public key generated here and signs the tokens: a valid token is served, a missing, forged,
expired or role-less token is refused with our message through the module's client, and one user cannot
follow or cancel another user's job; a realm that cannot be reached is answered 503."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "SATSegment"))
from SATSegmentSlicerLib.remote import LabelServerClient, RemoteError, new_job_id  # noqa: E402

from SATSegmentLib import __version__  # noqa: E402
from SATSegmentLib.labelserver.testing import server_python  # noqa: E402

REALM = Path(__file__).with_name("standin_realm.py")
USER_ROLE = "monailabel-user"  # MONAI Label's default role for /info/ and /infer


@pytest.fixture(scope="module")
def realm():
    """The stand-in realm's URL and a `sign(claims, key="realm")` that returns a token."""
    python = server_python()
    if python is None:
        pytest.fail("MONAI Label is not installed: run `bash .ci/server-env`.")
    process = subprocess.Popen([python, str(REALM)], stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{process.stdout.readline().strip()}"

    def sign(claims: dict, key: str = "realm") -> str:
        request = urllib.request.Request(f"{url}/sign?key={key}", json.dumps(claims).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()

    yield f"{url}/realms/satsegment", sign
    process.kill()
    process.wait()


@pytest.fixture(scope="module")
def auth_server(realm, tmp_path_factory, tiny_model_dir, scan_writers, server_starter):
    """A server with MONAI Label's authentication on, checking tokens against the stand-in realm."""
    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm[0]}
    server = server_starter(tmp_path_factory.mktemp("auth-server"), tiny_model_dir, scan_writers, env=env)
    yield server
    server.stop()


def _claims(user: str, roles=(USER_ROLE,), expires_in: float = 3600) -> dict:
    """Claims as Keycloak puts them in an access token (MONAI Label reads the user and roles from these)."""
    now = int(time.time())
    return {"preferred_username": user, "realm_access": {"roles": list(roles)}, "iat": now, "exp": int(now + expires_in)}


def test_a_valid_token_is_served(auth_server, realm):
    client = LabelServerClient(auth_server.url, token=realm[1](_claims("ann")), timeout=300)
    assert client.check(__version__)["models"] == ["tiny"]
    assert client.segment(["liver"], "ct", image_id="ct").label_names == {"liver": 1}


@pytest.mark.parametrize("case, status, message", [
    ("none", 401, "The server needs a token."),
    ("forged", 401, "The server refused your token: Signature verification failed."),
    ("expired", 401, "Your token has expired."),
    ("garbage", 401, "The server refused your token"),
    ("no role", 403, f'Role "{USER_ROLE}" is required'),
])
def test_a_missing_or_bad_token_is_refused_with_a_clear_message(auth_server, realm, case, status, message):
    sign = realm[1]
    token = {"none": None, "forged": sign(_claims("ann"), key="other"), "expired": sign(_claims("ann", expires_in=-60)),
             "garbage": "not-a-token", "no role": sign(_claims("ann", roles=()))}[case]
    client = LabelServerClient(auth_server.url, token=token, timeout=60)
    for call in (client.check, lambda: client.segment(["liver"], "ct", image_id="ct")):
        with pytest.raises(RemoteError) as caught:
            call()
        assert caught.value.status == status and message in caught.value.message and caught.value.hint


def test_a_user_cannot_follow_or_cancel_another_users_job(auth_server, realm, long_scan, jobs_helpers):
    Background, wait_until = jobs_helpers
    ann = LabelServerClient(auth_server.url, token=realm[1](_claims("ann")), timeout=300)
    bob = LabelServerClient(auth_server.url, token=realm[1](_claims("bob")), timeout=300)
    job_id = new_job_id()
    job = Background(lambda: ann.segment(["liver"], "ct", image_path=long_scan(), job_id=job_id))
    wait_until(lambda: ann.status(job_id)["state"] == "running", what="ann's job to run")
    for call in (bob.cancel, bob.status):
        with pytest.raises(RemoteError, match="belongs to another user") as caught:
            call(job_id)
        assert caught.value.status == 403
    assert ann.status(job_id)["state"] == "running"
    assert ann.cancel(job_id) is True
    outcome = job.wait(120)
    assert isinstance(outcome, RemoteError) and outcome.code == "cancelled"


def test_an_unreachable_realm_is_answered_503_and_the_server_stays_up(tmp_path, tiny_model_dir, scan_writers, server_starter):
    from SATSegmentLib.labelserver.testing import free_port

    env = {"MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": f"http://127.0.0.1:{free_port()}/realms/gone"}
    server = server_starter(tmp_path, tiny_model_dir, scan_writers, env=env)
    try:
        for _ in range(2):  # nothing cached: each request tries the realm again
            with pytest.raises(RemoteError, match="cannot reach its authentication server") as caught:
                LabelServerClient(server.url, token="a.b.c", timeout=60).check()
            assert caught.value.status == 503 and caught.value.code == "auth_unavailable"
        assert server.process.poll() is None
    finally:
        server.stop()
