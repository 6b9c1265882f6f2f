"""Facebook Messenger and Instagram messages, on both backends: a message through the signed
webhook opens a conversation, the answer goes out through the Send API as documented inside
the 24-hour window and is refused outside it; deliveries and reads come back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from meta_shop import (
    PAGE_ID,
    PAGE_TOKEN,
    VERSION,
    Graph,
    deliver,
    meta_settings,
    page_payload,
    page_text,
    web_client,
)
from sqlalchemy import Engine, select

from channels.local_peer import local_peer
from reengage.clock import FixedClock
from reengage.social.conversations import WindowClosed, get_conversation, reply
from reengage.social.support import assign, set_status, show
from reengage.state.schema import contacts
from reengage.timeline import timeline

PSID = "6789012345678901"


def test_a_messenger_conversation_round_trips(
    env: dict[str, str], engine: Engine, clock: FixedClock
) -> None:
    graph = Graph()
    with local_peer(graph) as peer:
        settings = meta_settings(env, peer.url)
        client = web_client(settings, engine, clock)
        got = deliver(client, page_payload([page_text(PSID, "m_IN1", clock.now(), "Hi!")]))
        assert got.json() == {"messages": 1, "statuses": 0}
        conv = get_conversation(engine, 1)
        assert (conv.channel, conv.external_id, conv.status) == ("messenger", PSID, "open")
        with engine.connect() as conn:
            origin = conn.execute(
                select(contacts.c.origin).where(contacts.c.id == conv.contact_id)
            ).scalar_one()
        assert origin == "messenger"
        assert timeline(settings, engine, conv.contact_id)[0]["type"] == "messenger:in"

        # support takes it and answers inside the window
        assign(engine, clock, conv.id, "support@shop.example.com")
        clock.advance(timedelta(minutes=10))
        sent = reply(settings, engine, clock, conv.id, "Hello, how can we help?")
        request = peer.last
        assert request.path == f"/{VERSION}/{PAGE_ID}/messages"
        assert request.query == {"access_token": [PAGE_TOKEN]}
        assert request.json() == {
            "recipient": {"id": PSID},
            "messaging_type": "RESPONSE",
            "message": {"text": "Hello, how can we help?"},
        }
        conv = get_conversation(engine, conv.id)
        assert (conv.status, conv.assignee) == ("waiting", "support@shop.example.com")

        # Messenger reports the delivery by message id and the read by watermark
        delivery = {
            "sender": {"id": PSID},
            "recipient": {"id": PAGE_ID},
            "timestamp": int(clock.now().timestamp() * 1000),
            "delivery": {"mids": [sent["provider_id"]], "watermark": 1},
        }
        assert deliver(client, page_payload([delivery])).json()["statuses"] == 1
        read = {
            "sender": {"id": PSID},
            "recipient": {"id": PAGE_ID},
            "timestamp": int(clock.now().timestamp() * 1000),
            "read": {"watermark": int(clock.now().timestamp() * 1000)},
        }
        assert deliver(client, page_payload([read])).json()["statuses"] == 1
        assert show(engine, conv.id, clock)["messages"][-1]["status"] == "read"

        # the page's own messages come back as echoes: not stored
        echo = page_text(PAGE_ID, "m_ECHO", clock.now(), "Hello, how can we help?")
        echo["message"]["is_echo"] = True
        assert deliver(client, page_payload([echo])).json() == {"messages": 0, "statuses": 0}

        # solved, then the person writes again: open again
        set_status(engine, clock, conv.id, "solved")
        clock.advance(timedelta(hours=2))
        deliver(client, page_payload([page_text(PSID, "m_IN2", clock.now(), "One more")]))
        assert get_conversation(engine, conv.id).status == "open"

        # a day later: no standard message outside the window
        clock.advance(timedelta(hours=24))
        requests = len(peer.requests)
        with pytest.raises(WindowClosed, match="free-form messenger message is not allowed"):
            reply(settings, engine, clock, conv.id, "Are you there?")
        assert len(peer.requests) == requests
        client.close()
    assert graph.problems == []


def test_instagram_messages_are_their_own_channel(
    env: dict[str, str], engine: Engine, clock: FixedClock
) -> None:
    settings = meta_settings(env)
    client = web_client(settings, engine, clock)
    payload = page_payload([page_text("17841400000000", "ig_IN1", clock.now(), "👋")], "instagram")
    assert deliver(client, payload).json() == {"messages": 1, "statuses": 0}
    client.close()
    conv = get_conversation(engine, 1)
    assert (conv.channel, conv.external_id) == ("instagram", "17841400000000")
    assert show(engine, conv.id, clock)["messages"][0]["body"] == "👋"
