"""The `webhook` channel: each message POSTed as JSON to a URL the shop runs, signed so the
receiver can tell it came from reengage and was not replayed.

    POST <webhook_url>
    Content-Type: application/json
    Reengage-Event-Id: msg_<outbox id>          the same on every retry: dedupe on it
    Reengage-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

The signature follows Stripe's scheme: the receiver recomputes the HMAC over the timestamp,
a dot and the raw body with the shared secret, compares in constant time, and refuses a
timestamp too far from its own clock (`verify_signature`). 2xx is a receipt; 429, 5xx and an
unreachable receiver are temporary; any other answer is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import httpx

from reengage.channels.delivery import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    hand_over,
)
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ConfigError

SIGNATURE_HEADER = "Reengage-Signature"
EVENT_ID_HEADER = "Reengage-Event-Id"
SCHEME = "v1"
TOLERANCE = 300  # seconds


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>"."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str,
    body: bytes,
    now: datetime,
    tolerance: int = TOLERANCE,
) -> bool:
    """Whether header signs body with secret, at a time within tolerance seconds of now.

    For receivers: pass the raw request body (before any JSON parsing) and the
    `Reengage-Signature` header. Several `v1=` values are accepted (one per secret while a
    secret is being rotated); any that matches is enough.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == SCHEME and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs(now.timestamp() - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates)


def event_id(message_id: int) -> str:
    return f"msg_{message_id}"


def event(message: Outgoing, created: int) -> dict[str, Any]:
    """The JSON document POSTed for a message."""
    return {
        "id": event_id(message.message_id),
        "type": "message",
        "created": created,
        "message": {
            "id": message.message_id,
            "channel": message.channel,
            "to": message.to,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "headers": message.headers,
            "data": message.data,
        },
    }


class WebhookChannel:
    """POST each message, signed, to one URL."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        clock: Clock,
        *,
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        self.url = url
        self._secret = _key(secret)
        self.clock = clock
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> WebhookChannel:
        # The secret is its own: the home's secret_key signs links and must never be shared
        # with a receiver.
        url, secret = settings.webhook_url, settings.webhook_secret
        if not url or not secret:
            raise ConfigError(
                "the webhook channel needs webhook_url and webhook_secret "
                "(REENGAGE_WEBHOOK_URL, REENGAGE_WEBHOOK_SECRET)"
            )
        return cls(str(url), str(secret), clock)

    def request(self, message: Outgoing) -> tuple[bytes, dict[str, str]]:
        """The body and headers a message is sent with, signed as of the clock's now."""
        created = int(self.clock.now().timestamp())
        body = json.dumps(
            event(message, created), ensure_ascii=False, separators=(",", ":"), default=str
        ).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id(message.message_id),
            SIGNATURE_HEADER: signature_header(self._secret, created, body),
        }
        return body, headers

    def send(self, message: Outgoing) -> Receipt:
        body, headers = self.request(message)
        where = f"webhook {message.message_id}"
        hand_over(message)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TemporaryFailure(
                f"{where}: receiver unreachable ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return Receipt(provider_id=headers[EVENT_ID_HEADER])
        if status == 429 or status >= 500:
            raise TemporaryFailure(f"{where}: receiver answered {status}, try again later")
        raise PermanentFailure(f"{where}: receiver answered {status}")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
