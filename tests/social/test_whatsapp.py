"""WhatsApp through the Cloud API, on both backends: a conversation round-trips (template to an
opted-in contact, the reply through the signed webhook onto the timeline, a free-form answer
inside the 24-hour window, refused outside it), opt-in is required, and the response-time
KPIs. A local server stands in for graph.facebook.com and checks the documented payloads."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from meta_shop import (
    PHONE_NUMBER_ID,
    VERSION,
    WA_TOKEN,
    Graph,
    add_contact,
    deliver,
    meta_env,
    meta_settings,
    wa_status,
    wa_text,
    web_client,
)
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from channels.local_peer import local_peer
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.social.conversations import (
    NoOptIn,
    WindowClosed,
    get_conversation,
    receive,
    reply,
    send_template,
)
from reengage.social.kpis import conversation_kpis
from reengage.social.support import list_conversations, set_status, show
from reengage.social.whatsapp import WhatsAppCloud
from reengage.state.schema import contacts, conversation_messages
from reengage.timeline import timeline

WA_ID = "393331234567"  # the contact's "333 123 4567" in Italy, as WhatsApp writes it
COMPONENTS = [{"type": "body", "parameters": [{"type": "text", "text": "Anna"}]}]


def test_a_whatsapp_conversation_round_trips(
    env: dict[str, str], engine: Engine, clock: FixedClock
) -> None:
    anna = add_contact(engine, clock.now(), consent={"marketing": True})
    graph = Graph()
    with local_peer(graph) as peer:
        settings = meta_settings(env, peer.url)

        # the shop writes first: an approved template, to the opted-in contact
        sent = send_template(
            settings, engine, clock, anna, "cart_reminder", language="it", components=COMPONENTS
        )
        request = peer.last
        assert request.path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages"
        assert request.headers["authorization"] == f"Bearer {WA_TOKEN}"
        assert request.json() == {
            "messaging_product": "whatsapp",
            "to": "+" + WA_ID,
            "type": "template",
            "template": {
                "name": "cart_reminder",
                "language": {"code": "it"},
                "components": COMPONENTS,
            },
        }
        assert sent["provider_id"] == "wamid.OUT1"
        conv = get_conversation(engine, sent["conversation_id"])
        assert (conv.channel, conv.external_id, conv.contact_id) == ("whatsapp", WA_ID, anna)
        assert conv.status == "waiting"

        # no free-form message before the person wrote
        with pytest.raises(WindowClosed, match="not written yet"):
            reply(settings, engine, clock, conv.id, "Hello?")
        assert len(peer.requests) == 1

        # the person answers: through the signed webhook, onto the timeline
        clock.advance(timedelta(hours=1))
        client = web_client(settings, engine, clock)
        answer = deliver(client, wa_text(WA_ID, "wamid.IN1", clock.now(), "Still available?"))
        assert answer.status_code == 200
        assert answer.json() == {"messages": 1, "statuses": 0}
        conv = get_conversation(engine, conv.id)
        assert conv.status == "open"
        items = [i for i in timeline(settings, engine, anna) if i["kind"] == "conversation"]
        assert [(i["type"], i["detail"]["body"]) for i in items] == [
            ("whatsapp:in", "Still available?"),
            ("whatsapp:out", None),
        ]
        assert items[1]["detail"]["template"] == "cart_reminder:it"

        # inside the 24-hour window a free-form answer goes out
        clock.advance(timedelta(minutes=30))
        replied = reply(settings, engine, clock, conv.id, "Yes, in every size!")
        assert peer.last.json() == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+" + WA_ID,
            "type": "text",
            "text": {"body": "Yes, in every size!"},
        }
        assert peer.last.headers["authorization"] == f"Bearer {WA_TOKEN}"
        assert get_conversation(engine, conv.id).status == "waiting"

        # status reports move the message forward, never back
        for status, changed in (("delivered", 1), ("read", 1), ("delivered", 0)):
            got = deliver(client, wa_status(replied["provider_id"], status, clock.now(), WA_ID))
            assert got.json() == {"messages": 0, "statuses": changed}
        with engine.connect() as conn:
            assert (
                conn.execute(
                    select(conversation_messages.c.status).where(
                        conversation_messages.c.id == replied["message_id"]
                    )
                ).scalar_one()
                == "read"
            )

        # 24 hours after the person's message the window is closed: refused, nothing sent
        clock.advance(timedelta(hours=23, minutes=30))
        requests = len(peer.requests)
        with pytest.raises(WindowClosed, match="24-hour customer service window is closed"):
            reply(settings, engine, clock, conv.id, "Anything else?")
        assert len(peer.requests) == requests
        assert show(engine, conv.id, clock)["window_open"] is False

        # ... and the CLI says so in one line
        result = CliRunner().invoke(
            app,
            ["--now", clock.now().isoformat(), "conversations", "reply", str(conv.id), "Hi"],
            env={**env, **meta_env(peer.url)},
        )
        assert result.exit_code == 1
        assert "window is closed" in result.output
        assert len(peer.requests) == requests

        # an approved template is still allowed
        again = send_template(settings, engine, clock, anna, "back_in_stock", language="it")
        assert peer.last.json()["template"] == {"name": "back_in_stock", "language": {"code": "it"}}
        assert again["conversation_id"] == conv.id
        client.close()
    assert graph.problems == []
    messages = show(engine, conv.id, clock)["messages"]
    assert [(m["direction"], m["kind"]) for m in messages] == [
        ("out", "template"),
        ("in", "text"),
        ("out", "text"),
        ("out", "template"),
    ]


def test_no_template_without_opt_in(env: dict[str, str], engine: Engine, clock: FixedClock) -> None:
    never = add_contact(engine, clock.now(), customer_id="C1")
    withdrawn = add_contact(engine, clock.now(), customer_id="C2", phone="+393339999999")
    add_contact(engine, clock.now(), customer_id="C3", phone="+393338888888")
    service = add_contact(
        engine,
        clock.now(),
        customer_id="C4",
        phone="+393337777777",
        consent={"transactional": True},
    )
    with engine.begin() as conn:
        from reengage.state.contacts import ConsentChange, record_consents

        record_consents(
            conn,
            [
                ConsentChange(withdrawn, "whatsapp", "marketing", True, "signup", clock.now()),
                ConsentChange(
                    withdrawn,
                    "whatsapp",
                    "marketing",
                    False,
                    "preferences",
                    clock.now() + timedelta(minutes=1),
                ),
            ],
        )
    clock.advance(timedelta(hours=1))
    graph = Graph()
    with local_peer(graph) as peer:
        settings = meta_settings(env, peer.url)
        for contact in (never, withdrawn, service):
            with pytest.raises(NoOptIn, match="not opted in"):
                send_template(settings, engine, clock, contact, "spring_sale")
        assert peer.requests == []
        # a service template to a contact who agreed to transactional messages
        sent = send_template(
            settings, engine, clock, service, "order_shipped", purpose="transactional"
        )
        assert peer.last.json()["to"] == "+393337777777"
        assert sent["provider_id"].startswith("wamid.")
    assert graph.problems == []


def test_a_message_from_an_unknown_number_makes_a_contact(
    env: dict[str, str], engine: Engine, clock: FixedClock
) -> None:
    settings = meta_settings(env)
    client = web_client(settings, engine, clock)
    got = deliver(client, wa_text("4915112345678", "wamid.X", clock.now(), "Hallo"))
    assert got.json() == {"messages": 1, "statuses": 0}
    client.close()
    with engine.connect() as conn:
        row = conn.execute(select(contacts.c.phone, contacts.c.origin)).one()
    assert (row.phone, row.origin) == ("+4915112345678", "whatsapp")


def test_graph_errors_are_delivery_failures(clock: FixedClock) -> None:
    from channels.local_peer import Reply
    from reengage.channels.delivery import PermanentFailure, TemporaryFailure

    answers = iter(
        [
            Reply(400, {"error": {"message": "Re-engagement message", "code": 131047}}),
            Reply(429, {"error": {"message": "slow down", "code": 130429}}),
        ]
    )
    with local_peer(lambda _: next(answers)) as peer:
        cloud = WhatsAppCloud(
            phone_number_id=PHONE_NUMBER_ID, access_token=WA_TOKEN, graph_url=peer.url
        )
        with pytest.raises(PermanentFailure, match=r"131047.*only a template") as failed:
            cloud.send(cloud.text_payload("+" + WA_ID, "hi"))
        assert WA_ID not in str(failed.value)
        with pytest.raises(TemporaryFailure, match="130429"):
            cloud.send(cloud.text_payload("+" + WA_ID, "hi"))
        cloud.close()


def test_response_time_kpis_on_a_hand_made_case(
    env: dict[str, str], engine: Engine, clock: FixedClock
) -> None:
    from reengage.social.conversations import Inbound, _record_outbound

    t0 = clock.now()
    a, b = "393330000001", "393330000002"
    receive(
        engine,
        [
            Inbound("whatsapp", a, "in-a1", t0),
            Inbound("whatsapp", a, "in-a2", t0 + timedelta(minutes=5)),  # same turn
            Inbound("whatsapp", b, "in-b1", t0 + timedelta(hours=1)),  # never answered
        ],
        t0 + timedelta(hours=1),
    )
    conv_a_id = next(c["id"] for c in list_conversations(engine) if c["external_id"] == a)
    out = {"kind": "text", "body": "ok", "template": None, "status": "waiting"}
    _record_outbound(
        engine, conv_a_id, t0 + timedelta(minutes=30), provider_id="out-a1", **out
    )  # 1800 s
    receive(
        engine, [Inbound("whatsapp", a, "in-a3", t0 + timedelta(hours=2))], t0 + timedelta(hours=2)
    )
    _record_outbound(engine, conv_a_id, t0 + timedelta(hours=4), provider_id="out-a2", **out)
    set_status(engine, clock, conv_a_id, "waiting")

    found = conversation_kpis(engine, t0, t0 + timedelta(days=1))
    assert found["turns"] == 3
    assert found["answered"] == 2
    assert found["median_response_seconds"] == 4500.0  # 1800 and 7200
    assert found["p90_response_seconds"] == 7200.0
    assert found["answered_within_1h_share"] == pytest.approx(1 / 3)
    assert (found["open"], found["waiting"], found["solved"]) == (1, 1, 0)
    # a period that starts after the first turn leaves it out
    later = conversation_kpis(engine, t0 + timedelta(minutes=1), t0 + timedelta(days=1))
    assert (later["turns"], later["answered"]) == (2, 1)

    result = CliRunner().invoke(
        app,
        [
            "--now",
            (t0 + timedelta(days=1)).isoformat(),
            "conversations",
            "kpis",
            "--since",
            t0.isoformat(),
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["median_response_seconds"] == 4500.0
