"""Queueing messages, on SQLite and PostgreSQL: idempotent on the key, style and language chosen
when queued, checked arguments, the batch form, the listing and the commands."""

from __future__ import annotations

import importlib
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.errors import InputError
from reengage.messages.outbox import OutboxItem, enqueue, enqueue_many, list_messages
from reengage.state.schema import consents, contacts, messages, scores

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
_keys = itertools.count(1)


@pytest.fixture
def shop_settings(home: Home, env: dict[str, str]) -> Settings:
    return load_settings(env)


def add_contact(
    engine: Engine,
    *,
    language: str | None = "en",
    styles: tuple[tuple[int, str | None], ...] = ((1, "promoter"),),
    email: str | None = None,
    consent: bool = False,
) -> int:
    """A contact with a scores row per (days ago, style)."""
    n = next(_keys)
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id=f"K{n}",
                email=email or f"k{n}@example.org",
                language=language,
                created_at=T0 - timedelta(days=300),
                updated_at=T0 - timedelta(days=300),
                origin="customers",
                attributes={},
            )
        ).inserted_primary_key
        assert key is not None
        contact_id = int(key[0])
        for days, style in styles:
            conn.execute(
                scores.insert().values(
                    contact_id=contact_id,
                    as_of=T0 - timedelta(days=days),
                    computed_at=T0 - timedelta(days=days),
                    orders=0,
                    total_spent=0.0,
                    lifecycle="prospect",
                    threshold_days=90.0,
                    style=style,
                    details={},
                )
            )
        if consent:
            conn.execute(
                consents.insert().values(
                    contact_id=contact_id,
                    channel="email",
                    purpose="marketing",
                    granted=True,
                    source="signup",
                    recorded_at=T0 - timedelta(days=30),
                )
            )
    return contact_id


def queue(engine: Engine, settings: Settings, contact_id: int, **values: Any) -> int | None:
    arguments: dict[str, Any] = {
        "message_key": f"k:{next(_keys)}",
        "contact_id": contact_id,
        "intent": "cart_reminder",
        "channel": "email",
        "due_at": T0,
        "clock": FixedClock(T0),
        "settings": settings,
    }
    arguments.update(values)
    with engine.begin() as conn:
        return enqueue(conn, **arguments)


def row(engine: Engine, message_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == message_id)).one()


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


def test_enqueue_writes_a_queued_row_once_per_key(engine: Engine, shop_settings: Settings) -> None:
    contact = add_contact(engine)
    payload = {"cart_total": "€10.00", "product_id": "P1"}
    first = queue(
        engine,
        shop_settings,
        contact,
        message_key="journey:cart:7:reminder_1",
        journey="cart",
        step="reminder_1",
        priority=80,
        payload=payload,
        due_at=T0 + timedelta(hours=1),
    )
    assert isinstance(first, int)
    again = queue(
        engine, shop_settings, contact, message_key="journey:cart:7:reminder_1", priority=1
    )
    assert again is None
    assert count(engine) == 1
    stored = row(engine, first)
    assert stored.status == "queued" and stored.attempts == 0
    assert (stored.journey, stored.step, stored.priority) == ("cart", "reminder_1", 80)
    assert stored.payload == payload
    assert stored.due_at.replace(tzinfo=UTC) == T0 + timedelta(hours=1)
    assert stored.created_at.replace(tzinfo=UTC) == T0
    assert stored.claimed_at is None and stored.sent_at is None


def test_style_is_the_latest_scored_one_and_unknown_is_neutral(
    engine: Engine, shop_settings: Settings
) -> None:
    rescored = add_contact(engine, styles=((10, "examiner"), (2, "nurturer"), (5, "go_getter")))
    never = add_contact(engine, styles=())
    unknown = add_contact(engine, styles=((1, None),))
    cases = {rescored: ("nurturer", "nurturer"), never: ("unknown", "neutral")}
    cases[unknown] = ("unknown", "neutral")
    for contact, expected in cases.items():
        message_id = queue(engine, shop_settings, contact)
        assert message_id is not None
        stored = row(engine, message_id)
        assert (stored.style, stored.variant) == expected
    # an experiment's arm: neutral copy for a styled contact, both written down
    arm = queue(engine, shop_settings, rescored, variant="neutral")
    assert arm is not None
    assert (row(engine, arm).style, row(engine, arm).variant) == ("nurturer", "neutral")


