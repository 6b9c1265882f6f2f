"""A contact's timeline gathers their site events (including the anonymous ones of a cookie
stitched to them), their orders and the messages sent to them, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from reengage.clock import FixedClock
from reengage.config import Home
from reengage.ingest.importer import import_file
from reengage.state.schema import contacts, identities, messages
from reengage.timeline import timeline

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

EVENTS = """event_id,customer_id,anonymous_id,type,occurred_at,product_id
e1,,cookie-a,product_view,2026-03-01T10:00:00Z,P1
e2,,cookie-a,add_to_cart,2026-03-01T10:05:00Z,P1
e3,C1,,page_view,2026-03-02T09:00:00Z,
e4,,cookie-b,product_view,2026-03-02T11:00:00Z,P2
e5,C2,,page_view,2026-03-03T09:00:00Z,
"""
ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price,status
O1,C1,2026-03-04T08:00:00Z,P1,2,10.00,paid
O1,C1,2026-03-04T08:00:00Z,P2,1,5.50,paid
O2,C2,2026-03-05T08:00:00Z,P1,1,10.00,paid
"""


def _import(home: Home, engine: Engine, tmp_path: Path, kind: str, text: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text(text, encoding="utf-8")
    summary = import_file(home, engine, kind, path, clock=FixedClock(NOW))
    assert summary.rejected == 0


def test_timeline_joins_stitched_cookie_orders_and_messages(
    home: Home, engine: Engine, tmp_path: Path
) -> None:
    _import(home, engine, tmp_path, "events", EVENTS)
    _import(home, engine, tmp_path, "orders", ORDERS)
    with engine.begin() as conn:
        c1 = conn.execute(select(contacts.c.id).where(contacts.c.customer_id == "C1")).scalar_one()
        conn.execute(
            identities.insert().values(
                contact_id=c1, kind="anonymous_id", value="cookie-a", first_seen=NOW
            )
        )
        conn.execute(
            messages.insert().values(
                message_key="k1",
                contact_id=c1,
                channel="email",
                intent="cart_reminder",
                style="examiner",
                language="en",
                status="sent",
                due_at=datetime(2026, 3, 6, tzinfo=UTC),
                created_at=datetime(2026, 3, 6, tzinfo=UTC),
                sent_at=datetime(2026, 3, 6, 1, tzinfo=UTC),
                attempts=1,
                priority=0,
                payload={},
            )
        )

    items = timeline(home.settings, engine, c1)

    kinds = [(i["kind"], i["type"]) for i in items]
    assert kinds == [
        ("message", "email:sent"),
        ("order", "order:paid"),
        ("event", "page_view"),
        ("event", "add_to_cart"),
        ("event", "product_view"),
    ]
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)
    order = items[1]["detail"]
    assert order["order_id"] == "O1" and order["total"] == 25.5 and order["lines"] == 2
    anonymous = [i["detail"]["anonymous"] for i in items if i["kind"] == "event"]
    assert anonymous == [False, True, True]  # the cookie's history before they were known
    assert len(timeline(home.settings, engine, c1, limit=2)) == 2


def test_unknown_contact_has_an_empty_timeline(home: Home, engine: Engine) -> None:
    assert timeline(home.settings, engine, 999_999) == []
