"""The webhook channel: each message as signed JSON, checked by a local receiver the way a
shop's own endpoint would check it (raw body, Reengage-Signature, tolerance on the time)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import httpx
import pytest
from local_peer import Reply, Request, local_peer

from reengage.channels.delivery import Outgoing, PermanentFailure, TemporaryFailure
from reengage.channels.webhook import (
    WebhookChannel,
    signature_header,
    verify_signature,
)
from reengage.clock import FixedClock
from reengage.config import Settings
from reengage.errors import ConfigError

SECRET = "whsec_" + "s" * 32


def message() -> Outgoing:
    return Outgoing(
        message_id=99,
        channel="webhook",
        to="C0000230",
        subject="Bentornato",
        text="Ti abbiamo tenuto da parte qualcosa",
        data={"intent": "winback", "offer": "WB-7K2"},
    )


def channel(url: str, clock: FixedClock) -> WebhookChannel:
    return WebhookChannel(url, SECRET, clock, client=httpx.Client(trust_env=False))


def test_a_message_is_signed_json_the_receiver_can_verify(clock: FixedClock) -> None:
    checked: list[bool] = []

    def receiver(request: Request) -> Reply:
        checked.append(
            verify_signature(
                SECRET, request.headers["reengage-signature"], request.body, clock.now()
            )
        )
        return Reply(204)

    with local_peer(receiver) as peer:
        receipt = channel(f"{peer.url}/hooks/reengage", clock).send(message())
    assert checked == [True]
    assert receipt.provider_id == "msg_99"
    request = peer.last
    assert request.method == "POST"
    assert request.path == "/hooks/reengage"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["reengage-event-id"] == "msg_99"
    now = int(clock.now().timestamp())
    # Stripe's scheme: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
    expected = hmac.new(
        SECRET.encode(), f"{now}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert request.headers["reengage-signature"] == f"t={now},v1={expected}"
    assert request.json() == {
        "id": "msg_99",
        "type": "message",
        "created": now,
        "message": {
            "id": 99,
            "channel": "webhook",
            "to": "C0000230",
            "subject": "Bentornato",
            "text": "Ti abbiamo tenuto da parte qualcosa",
            "html": None,
            "headers": {},
            "data": {"intent": "winback", "offer": "WB-7K2"},
        },
    }


def test_a_retry_carries_the_same_event_id(clock: FixedClock) -> None:
    with local_peer(lambda _r: Reply(200)) as peer:
        sender = channel(peer.url, clock)
        sender.send(message())
        clock.advance(timedelta(minutes=5))
        sender.send(message())
    first, second = peer.requests
    assert first.headers["reengage-event-id"] == second.headers["reengage-event-id"]
    assert first.headers["reengage-signature"] != second.headers["reengage-signature"]


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (429, TemporaryFailure),
        (500, TemporaryFailure),
        (503, TemporaryFailure),
        (400, PermanentFailure),
        (404, PermanentFailure),
        (410, PermanentFailure),
    ],
)
def test_answers_become_failures(clock: FixedClock, status: int, failure: type) -> None:
    with local_peer(lambda _r: Reply(status)) as peer, pytest.raises(failure):
        channel(peer.url, clock).send(message())


def test_an_unreachable_receiver_is_temporary(clock: FixedClock) -> None:
    with local_peer(lambda _r: Reply(200)) as peer:
        url = peer.url
    with pytest.raises(TemporaryFailure):
        channel(url, clock).send(message())


def test_verify_refuses_edits_other_secrets_and_old_timestamps(clock: FixedClock) -> None:
    body = b'{"id":"msg_1"}'
    now = int(clock.now().timestamp())
    header = signature_header(SECRET, now, body)
    assert verify_signature(SECRET, header, body, clock.now())
    assert not verify_signature(SECRET, header, body + b" ", clock.now())
    assert not verify_signature("other", header, body, clock.now())
    assert verify_signature(SECRET, header, body, clock.now() + timedelta(seconds=300))
    assert not verify_signature(SECRET, header, body, clock.now() + timedelta(seconds=301))
    assert verify_signature(SECRET, header, body, clock.now(), tolerance=0)
    assert not verify_signature(SECRET, "", body, clock.now())
    assert not verify_signature(SECRET, f"t={now}", body, clock.now())
    assert not verify_signature(SECRET, "v1=abc", body, clock.now())
    # while a secret is rotated the header may carry one signature per secret
    rotated = f"{header},v1={signature_header('old', now, body).split('v1=')[1]}"
    assert verify_signature("old", rotated, body, clock.now())
    assert verify_signature(SECRET, rotated, body, clock.now())


def test_from_settings_needs_url_and_secret(settings: Settings, clock: FixedClock) -> None:
    with pytest.raises(ConfigError, match="webhook_url"):
        WebhookChannel.from_settings(settings, clock)
