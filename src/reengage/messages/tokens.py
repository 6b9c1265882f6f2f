"""Signed tokens for every link that acts on a person (click, open, unsubscribe, preferences).

A token is `<payload>.<signature>`: the payload is compact JSON in URL-safe base64, the
signature HMAC-SHA256 over the purpose and the payload with the home's `secret_key`. The
purpose is signed too, so an open-pixel token cannot be replayed as an unsubscribe. Tokens
carry ids, never an address or a name, and do not expire: an unsubscribe link must keep
working years after the email was sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from reengage.errors import ReengageError

PURPOSES = ("click", "open", "unsubscribe", "preferences", "survey")


class BadToken(ReengageError):
    """A token that was altered, truncated, made with another key or for another purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, purpose: str, body: str) -> str:
    mac = hmac.new(secret, f"{purpose}.{body}".encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def sign(secret: bytes, purpose: str, payload: dict[str, Any]) -> str:
    """A URL-safe token carrying payload (small JSON values: ids, a URL) for purpose."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{body}.{_signature(secret, purpose, body)}"


def verify(secret: bytes, purpose: str, token: str) -> dict[str, Any]:
    """The payload of a token signed with secret for purpose; BadToken otherwise."""
    body, dot, mac = token.partition(".")
    if not dot or not body or not mac:
        raise BadToken("malformed token")
    if not hmac.compare_digest(mac, _signature(secret, purpose, body)):
        raise BadToken("token signature does not match")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed token payload") from None
    if not isinstance(payload, dict):
        raise BadToken("malformed token payload")
    return payload
