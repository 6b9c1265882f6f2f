"""Web push: VAPID keys in the home, and each message as RFC 8030/8291/8292 describe it.

No browser vendor's push service here: a local HTTP server plays it. The test holds the
browser's side of a realistic subscription (an ECDH P-256 key pair and a 16-byte auth
secret), so it checks the VAPID Authorization header, the aes128gcm encoding and TTL, and
decrypts the payload the way a browser would."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import http_ece  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from local_peer import Reply, Request, local_peer
from py_vapid import Vapid  # type: ignore[import-untyped]
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.channels.delivery import Outgoing, PermanentFailure, TemporaryFailure
from reengage.channels.push import (
    PushChannel,
    active_endpoints,
    generate_keys,
    load_keys,
    save_subscription,
)
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.errors import ConfigError, InputError
from reengage.state.schema import contacts, push_subscriptions


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """The user agent's half of a subscription, as PushManager.subscribe() makes it."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.p256dh = b64url(point)

    def decrypt(self, body: bytes) -> Any:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


def add_contact(engine: Engine, clock: FixedClock) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id="C1",
                created_at=clock.now(),
                updated_at=clock.now(),
                origin="customers",
                attributes={},
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def subscribe(engine: Engine, clock: FixedClock, endpoint: str, browser: Browser) -> int:
    contact = add_contact(engine, clock)
    with engine.begin() as conn:
        save_subscription(
            conn, contact, endpoint, browser.p256dh, b64url(browser.auth), clock.now()
        )
    return contact


def message(endpoint: str) -> Outgoing:
    return Outgoing(
        message_id=7,
        channel="push",
        to=endpoint,
        subject="Il tuo carrello ti aspetta",
        text="Ancora 2 articoli — spedizione gratuita",
        data={"url": "https://shop.example.com/cart?c=7"},
    )


def created(_request: Request) -> Reply:
    return Reply(201, headers={"Location": "/message/abc"})


def test_a_notification_is_signed_encrypted_and_readable_by_the_browser(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    server_key = generate_keys(home.path)
    browser = Browser()
    with local_peer(created) as peer:
        endpoint = f"{peer.url}/wpush/v2/sub-1"
        subscribe(engine, clock, endpoint, browser)
        channel = PushChannel.from_settings(home.settings, engine, clock)
        receipt = channel.send(message(endpoint))
        channel.close()
    assert receipt.provider_id == "/message/abc"
    request = peer.last
    assert request.method == "POST"
    assert request.path == "/wpush/v2/sub-1"
    # RFC 8292: Authorization: vapid t=<JWT>, k=<the applicationServerKey>
    scheme, _, params = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == server_key
    assert Vapid.verify(request.headers["authorization"])
    header, claims_part, _signature = fields["t"].split(".")
    assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
    claims = json.loads(unb64url(claims_part))
    assert claims == {
        "aud": peer.url,
        "sub": home.settings.vapid_subject,
        "exp": int(clock.now().timestamp()) + 12 * 3600,
    }
    # RFC 8030 and RFC 8291
    assert request.headers["content-encoding"] == "aes128gcm"
    assert int(request.headers["ttl"]) > 0
    assert request.headers["urgency"] == "normal"
    assert request.headers["topic"] == "m7"
    assert browser.decrypt(request.body) == {
        "title": "Il tuo carrello ti aspetta",
        "body": "Ancora 2 articoli — spedizione gratuita",
        "url": "https://shop.example.com/cart?c=7",
    }


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_revoked(
    home: Home, engine: Engine, clock: FixedClock, status: int
) -> None:
    generate_keys(home.path)
    browser = Browser()
    with local_peer(lambda _r: Reply(status)) as peer:
        endpoint = f"{peer.url}/sub-gone"
        contact = subscribe(engine, clock, endpoint, browser)
        channel = PushChannel.from_settings(home.settings, engine, clock)
        with pytest.raises(PermanentFailure):
            channel.send(message(endpoint))
        with pytest.raises(PermanentFailure, match="no active subscription"):
            channel.send(message(endpoint))
    assert len(peer.requests) == 1
    with engine.connect() as conn:
        revoked = conn.execute(select(push_subscriptions.c.revoked_at)).scalar_one()
        assert revoked is not None
        assert active_endpoints(conn, contact) == []
    # the browser subscribing again renews the same endpoint
    with engine.begin() as conn:
        save_subscription(
            conn, contact, endpoint, browser.p256dh, b64url(browser.auth), clock.now()
        )
        assert active_endpoints(conn, contact) == [endpoint]


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (429, TemporaryFailure),
        (502, TemporaryFailure),
        (413, PermanentFailure),
        (403, PermanentFailure),
    ],
)
def test_other_answers(
    home: Home, engine: Engine, clock: FixedClock, status: int, failure: type
) -> None:
    generate_keys(home.path)
    with local_peer(lambda _r: Reply(status)) as peer:
        endpoint = f"{peer.url}/sub-busy"
        subscribe(engine, clock, endpoint, Browser())
        with pytest.raises(failure):
            PushChannel.from_settings(home.settings, engine, clock).send(message(endpoint))
    with engine.connect() as conn:
        assert conn.execute(select(push_subscriptions.c.revoked_at)).scalar_one() is None


def test_an_unreachable_push_service_is_temporary(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    generate_keys(home.path)
    with local_peer(created) as peer:
        endpoint = f"{peer.url}/sub"
    subscribe(engine, clock, endpoint, Browser())
    with pytest.raises(TemporaryFailure):
        PushChannel.from_settings(home.settings, engine, clock).send(message(endpoint))


def test_keys_are_kept_unless_forced(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reengage push keys"):
        load_keys(tmp_path)
    first = generate_keys(tmp_path)
    assert len(unb64url(first)) == 65 and unb64url(first)[0] == 4
    with pytest.raises(InputError, match="--force"):
        generate_keys(tmp_path)
    assert generate_keys(tmp_path, force=True) != first
    assert (tmp_path / "vapid_private.pem").stat().st_mode & 0o077 == 0


def test_push_keys_command(cli: CliRunner, home: Home) -> None:
    made = cli.invoke(app, ["push", "keys", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)["application_server_key"]
    assert (home.path / "vapid_private.pem").is_file()
    again = cli.invoke(app, ["push", "keys"])
    assert again.exit_code == 2
    assert "--force" in again.stderr
    forced = cli.invoke(app, ["push", "keys", "--force"])
    assert forced.exit_code == 0
    assert key not in forced.stdout
