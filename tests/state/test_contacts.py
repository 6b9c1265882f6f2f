"""Contacts, identities and consents on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from reengage.state.contacts import (
    ConsentChange,
    contact_ids_by_customer,
    current_consent,
    customers_for_emails,
    ensure_customers,
    record_consents,
    upsert_customers,
)
from reengage.state.products import ensure_products, upsert_products
from reengage.state.schema import consents, contacts, identities, products

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def row(line: int, cid: str, **fields: object) -> dict[str, object]:
    return {"__line": line, "customer_id": cid, **fields}


def test_upsert_inserts_updates_and_counts_unchanged(engine: Engine) -> None:
    with engine.begin() as conn:
        first = upsert_customers(
            conn,
            [
                row(2, "C1", email="a@example.com", birthday=date(1990, 1, 2)),
                row(3, "C2", phone="+39333"),
                row(4, "C1", first_name="Anna"),  # same customer later in the file
            ],
            origin="customers",
            now=NOW,
        )
    assert (first.inserted, first.updated, first.unchanged) == (2, 1, 0)
    with engine.begin() as conn:
        second = upsert_customers(
            conn,
            [row(2, "C1", email="a@example.com"), row(3, "C2", phone="+39444")],
            origin="customers",
            now=NOW,
        )
        assert (second.inserted, second.updated, second.unchanged) == (0, 1, 1)
        kinds = conn.execute(
            select(identities.c.kind, identities.c.value)
            .join(contacts, contacts.c.id == identities.c.contact_id)
            .where(contacts.c.customer_id == "C2")
            .order_by(identities.c.kind)
        ).all()
        assert [tuple(k) for k in kinds] == [("customer_id", "C2"), ("phone", "+39444")]
        anna = conn.execute(select(contacts).where(contacts.c.customer_id == "C1")).one()
        assert (anna.first_name, anna.birthday) == ("Anna", date(1990, 1, 2))


def test_one_email_one_person(engine: Engine) -> None:
    with engine.begin() as conn:
        got = upsert_customers(
            conn,
            [row(2, "C1", email="x@example.com"), row(3, "C2", email="x@example.com")],
            origin="customers",
            now=NOW,
        )
    assert got.rejected == [(3, "email: already belongs to another customer")]
    with engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(
            identities.insert().values(
                contact_id=got.contact_ids["C1"],
                kind="email",
                value="x@example.com",
                first_seen=NOW,
            )
        )


def test_ensure_customers_creates_only_the_missing(engine: Engine) -> None:
    with engine.begin() as conn:
        assert ensure_customers(conn, ["A", "B", "A"], origin="orders", now=NOW) == 2
        assert ensure_customers(conn, ["B", "C"], origin="orders", now=NOW) == 1
        assert set(contact_ids_by_customer(conn, ["A", "B", "C", "D"])) == {"A", "B", "C"}
        assert conn.execute(select(func.count()).select_from(consents)).scalar_one() == 0


def test_customers_for_emails_is_stable(engine: Engine) -> None:
    with engine.begin() as conn:
        first, created = customers_for_emails(
            conn, ["p@example.com", "q@example.com"], origin="orders", now=NOW
        )
        again, created_again = customers_for_emails(
            conn, ["p@example.com"], origin="orders", now=NOW
        )
    assert (created, created_again) == (2, 0)
    assert again["p@example.com"] == first["p@example.com"]
    assert first["p@example.com"] != first["q@example.com"]


def test_consent_history_and_current_state(engine: Engine) -> None:
    with engine.begin() as conn:
        (cid,) = contact_ids_by_customer(
            conn, [c for c in ["K"] if ensure_customers(conn, ["K"], origin="t", now=NOW)]
        ).values()
        changes = [
            ConsentChange(cid, "email", "marketing", True, "checkout", NOW),
            ConsentChange(cid, "email", "marketing", True, "import", NOW + timedelta(days=1)),
            ConsentChange(cid, "email", "marketing", False, "unsubscribe", NOW + timedelta(2)),
            ConsentChange(cid, "sms", "marketing", True, "form", NOW),
        ]
        assert record_consents(conn, changes) == 3  # the repeated grant changes nothing
        assert record_consents(conn, changes) == 0
        assert current_consent(conn, cid, "email", "marketing") is False
        assert current_consent(conn, cid, "sms", "marketing") is True
        assert current_consent(conn, cid, "push", "marketing") is None


def test_deleting_a_contact_removes_its_identities_and_consents(engine: Engine) -> None:
    with engine.begin() as conn:
        got = upsert_customers(
            conn, [row(2, "Z", email="z@example.com")], origin="customers", now=NOW
        )
        cid = got.contact_ids["Z"]
        record_consents(conn, [ConsentChange(cid, "email", "marketing", True, "t", NOW)])
        conn.execute(contacts.delete().where(contacts.c.id == cid))
        assert conn.execute(select(func.count()).select_from(identities)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(consents)).scalar_one() == 0


def test_products_upsert_and_ensure(engine: Engine) -> None:
    with engine.begin() as conn:
        first = upsert_products(
            conn,
            [{"product_id": "P1", "title": "Shoe", "price": 10.0}],
            origin="products",
            now=NOW,
        )
        made = ensure_products(
            conn,
            {"P1": {"title": "x"}, "P2": {"title": "Sock", "price": 2.5}},
            origin="orders",
            now=NOW,
        )
        second = upsert_products(
            conn,
            [
                {"product_id": "P1", "title": "Shoe", "price": 10.001},
                {"product_id": "P2", "category": "socks"},
            ],
            origin="products",
            now=NOW,
        )
        names = dict(conn.execute(select(products.c.product_id, products.c.title)).all())
    assert (first.inserted, made) == (1, 1)
    assert (second.unchanged, second.updated) == (1, 1)
    assert names == {"P1": "Shoe", "P2": "Sock"}


def test_a_shared_phone_identifies_its_first_owner_only(engine: Engine) -> None:
    """A household's landline is on both profiles; it cannot point at two people."""
    with engine.begin() as conn:
        got = upsert_customers(
            conn,
            [row(2, "H1", phone="+390612345"), row(3, "H2", phone="+390612345")],
            origin="customers",
            now=NOW,
        )
        assert (got.inserted, got.rejected) == (2, [])
        later = upsert_customers(
            conn, [row(2, "H3", phone="+390612345")], origin="customers", now=NOW
        )
        assert later.inserted == 1
        owners = conn.execute(
            select(identities.c.contact_id).where(identities.c.kind == "phone")
        ).scalars()
        assert list(owners) == [got.contact_ids["H1"]]
        phones = conn.execute(select(contacts.c.phone)).scalars()
        assert set(phones) == {"+390612345"}