@pytest.mark.parametrize(
    ("language", "expected"),
    [("fr-FR", "fr"), ("IT", "it"), ("de", "it"), (None, "it"), ("en_GB", "en")],
)
def test_language_is_the_contacts_when_copy_ships_for_it(
    engine: Engine, shop_settings: Settings, language: str | None, expected: str
) -> None:
    italian_shop = shop_settings.model_copy(update={"language": "it"})
    message_id = queue(engine, italian_shop, add_contact(engine, language=language))
    assert message_id is not None
    assert row(engine, message_id).language == expected


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"intent": "cart_remindr"}, "unknown intent"),
        ({"channel": "ads"}, "channel 'ads'"),
        ({"channel": "carrier_pigeon"}, "channel"),
        ({"variant": "bold"}, "unknown variant"),
        ({"due_at": datetime(2026, 11, 2, 10, 0)}, "timezone-aware"),
        ({"contact": 999_999}, "no contact"),
        ({"payload": {"when": datetime(2026, 1, 1)}}, "not JSON"),
        ({"message_key": ""}, "message_key"),
        ({"message_key": "x" * 201}, "message_key"),
        ({"journey": "j" * 101}, "journey"),
        ({"priority": 40_000}, "priority"),
    ],
)
def test_enqueue_refuses_what_cannot_be_sent(
    engine: Engine, shop_settings: Settings, values: dict[str, Any], error: str
) -> None:
    values = dict(values)  # the parameters are shared by both backends' runs
    contact = values.pop("contact", None) or add_contact(engine)
    with pytest.raises(InputError, match=error):
        queue(engine, shop_settings, contact, **values)
    assert count(engine) == 0


def test_enqueue_many_queues_a_campaign_in_one_go(engine: Engine, shop_settings: Settings) -> None:
    a = add_contact(engine, language="fr", styles=((1, "examiner"),))
    b = add_contact(engine, language=None, styles=())
    before = queue(engine, shop_settings, a, message_key="campaign:spring:a")
    items = [
        OutboxItem("campaign:spring:a", a, "winback_reminder", "email", T0, campaign="spring"),
        OutboxItem("campaign:spring:b", b, "winback_reminder", "email", T0, campaign="spring"),
        OutboxItem("campaign:spring:b", b, "winback_reminder", "email", T0, campaign="spring"),
        OutboxItem("campaign:spring:c", a, "vip_thanks", "sms", T0, priority=5, variant="neutral"),
    ]
    with engine.begin() as conn:
        ids = enqueue_many(conn, items, clock=FixedClock(T0), settings=shop_settings)
    assert ids[0] is None and ids[2] is None
    assert isinstance(ids[1], int) and isinstance(ids[3], int)
    assert len({before, ids[1], ids[3]}) == 3
    assert count(engine) == 3
    b_row, c_row = row(engine, ids[1]), row(engine, ids[3])
    assert (b_row.style, b_row.variant, b_row.language) == ("unknown", "neutral", "en")
    assert (b_row.campaign, b_row.intent, b_row.status) == ("spring", "winback_reminder", "queued")
    assert (c_row.style, c_row.variant, c_row.language) == ("examiner", "neutral", "fr")
    assert (c_row.channel, c_row.priority) == ("sms", 5)
    with engine.begin() as conn:
        assert enqueue_many(conn, items, clock=FixedClock(T0), settings=shop_settings) == [None] * 4
        assert enqueue_many(conn, [], clock=FixedClock(T0), settings=shop_settings) == []
        with pytest.raises(InputError):
            enqueue_many(
                conn,
                [OutboxItem("bad", a, "nope", "email", T0)],
                clock=FixedClock(T0),
                settings=shop_settings,
            )


def test_two_writers_of_one_key_queue_one_message(engine: Engine, shop_settings: Settings) -> None:
    contact = add_contact(engine)
    inserted = threading.Event()
    answers: list[int | None] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            inserted.wait(timeout=30)
            answers.append(queue(engine, shop_settings, contact, message_key="same"))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    with engine.begin() as conn:  # holds its insert, uncommitted, while the other tries
        first = enqueue(
            conn,
            message_key="same",
            contact_id=contact,
            intent="cart_reminder",
            channel="email",
            due_at=T0,
            clock=FixedClock(T0),
            settings=shop_settings,
        )
        inserted.set()
        worker.join(timeout=0.5)
    worker.join()
    assert errors == []
    assert first is not None and answers == [None]
    assert count(engine) == 1


