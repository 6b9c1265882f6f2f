"""bulk_insert stores exactly what SQLAlchemy's insert stores, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from reengage.state.contacts import ensure_customers
from reengage.state.db import bulk_insert
from reengage.state.schema import contacts, scores

NOW = datetime(2026, 11, 1, 9, 30, 15, 123456, tzinfo=UTC)


def test_bulk_insert_reads_back_like_insert(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_customers(conn, ["A", "B"], origin="t", now=NOW)
        ids = dict(conn.execute(select(contacts.c.customer_id, contacts.c.id)).all())

        def row(contact: str, as_of: datetime) -> dict[str, object]:
            return {
                "contact_id": ids[contact],
                "as_of": as_of,
                "computed_at": NOW,
                "orders": 2,
                "total_spent": 10.5,
                "recency_days": None,
                "lifecycle": "new",
                "threshold_days": 180.0,
                "style": "examiner",
                "expected_next_order_at": NOW,
                "details": {"cart_products": ["P1", "P2"], "share": 0.5, "top": None},
            }

        conn.execute(scores.insert(), [row("A", NOW)])
        bulk_insert(conn, scores, [row("B", NOW)])
        got = {
            r.contact_id: r._mapping
            for r in conn.execute(select(scores).order_by(scores.c.contact_id))
        }
    a, b = got[ids["A"]], got[ids["B"]]
    for column in (c.name for c in scores.columns):
        if column not in ("id", "contact_id"):
            assert a[column] == b[column], column
