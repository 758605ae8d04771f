"""Signed tokens for links in mails (unsubscribe, sign-up confirmation): HMAC-SHA256 over a
purpose and a small JSON payload, URL-safe. Pure: the secret and the time come in as arguments."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any


class BadToken(ValueError):
    """A token that is malformed, forged, for another purpose, or expired."""


def sign_token(payload: dict[str, Any], *, secret: str, purpose: str) -> str:
    if not secret:
        raise ValueError("no secret key configured (AGGREGATOR_SECRET_KEY)")
    body = _b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_signature(body, secret=secret, purpose=purpose)}"


def read_token(
    token: str,
    *,
    secret: str,
    purpose: str,
    max_age: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The payload of a token this secret signed for this purpose. A payload with an issue time
    `t` (epoch seconds) is refused once older than `max_age` at `now`."""
    body, _, signature = token.partition(".")
    if not secret or not body or not signature:
        raise BadToken("malformed token")
    if not hmac.compare_digest(signature, _signature(body, secret=secret, purpose=purpose)):
        raise BadToken("bad signature")
    try:
        payload = json.loads(_b64decode(body))
    except ValueError as exc:
        raise BadToken("malformed token") from exc
    if not isinstance(payload, dict):
        raise BadToken("malformed token")
    if max_age is not None and now is not None:
        _check_age(payload, max_age=max_age, now=now)
    return payload


def _check_age(payload: dict[str, Any], *, max_age: timedelta, now: datetime) -> None:
    issued = payload.get("t")
    if not isinstance(issued, int | float) or now.timestamp() - issued > max_age.total_seconds():
        raise BadToken("expired token")


def _signature(body: str, *, secret: str, purpose: str) -> str:
    mac = hmac.new(secret.encode(), f"{purpose}.{body}".encode(), hashlib.sha256)
    return _b64encode(mac.digest())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise BadToken("malformed token") from exc
