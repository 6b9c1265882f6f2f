"""`/hooks/meta`, Meta's webhook for WhatsApp, Messenger and Instagram, on both backends: the
subscription handshake, the signature checked before anything is written, repeated
deliveries stored once, and no personal data in the log."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from reengage.clock import FixedClock
from reengage.state.schema import contacts, conversation_messages, conversations
from social.meta_shop import (
    APP_SECRET,
    VERIFY_TOKEN,
    deliver,
    meta_settings,
    wa_text,
    web_client,
)

SENDER = "393331234567"
TEXT = "My order has not arrived"


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (contacts, conversations, conversation_messages)
        )


def test_the_subscription_handshake(env: dict[str, str], engine: Engine, clock: FixedClock) -> None:
    client = web_client(meta_settings(env), engine, clock)
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    got = client.get("/hooks/meta", params=query)
    assert (got.status_code, got.text) == (200, "1158201444")
    assert (
        client.get("/hooks/meta", params={**query, "hub.verify_token": "nope"}).status_code == 403
    )
    assert client.get("/hooks/meta", params={**query, "hub.mode": "unsubscribe"}).status_code == 403
    client.close()
    bare = web_client(
        meta_settings(env).model_copy(update={"meta_verify_token": None}), engine, clock
    )
    assert bare.get("/hooks/meta", params=query).status_code == 404
    bare.close()


def test_a_bad_signature_is_refused_and_nothing_stored(
    env: dict[str, str], engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = web_client(meta_settings(env), engine, clock)
    payload = wa_text(SENDER, "wamid.IN1", clock.now(), TEXT)
    caplog.set_level(logging.INFO)
    assert deliver(client, payload, secret="not-the-secret").status_code == 401
    body = json.dumps(payload).encode()
    unsigned = client.post(
        "/hooks/meta", content=body, headers={"Content-Type": "application/json"}
    )
    assert unsigned.status_code == 401
    # signed, then altered on the way
    from reengage.web.social_hooks import compute_signature

    altered = client.post(
        "/hooks/meta",
        content=body.replace(b"arrived", b"ARRIVED"),
        headers={"X-Hub-Signature-256": compute_signature(APP_SECRET, body)},
    )
    assert altered.status_code == 401
    assert _counts(engine) == (0, 0, 0)
    # well signed but not JSON
    junk = b"not json"
    got = client.post(
        "/hooks/meta",
        content=junk,
        headers={"X-Hub-Signature-256": compute_signature(APP_SECRET, junk)},
    )
    assert got.status_code == 400
    client.close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "X-Hub-Signature-256 does not match" in logged
    assert SENDER not in logged and TEXT not in logged

    # without the app secret the route is not there
    bare = web_client(
        meta_settings(env).model_copy(update={"meta_app_secret": None}), engine, clock
    )
    assert deliver(bare, payload).status_code == 404
    bare.close()


def test_a_repeated_delivery_is_stored_once(
    env: dict[str, str], engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = web_client(meta_settings(env), engine, clock)
    payload = wa_text(SENDER, "wamid.IN1", clock.now() - timedelta(seconds=5), TEXT)
    assert deliver(client, payload).json() == {"messages": 1, "statuses": 0}
    assert deliver(client, payload).json() == {"messages": 0, "statuses": 0}
    assert _counts(engine) == (1, 1, 1)
    # a status report for a message reengage never sent changes nothing
    from social.meta_shop import wa_status

    assert deliver(client, wa_status("wamid.unknown", "read", clock.now(), SENDER)).json() == {
        "messages": 0,
        "statuses": 0,
    }
    client.close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert SENDER not in logged and TEXT not in logged
