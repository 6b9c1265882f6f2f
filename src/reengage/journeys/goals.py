"""Goals: what ends an enrollment early, checked for a whole batch of enrollments at once.

- `order_placed`: a valid order of the contact placed after they entered (not the order that
  started the enrollment, for a journey triggered by one);
- `clicked`: a click, by a person and not a link scanner, on a message this enrollment sent;
- `unsubscribed`: marketing consent withdrawn on any channel, or an address of theirs
  suppressed as unsubscribed, complained or STOP, after they entered.

Each is looked for up to the enrollment's own `until` (the instant its next step is due), or
`now`: an order imported hours after it was placed ends the enrollment when the engine next
looks at it, before any further step runs — but an order placed after a step was due does
not take back that step, as it would not have for a worker running at the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Connection, select

from reengage.clock import as_utc
from reengage.facts import reader
from reengage.journeys.entries import VOID
from reengage.state.contacts import chunks
from reengage.state.db import among
from reengage.state.schema import consents, contacts, messages, suppressions

UNSUBSCRIBED = ("unsubscribed", "complained", "stop")


@dataclass(frozen=True)
class Open:
    """An enrollment whose goals are to be checked."""

    id: int
    contact_id: int
    entered_at: datetime
    goals: tuple[str, ...]
    payload: dict[str, Any]
    until: datetime | None = None  # look for goals reached by then (None: by `now`)


def reached(
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    items: Sequence[Open],
    now: datetime,
) -> dict[int, tuple[str, datetime]]:
    """For each enrollment that reached a goal: the goal and when (the earliest, if several).
    `facts`: a connection `reader.connect` made on the facts at `root`."""
    found: dict[int, tuple[str, datetime]] = {}
    cutoff = {i.id: as_utc(i.until) if i.until is not None else as_utc(now) for i in items}

    def note(enrollment: int, goal: str, at: datetime) -> None:
        at = as_utc(at)
        if at > cutoff[enrollment]:
            return
        if enrollment not in found or at < found[enrollment][1]:
            found[enrollment] = (goal, at)

    for goal, check in (
        ("order_placed", _ordered),
        ("clicked", _clicked),
        ("unsubscribed", _unsubscribed),
    ):
        wanted = [i for i in items if goal in i.goals]
        if wanted:
            for enrollment, at in check(conn, facts, root, wanted, as_utc(now)):
                note(enrollment, goal, at)
    return found


def _ordered(
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    items: Sequence[Open],
    now: datetime,
) -> list[tuple[int, datetime]]:
    customer: dict[int, str] = {}
    ids = sorted({i.contact_id for i in items})
    for part in chunks(ids):
        for r in conn.execute(
            select(contacts.c.id, contacts.c.customer_id).where(
                among(conn, contacts.c.id, part), contacts.c.customer_id.is_not(None)
            )
        ):
            customer[r.id] = r.customer_id
    wanted = [i for i in items if i.contact_id in customer]
    if not wanted:
        return []
    table = pa.table(
        {
            "enrollment": pa.array([i.id for i in wanted], pa.int64()),
            "customer_id": pa.array([customer[i.contact_id] for i in wanted], pa.string()),
            "entered_at": pa.array(
                [as_utc(i.entered_at) for i in wanted], pa.timestamp("us", "UTC")
            ),
            "own_order": pa.array([i.payload.get("order_id") for i in wanted], pa.string()),
        }
    )
    low = min(as_utc(i.entered_at) for i in wanted)
    facts.register("__goal_orders", table)
    try:
        rows = facts.execute(
            f"""WITH lines AS (
                  SELECT o.order_id, o.status, o.customer_id, o.ordered_at, o.ingested_at
                  FROM {reader.between(root, "orders", low, now, facts)} AS o
                  WHERE o.ordered_at > $low AND o.ordered_at <= $now
                    AND o.customer_id IN (SELECT customer_id FROM __goal_orders)),
                latest AS (
                  SELECT order_id, arg_max(status, ingested_at) AS status,
                         max(customer_id) AS customer_id, min(ordered_at) AS ordered_at
                  FROM lines GROUP BY order_id)
                SELECT g.enrollment, min(l.ordered_at)
                FROM __goal_orders g JOIN latest l USING (customer_id)
                WHERE l.status NOT IN {VOID} AND l.ordered_at > g.entered_at
                  AND l.order_id IS DISTINCT FROM g.own_order
                GROUP BY g.enrollment""",
            {"low": low, "now": now},
        ).fetchall()
    finally:
        facts.unregister("__goal_orders")
    return [(int(e), at) for e, at in rows]


def _clicked(
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    items: Sequence[Open],
    now: datetime,
) -> list[tuple[int, datetime]]:
    by_key = {f"j:{i.id}:": i for i in items}
    sent: dict[str, int] = {}  # message id (as the events write it) -> enrollment
    ids = sorted({i.contact_id for i in items})
    for part in chunks(ids):
        for r in conn.execute(
            select(messages.c.id, messages.c.message_key).where(
                among(conn, messages.c.contact_id, part), messages.c.message_key.like("j:%")
            )
        ):
            prefix = r.message_key[: r.message_key.index(":", 2) + 1]
            if prefix in by_key:
                sent[str(r.id)] = by_key[prefix].id
    if not sent:
        return []
    table = pa.table({"message_id": pa.array(list(sent), pa.string())})
    low = min(as_utc(i.entered_at) for i in items)
    events = reader.between(root, "message_events", low, now, facts)
    facts.register("__goal_clicks", table)
    try:
        rows = facts.execute(
            f"""SELECT message_id, min(occurred_at) FROM {events} AS m
               WHERE type = 'click' AND occurred_at <= $now
                 AND message_id IN (SELECT message_id FROM __goal_clicks)
                 AND coalesce(json_extract_string(properties, '$.machine'), 'false') <> 'true'
               GROUP BY message_id""",
            {"now": now},
        ).fetchall()
    finally:
        facts.unregister("__goal_clicks")
    return [(sent[m], at) for m, at in rows]


def _unsubscribed(
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    items: Sequence[Open],
    now: datetime,
) -> list[tuple[int, datetime]]:
    by_contact: dict[int, list[Open]] = {}
    for i in items:
        by_contact.setdefault(i.contact_id, []).append(i)
    found: list[tuple[int, datetime]] = []
    ids = sorted(by_contact)
    for part in chunks(ids):
        withdrawn = conn.execute(
            select(consents.c.contact_id, consents.c.recorded_at).where(
                among(conn, consents.c.contact_id, part),
                consents.c.purpose == "marketing",
                consents.c.granted.is_(False),
                consents.c.recorded_at <= now,
            )
        ).all()
        suppressed = conn.execute(
            select(suppressions.c.contact_id, suppressions.c.recorded_at).where(
                among(conn, suppressions.c.contact_id, part),
                suppressions.c.reason.in_(UNSUBSCRIBED),
                suppressions.c.recorded_at <= now,
            )
        ).all()
        for contact_id, at in [*withdrawn, *suppressed]:
            for item in by_contact.get(contact_id, ()):
                if as_utc(at) > as_utc(item.entered_at):
                    found.append((item.id, as_utc(at)))
    return found
