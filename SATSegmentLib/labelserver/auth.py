"""Token checks for MONAI Label's optional authentication (`MONAI_LABEL_AUTH_ENABLE=true`, a Keycloak realm).

MONAI Label 0.8.5 checks a bearer token with `jwt.decode(token, key, options=...)` and no `algorithms`,
which PyJWT 2 (MONAI Label requires pyjwt>=2.8) refuses for every token: with authentication on, every
request would be answered 401. The app replaces that one dependency (`get_current_user`, through FastAPI's
`dependency_overrides`) with the same check done with an explicit algorithm: the realm's public key
(MONAI Label's own fetch of `MONAI_LABEL_AUTH_REALM_URI`), signature, expiry, and the user and roles from the
claims MONAI Label's settings name. Role checks stay MONAI Label's.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from monailabel.config import settings
from monailabel.endpoints.user import auth

logger = logging.getLogger(__name__)

# A Keycloak realm's `public_key` is the RSA key of its RS256 signing key; accepting only that algorithm also
# keeps a token from choosing how it is checked ("none", or HMAC keyed with the public key).
ALGORITHMS = ["RS256"]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def install(app: FastAPI) -> None:
    """Check tokens with `user_from_token` wherever MONAI Label asks for the current user (when authentication is on)."""
    if settings.MONAI_LABEL_AUTH_ENABLE:
        app.dependency_overrides[auth.get_current_user] = current_user


def current_user(token: str = Depends(auth.oauth2_scheme)) -> auth.User:
    """The user the bearer token names; 401 with our message when it is invalid or expired, 503 when the realm
    cannot be reached. A plain function: FastAPI runs it on a thread, so fetching the realm's key never blocks."""
    try:
        key = auth.get_public_key(settings.MONAI_LABEL_AUTH_REALM_URI)
    except Exception as exc:  # noqa: BLE001 - whatever requests raises; nothing is cached, the next request tries again
        logger.warning("cannot get the realm's public key from %s: %s", settings.MONAI_LABEL_AUTH_REALM_URI, exc)
        raise HTTPException(503, {"code": "auth_unavailable", "exit_code": 1,
                                  "message": "The server cannot reach its authentication server to check your token.",
                                  "hint": "Try again later, or tell the administrator (MONAI_LABEL_AUTH_REALM_URI)."}) from None
    return user_from_token(token, key)


def user_from_token(token: str, key: str) -> auth.User:
    """The user of a token signed with `key`'s private key; HTTP 401 with our message for any bad token."""
    try:
        claims = jwt.decode(token, key, algorithms=ALGORITHMS, options={"verify_aud": False, "require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise _unauthorized("Your token has expired.", "Get a new token and enter it again.") from None
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"The server refused your token: {exc}.", "Enter the token the administrator's sign-in gave you.") from None
    username = claims.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or claims.get("sub")
    if not username:
        raise _unauthorized("Your token names no user.", f"The realm must put '{settings.MONAI_LABEL_AUTH_TOKEN_USERNAME}' in its tokens.")
    roles = _claim(claims, settings.MONAI_LABEL_AUTH_TOKEN_ROLES)
    return auth.User(username=str(username),
                     email=claims.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL), name=claims.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
                     roles=[str(role) for role in roles] if isinstance(roles, list) else [])


def _claim(claims: dict, path: str) -> Any:
    """The claim at `path`, nested names separated by '#' (MONAI Label's setting format, e.g. 'realm_access#roles')."""
    value: Any = claims
    for name in path.split("#"):
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _unauthorized(message: str, hint: str) -> HTTPException:
    return HTTPException(401, {"code": "unauthorized", "exit_code": 2, "message": message, "hint": hint}, headers=_CHALLENGE)
