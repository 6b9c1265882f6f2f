"""The products a segment is interested in: what its members viewed or put in their carts
lately, most interacted first. An ad platform shows each audience its own products."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from reengage.config import Settings
from reengage.errors import InputError
from reengage.facts import reader
from reengage.state.schema import contacts, identities, segment_members, segments

DAYS = 30
INTEREST = ("product_view", "add_to_cart")


def _people(engine: Engine, segment: str) -> tuple[list[str], list[str]]:
    """The customer ids and anonymous ids of the segment's members."""
    with engine.connect() as conn:
        known = conn.execute(select(segments.c.name).where(segments.c.name == segment)).first()
        if known is None:
            raise InputError(f"unknown segment {segment!r} (see `reengage segments list`)")
        members = select(segment_members.c.contact_id).where(segment_members.c.segment == segment)
        customers = conn.execute(
            select(contacts.c.customer_id).where(
                contacts.c.id.in_(members), contacts.c.customer_id.is_not(None)
            )
        ).scalars()
        customer_ids = sorted(str(c) for c in customers)
        anonymous = conn.execute(
            select(identities.c.value).where(
                identities.c.contact_id.in_(members), identities.c.kind == "anonymous_id"
            )
        ).scalars()
        anonymous_ids = sorted(str(a) for a in anonymous)
    return customer_ids, anonymous_ids


def segment_products(
    settings: Settings, engine: Engine, segment: str, now: datetime, days: int = DAYS
) -> list[str]:
    """Ids of the products the segment's members viewed or carted in the `days` before `now`,
    most interactions first (then by id). InputError for an unknown segment."""
    customer_ids, anonymous_ids = _people(engine, segment)
    if not customer_ids and not anonymous_ids:
        return []
    low = now - timedelta(days=days)
    con = reader.connect(settings.facts_path)
    try:
        source = reader.between(settings.facts_path, "events", low, now, con)
        rows = con.execute(
            f"""SELECT product_id, count(*) AS n FROM {source} AS e
                WHERE e.product_id IS NOT NULL AND e.product_id <> ''
                  AND list_contains($types, e.type)
                  AND e.occurred_at >= $low AND e.occurred_at <= $high
                  AND (list_contains($customers, e.customer_id)
                       OR list_contains($anonymous, e.anonymous_id))
                GROUP BY product_id ORDER BY n DESC, product_id""",
            {
                "types": list(INTEREST),
                "low": low,
                "high": now,
                "customers": customer_ids or [""],
                "anonymous": anonymous_ids or [""],
            },
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]