def test_list_shows_the_outbox_newest_first(engine: Engine, shop_settings: Settings) -> None:
    a = add_contact(engine, email="Ada@Example.org")
    b = add_contact(engine)
    first = queue(engine, shop_settings, a, journey="cart", step="r1")
    second = queue(engine, shop_settings, b, campaign="spring")
    third = queue(engine, shop_settings, a, intent="thank_you")
    with engine.begin() as conn:
        conn.execute(
            messages.update()
            .where(messages.c.id == second)
            .values(status="blocked", reason="no_consent")
        )
    listed = list_messages(engine)
    assert [r.id for r in listed] == [third, second, first]
    assert [r.id for r in list_messages(engine, status="blocked")] == [second]
    assert list_messages(engine, status="blocked")[0].reason == "no_consent"
    assert [r.id for r in list_messages(engine, contact="ada@example.org")] == [third, first]
    assert [r.id for r in list_messages(engine, contact=listed[0].customer_id or "")] == [
        third,
        first,
    ]
    assert [r.id for r in list_messages(engine, limit=1)] == [third]
    data = listed[2].as_dict()
    assert (data["journey"], data["step"], data["at"]) == ("cart", "r1", T0)
    with pytest.raises(InputError):
        list_messages(engine, status="lost")
    with pytest.raises(InputError):
        list_messages(engine, contact="nobody@example.org")


# --- the commands ----------------------------------------------------------------------------


@pytest.fixture
def outbox_commands() -> Iterator[None]:
    """`messages send|deliver|list`, registered for this test only when reengage.cli does not
    register them itself (a command list taken at collection, as tests/test_docs.py does,
    stays as cli.py makes it)."""
    from reengage.messages.commands import messages_app

    before = list(messages_app.registered_commands)
    import reengage.messages.outbox_commands as module

    if "deliver" not in {c.name for c in messages_app.registered_commands}:
        importlib.reload(module)  # imported by an earlier test, and unregistered after it
    yield
    messages_app.registered_commands[:] = before


def test_send_deliver_and_list_commands(
    cli: CliRunner, engine: Engine, home: Home, outbox_commands: None
) -> None:
    consenting = add_contact(engine, email="proof@example.org", consent=True)
    refusing = add_contact(engine, email="nope@example.org")
    with engine.begin() as conn:  # she asked for no email at all, even about her orders
        conn.execute(
            consents.insert().values(
                contact_id=refusing,
                channel="email",
                purpose="transactional",
                granted=False,
                source="preferences",
                recorded_at=T0 - timedelta(days=30),
            )
        )
    now = ["--now", "2026-11-02T10:00:00Z"]
    queued = cli.invoke(
        app,
        [
            *now,
            "messages",
            "send",
            "--intent",
            "cart_reminder",
            "--customer",
            "proof@example.org",
            "--json",
        ],
    )
    assert queued.exit_code == 0, queued.output
    data = json.loads(queued.stdout)
    assert (data["status"], data["intent"], data["campaign"]) == (
        "queued",
        "cart_reminder",
        "manual",
    )
    assert data["contact_id"] == consenting and data["variant"] == "promoter"
    plain = cli.invoke(
        app, [*now, "messages", "send", "--intent", "thank_you", "--customer", "nope@example.org"]
    )
    assert plain.exit_code == 0 and "Queued message" in plain.stdout
    unknown = cli.invoke(
        app, [*now, "messages", "send", "--intent", "nope", "--customer", "proof@example.org"]
    )
    assert unknown.exit_code == 2 and "unknown intent" in unknown.output

    delivered = cli.invoke(app, [*now, "messages", "deliver", "--json"])
    assert delivered.exit_code == 0, delivered.output
    summary = json.loads(delivered.stdout)
    assert (summary["claimed"], summary["sent"], summary["blocked"]) == (2, 1, 1)
    assert summary["reasons"] == {"no_consent": 1}  # she refused service email
    assert (home.settings.mail_path / "new").is_dir()

    listed = cli.invoke(app, ["messages", "list", "--status", "sent", "--json"])
    assert listed.exit_code == 0, listed.output
    [sent] = json.loads(listed.stdout)
    assert (sent["contact_id"], sent["status"], sent["channel"]) == (consenting, "sent", "email")
    blocked = cli.invoke(app, ["messages", "list", "--contact", "nope@example.org", "--json"])
    [held] = json.loads(blocked.stdout)
    assert (held["contact_id"], held["status"], held["reason"]) == (
        refusing,
        "blocked",
        "no_consent",
    )
    assert sent["language"] == "en" and sent["subject"]
    table = cli.invoke(app, ["messages", "list", "--contact", "proof@example.org"])
    assert table.exit_code == 0 and "cart_reminder" in table.stdout
    assert cli.invoke(app, ["messages", "list", "--status", "gone"]).exit_code == 2
    again = cli.invoke(app, [*now, "messages", "deliver"])
    assert again.exit_code == 0 and "Delivered 0 of 0" in again.stdout
