"""Web push (RFC 8030) to the browsers that subscribed, signed with VAPID (RFC 8292) and
encrypted with aes128gcm (RFC 8188 / RFC 8291) by pywebpush.

The home holds one VAPID key pair (`vapid_private.pem`, made by `reengage push keys`); its
public half is the `applicationServerKey` the site passes to `PushManager.subscribe()`.
A subscription (`push_subscriptions`: endpoint, p256dh, auth) belongs to one browser of one
contact; an outbox row for push names one endpoint in `Outgoing.to`.

The push service answers 201 with a `Location` for the message (its receipt). 404 and 410
mean the subscription is gone: it is revoked (`revoked_at`) and never used again. 429 and
5xx are temporary. The `Topic` header carries the outbox id, so a retry replaces a copy the
push service still holds instead of showing the notification twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid  # type: ignore[import-untyped]
from py_vapid.utils import b64urlencode  # type: ignore[import-untyped]
from pywebpush import WebPusher  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine, select

from reengage.channels.delivery import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    hand_over,
)
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ConfigError, InputError
from reengage.state.schema import push_subscriptions

VAPID_KEY_FILE = "vapid_private.pem"
# RFC 8292: the JWT must expire within 24 hours of the request
TOKEN_LIFETIME = timedelta(hours=12)
DEFAULT_TTL = 4 * 24 * 3600  # how long the push service keeps a message for an offline browser
# 4096 bytes per record, less the aes128gcm header (86), the tag (16) and the padding delimiter
MAX_PAYLOAD = 3993


def key_path(home: Path) -> Path:
    return home / VAPID_KEY_FILE


def application_server_key(vapid: Vapid) -> str:
    """The public key as the browser wants it: the uncompressed P-256 point, base64url."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return str(b64urlencode(raw))


def generate_keys(home: Path, *, force: bool = False) -> str:
    """Make the home's VAPID key pair and return its applicationServerKey.

    An existing key is kept unless force: every browser subscribed with the old key would
    have to subscribe again.
    """
    path = key_path(home)
    if path.exists() and not force:
        raise InputError(
            f"{path} exists: pass --force to replace it "
            "(every browser subscribed with the old key must subscribe again)"
        )
    vapid = Vapid()
    vapid.generate_keys()
    home.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".pem.tmp")
    temporary.write_bytes(vapid.private_pem())
    temporary.chmod(0o600)
    temporary.replace(path)
    return application_server_key(vapid)


def load_keys(home: Path) -> Vapid:
    path = key_path(home)
    if not path.is_file():
        raise ConfigError(f"no VAPID key at {path}: run `reengage push keys` first")
    return Vapid.from_file(str(path))


def save_subscription(
    conn: Connection, contact_id: int, endpoint: str, p256dh: str, auth: str, at: datetime
) -> int:
    """Store a browser's subscription (PushSubscription.toJSON(): endpoint and keys) for a
    contact; subscribing again with the same endpoint renews it. Its id."""
    found = conn.execute(
        select(push_subscriptions.c.id).where(push_subscriptions.c.endpoint == endpoint)
    ).scalar_one_or_none()
    values = {"contact_id": contact_id, "p256dh": p256dh, "auth": auth, "revoked_at": None}
    if found is not None:
        conn.execute(
            push_subscriptions.update().where(push_subscriptions.c.id == found).values(**values)
        )
        return int(found)
    key = conn.execute(
        push_subscriptions.insert().values(endpoint=endpoint, created_at=at, **values)
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def active_endpoints(conn: Connection, contact_id: int) -> list[str]:
    """The endpoints a message to this contact should go to: one outbox row each."""
    return list(
        conn.execute(
            select(push_subscriptions.c.endpoint)
            .where(
                push_subscriptions.c.contact_id == contact_id,
                push_subscriptions.c.revoked_at.is_(None),
            )
            .order_by(push_subscriptions.c.id)
        ).scalars()
    )


def revoke(conn: Connection, endpoint: str, at: datetime) -> bool:
    """Mark a subscription gone; True when it was active."""
    result = conn.execute(
        push_subscriptions.update()
        .where(push_subscriptions.c.endpoint == endpoint, push_subscriptions.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return bool(result.rowcount)


def payload(message: Outgoing) -> bytes:
    """What the service worker receives: {"title", "body", "url"} as UTF-8 JSON."""
    data = {"title": message.subject or "", "body": message.text, "url": message.data.get("url")}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class PushChannel:
    """The `push` channel: one encrypted request to the push service per outbox row."""

    name = "push"

    def __init__(
        self,
        engine: Engine,
        vapid: Vapid,
        *,
        subject: str,
        clock: Clock,
        ttl: int = DEFAULT_TTL,
        urgency: str = "normal",
        session: requests.Session | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.engine = engine
        self.vapid = vapid
        self.subject = subject
        self.clock = clock
        self.ttl = ttl
        self.urgency = urgency
        self.timeout = timeout
        self._session = session or requests.Session()
        self._owns_session = session is None

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, clock: Clock) -> PushChannel:
        return cls(engine, load_keys(settings.home), subject=settings.vapid_subject, clock=clock)

    def vapid_headers(self, endpoint: str) -> dict[str, str]:
        """`Authorization: vapid t=<JWT>, k=<public key>` for the endpoint's push service; the
        JWT's aud is the service's origin, its exp taken from the clock."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "sub": self.subject,
            "exp": int((self.clock.now() + TOKEN_LIFETIME).timestamp()),
        }
        return dict(self.vapid.sign(claims))

    def send(self, message: Outgoing) -> Receipt:
        endpoint = message.to
        with self.engine.connect() as conn:
            row = conn.execute(
                select(push_subscriptions.c.p256dh, push_subscriptions.c.auth).where(
                    push_subscriptions.c.endpoint == endpoint,
                    push_subscriptions.c.revoked_at.is_(None),
                )
            ).first()
        if row is None:
            raise PermanentFailure(f"push {message.message_id}: no active subscription")
        body = payload(message)
        if len(body) > MAX_PAYLOAD:
            raise PermanentFailure(
                f"push {message.message_id}: payload of {len(body)} bytes exceeds {MAX_PAYLOAD}"
            )
        headers = {
            **self.vapid_headers(endpoint),
            "Urgency": self.urgency,
            # RFC 8030 5.4: a later message with the same topic replaces an undelivered one
            "Topic": f"m{message.message_id}",
        }
        pusher = WebPusher(
            {"endpoint": endpoint, "keys": {"p256dh": row.p256dh, "auth": row.auth}},
            requests_session=self._session,
        )
        hand_over(message)
        try:
            response = pusher.send(
                body, headers, ttl=self.ttl, content_encoding="aes128gcm", timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise TemporaryFailure(
                f"push {message.message_id}: push service unreachable ({type(exc).__name__})"
            ) from None
        return self._receipt(message.message_id, endpoint, response)

    def _receipt(self, message_id: int, endpoint: str, response: requests.Response) -> Receipt:
        status = response.status_code
        if 200 <= status < 300:
            return Receipt(provider_id=response.headers.get("Location"))
        where = f"push {message_id}: push service answered {status}"
        if status in (404, 410):
            with self.engine.begin() as conn:
                revoke(conn, endpoint, self.clock.now())
            raise PermanentFailure(f"{where}: the subscription is gone and was revoked")
        if status == 429 or status >= 500:
            raise TemporaryFailure(f"{where}, try again later")
        raise PermanentFailure(f"{where}: request refused")

    def close(self) -> None:
        if self._owns_session:
            self._session.close()
