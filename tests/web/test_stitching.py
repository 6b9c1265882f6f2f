"""Identity stitching: a visitor's anonymous history joins the contact they identify as (by
customer id, or by an email, which makes the contact when it is new), so journeys see the
earlier anonymous events as that contact's; an anonymous id never moves to another contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from sqlalchemy import Engine, select
from test_collector import NOW, serving, stored_events

from reengage.config import Home
from reengage.facts import reader
from reengage.ingest.collected import store_records
from reengage.ingest.events_in import check_event
from reengage.ingest.journal import RECORD_SCHEMA
from reengage.journeys.definition import parse_journey
from reengage.journeys.entries import firings
from reengage.state.contacts import contact_ids_by_customer, identity_owners
from reengage.state.schema import contacts, identities

JOURNEY = (
    "name: t\ntrigger: {event: product_view}\nreentry: always\nsteps:\n  - {id: done, type: end}\n"
)


def at(minutes: int) -> str:
    return (NOW - timedelta(hours=2) + timedelta(minutes=minutes)).isoformat()


def records(*events: dict[str, object]) -> pa.Table:
    checked = [check_event(e, NOW, UTC) for e in events]
    assert all(isinstance(c, dict) for c in checked), checked
    return pa.Table.from_pylist(checked, schema=RECORD_SCHEMA)


def test_a_login_brings_the_anonymous_history_to_the_contact(home: Home, engine: Engine) -> None:
    settings = home.settings
    browsing = [
        {"type": "product_view", "anonymous_id": "cookie-1", "product_id": "P1"}
        | {"occurred_at": at(m)}
        for m in (0, 5)
    ]
    with serving(settings, engine) as client:
        client.post("/t/events", json={"events": browsing})
    # stored, but nobody's yet: journeys fire for no one
    window = (NOW - timedelta(days=1), NOW)
    journey = parse_journey(JOURNEY, name="t", shown="t.yaml")

    def fired() -> list[tuple[int, str]]:
        facts = reader.connect(settings.facts_path)
        try:
            with engine.connect() as conn:
                found = firings(
                    journey,
                    *window,
                    conn=conn,
                    facts=facts,
                    root=settings.facts_path,
                    zone=settings.zone,
                )
        finally:
            facts.close()
        return [(f.contact_id, f.at.isoformat()) for f in found]

    assert fired() == []

    login = {"type": "identify", "anonymous_id": "cookie-1", "customer_id": "C7"}
    with serving(settings, engine) as client:
        answer = client.post("/t/events", json={"events": [login | {"occurred_at": at(9)}]})
        assert answer.json()["accepted"] == 1
    with engine.connect() as conn:
        contact = contact_ids_by_customer(conn, ["C7"])["C7"]
        assert identity_owners(conn, "anonymous_id", ["cookie-1"]) == {"cookie-1": contact}
    assert fired() == [
        (contact, datetime.fromisoformat(at(0)).isoformat()),
        (contact, datetime.fromisoformat(at(5)).isoformat()),
    ]


def test_an_email_capture_makes_the_contact_and_stays_out_of_the_facts(
    home: Home, engine: Engine
) -> None:
    settings = home.settings
    capture = {
        "type": "newsletter_signup",
        "anonymous_id": "cookie-2",
        "properties": {"email": " Ada@Example.org ", "form": "footer"},
    }
    store_records(settings, engine, records(capture), NOW)
    with engine.connect() as conn:
        [person] = conn.execute(select(contacts.c.id, contacts.c.customer_id, contacts.c.email))
        assert person.email == "ada@example.org"
        assert identity_owners(conn, "anonymous_id", ["cookie-2"]) == {"cookie-2": person.id}
        assert identity_owners(conn, "email", ["ada@example.org"]) == {"ada@example.org": person.id}
    [row] = stored_events(settings)
    assert row["customer_id"] == person.customer_id  # the event is the contact's outright
    assert row["properties"] == '{"form": "footer"}'  # the address lives in the state only

    # the same address again, from another browser: the same contact
    again = capture | {"anonymous_id": "cookie-3", "occurred_at": at(1)}
    store_records(settings, engine, records(again), NOW)
    with engine.connect() as conn:
        assert conn.execute(select(contacts.c.id)).scalars().all() == [person.id]
        assert identity_owners(conn, "anonymous_id", ["cookie-3"]) == {"cookie-3": person.id}


def test_an_anonymous_id_stays_with_its_first_contact(home: Home, engine: Engine) -> None:
    settings = home.settings
    first = records(
        {"type": "identify", "anonymous_id": "shared", "customer_id": "C1"},
        {"type": "identify", "anonymous_id": "shared", "customer_id": "C2"},  # same batch
        {"type": "page_view", "anonymous_id": "lonely"},
    )
    store_records(settings, engine, first, NOW)
    later = records({"type": "add_to_cart", "anonymous_id": "shared", "customer_id": "C3"})
    store_records(settings, engine, later, NOW)
    with engine.connect() as conn:
        ids = contact_ids_by_customer(conn, ["C1", "C2", "C3"])
        assert sorted(ids) == ["C1", "C2", "C3"]
        owners = identity_owners(conn, "anonymous_id", ["shared", "lonely"])
        assert owners == {"shared": ids["C1"]}
        kinds = conn.execute(
            select(identities.c.kind).where(identities.c.contact_id == ids["C3"])
        ).scalars()
        assert list(kinds) == ["customer_id"]
