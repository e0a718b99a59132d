"""A stand-in Keycloak realm on 127.0.0.1 for the authentication tests, run with the server's Python (it has
PyJWT and cryptography): GET /realms/satsegment publishes the realm's RSA public key as Keycloak does
(`public_key`, base64 DER), POST /sign signs the JSON claims it is sent, with the realm's key or, with
?key=other, with a key the realm does not publish. Prints its port, then serves until killed."""

from __future__ import annotations

import base64
import json
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REALM_PATH = "/realms/satsegment"
KEYS = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("realm", "other")}


def published_key() -> str:
    der = KEYS["realm"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class Realm(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != REALM_PATH:
            return self._send(404, b"{}")
        self._send(200, json.dumps({"realm": "satsegment", "public_key": published_key()}).encode())

    def do_POST(self) -> None:
        url = urllib.parse.urlparse(self.path)
        key = urllib.parse.parse_qs(url.query).get("key", ["realm"])[0]
        claims = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(200, jwt.encode(claims, KEYS[key], algorithm="RS256").encode(), "text/plain")

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Realm)
    print(server.server_address[1], flush=True)
    server.serve_forever()
