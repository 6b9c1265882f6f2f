"""Activities over the facts: who purchased, viewed, added to cart, opened... as of a time.

Every distinct activity of the rules being evaluated is counted in one DuckDB pass per kind
of facts (conditional counts, `count(*) FILTER (WHERE ...)`), and the answer is one row per
customer who did at least one of them, with a bit per activity. Those few columns are all the
state store needs to evaluate the rest of the rules.

Definitions (docs/segments.md):
- `within Nd` is occurred_at (ordered_at) in [now - N days, now); without it, anything before
  now;
- an order counts when its latest-ingested status is not cancelled or refunded, and counts
  once however many lines it has; `in category` keeps orders with a line in the category;
- events count one each; `in category` keeps events on a product of the category (categories
  match ignoring case);
- `opened email` / `clicked email` count the message events of the channel (type opened or
  clicked) and the shop's own email_open / email_click events (sms_click, push_click);
- only what carries a customer_id counts: anonymous browsing is not tied to a contact here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from reengage.audience.conditions import Activity
from reengage.ingest.vocabulary import EVENT_TYPES

VOID_STATUSES = ("cancelled", "refunded")
BITS_PER_COLUMN = 62  # signed 64-bit integers, with room to spare


@dataclass(frozen=True)
class Layout:
    """Where each activity's answer is: a column of the activity table and a bit in it."""

    columns: tuple[str, ...]
    bits: dict[Activity, tuple[str, int]]


def layout(activities: Sequence[Activity]) -> Layout:
    bits = {a: (f"m{i // BITS_PER_COLUMN}", i % BITS_PER_COLUMN) for i, a in enumerate(activities)}
    columns = tuple(dict.fromkeys(column for column, _ in bits.values()))
    return Layout(columns, bits)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class _Query:
    """Named parameters of a SQL text being written."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def p(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return "$" + name

    def since(self, column: str, activity: Activity, now: datetime) -> list[str]:
        if activity.within_days is None:
            return []
        start = now - timedelta(days=activity.within_days)
        return [f"{column} >= {self.p(_ts(start))}::TIMESTAMPTZ"]


def _event_types(activity: Activity) -> tuple[str, ...]:
    """The event types that record the activity in the events facts."""
    if activity.source == "events":
        return activity.types
    if activity.source == "orders":
        return ()
    verb = {"opened": "open", "clicked": "click"}[activity.types[0]]
    own = f"{activity.channel}_{verb}"
    return (own,) if own in EVENT_TYPES else ()


def _earliest(activities: Sequence[Activity], now: datetime) -> datetime | None:
    """The start of the widest window, or None when some activity has none."""
    if any(a.within_days is None for a in activities):
        return None
    return now - timedelta(days=max(a.within_days or 0.0 for a in activities))


def _events_part(q: _Query, wanted: list[tuple[int, Activity]], now: datetime) -> str | None:
    wanted = [(i, a) for i, a in wanted if _event_types(a)]
    if not wanted:
        return None
    counts = []
    for i, a in wanted:
        tests = [f"e.type IN ({', '.join(q.p(t) for t in _event_types(a))})"]
        if a.category is not None:
            tests.append(f"lower(p.category) = lower({q.p(a.category)})")
        tests += q.since("e.occurred_at", a, now)
        counts.append(f"count(*) FILTER (WHERE {' AND '.join(tests)}) AS c{i}")
    types = sorted({t for _, a in wanted for t in _event_types(a)})
    where = [
        "e.customer_id IS NOT NULL",
        f"e.occurred_at < {q.p(_ts(now))}::TIMESTAMPTZ",
        f"e.type IN ({', '.join(q.p(t) for t in types)})",
    ]
    start = _earliest([a for _, a in wanted], now)
    if start is not None:
        where.append(f"e.occurred_at >= {q.p(_ts(start))}::TIMESTAMPTZ")
    join = (
        " LEFT JOIN catalogue p ON p.product_id = e.product_id"
        if any(a.category is not None for _, a in wanted)
        else ""
    )
    return (
        f"SELECT e.customer_id, {', '.join(counts)} FROM events e{join} "
        f"WHERE {' AND '.join(where)} GROUP BY e.customer_id"
    )


def _messages_part(q: _Query, wanted: list[tuple[int, Activity]], now: datetime) -> str | None:
    wanted = [(i, a) for i, a in wanted if a.source == "messages"]
    if not wanted:
        return None
    counts = []
    for i, a in wanted:
        tests = [f"m.channel = {q.p(a.channel)}", f"m.type = {q.p(a.types[0])}"]
        tests += q.since("m.occurred_at", a, now)
        counts.append(f"count(*) FILTER (WHERE {' AND '.join(tests)}) AS c{i}")
    where = ["m.customer_id IS NOT NULL", f"m.occurred_at < {q.p(_ts(now))}::TIMESTAMPTZ"]
    return (
        f"SELECT m.customer_id, {', '.join(counts)} FROM message_events m "
        f"WHERE {' AND '.join(where)} GROUP BY m.customer_id"
    )


def _orders_part(q: _Query, wanted: list[tuple[int, Activity]], now: datetime) -> str | None:
    wanted = [(i, a) for i, a in wanted if a.source == "orders"]
    if not wanted:
        return None
    # one row per order: its latest status, and whether some line meets each activity's test
    flags = []
    for i, a in wanted:
        tests = ["TRUE"]
        if a.category is not None:
            tests.append(f"lower(p.category) = lower({q.p(a.category)})")
        tests += q.since("l.ordered_at", a, now)
        flags.append(f"bool_or({' AND '.join(tests)}) AS o{i}")
    where = ["l.customer_id IS NOT NULL", f"l.ordered_at < {q.p(_ts(now))}::TIMESTAMPTZ"]
    start = _earliest([a for _, a in wanted], now)
    if start is not None:
        where.append(f"l.ordered_at >= {q.p(_ts(start))}::TIMESTAMPTZ")
    join = (
        " LEFT JOIN catalogue p ON p.product_id = l.product_id"
        if any(a.category is not None for _, a in wanted)
        else ""
    )
    void = ", ".join(q.p(s) for s in VOID_STATUSES)
    counts = ", ".join(f"count(*) FILTER (WHERE o{i}) AS c{i}" for i, _ in wanted)
    return f"""
        WITH per_order AS (
            SELECT l.order_id, any_value(l.customer_id) AS customer_id,
                   arg_max(l.status, l.ingested_at) AS order_status, {", ".join(flags)}
            FROM orders l{join} WHERE {" AND ".join(where)} GROUP BY l.order_id)
        SELECT customer_id, {counts} FROM per_order
        WHERE order_status NOT IN ({void}) GROUP BY customer_id"""


def evaluate(
    con: duckdb.DuckDBPyConnection,
    activities: Sequence[Activity],
    now: datetime,
    catalogue: pa.Table | None = None,
) -> tuple[pa.Table, Layout]:
    """One row per customer who did at least one of the activities before `now`: customer_id
    and the bit columns of the layout. `con` has the facts views (reader.connect); the
    catalogue (product_id, category) is needed when an activity names a category."""
    plan = layout(activities)
    q = _Query()
    indexed = list(enumerate(activities))
    if any(a.category is not None for a in activities):
        if catalogue is None:
            raise ValueError("an activity in a category needs the catalogue")
        con.register("catalogue", catalogue)
    parts = [
        part
        for part in (
            _events_part(q, indexed, now),
            _orders_part(q, indexed, now),
            _messages_part(q, indexed, now),
        )
        if part is not None
    ]
    if not parts:
        empty = {"customer_id": pa.array([], pa.string())}
        empty |= {c: pa.array([], pa.int64()) for c in plan.columns}
        return pa.table(empty), plan
    union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
    sums = ", ".join(f"sum(c{i}) AS c{i}" for i, _ in indexed)
    masks = []
    for column in plan.columns:
        terms = [
            f"(CASE WHEN coalesce(c{i}, 0) >= {int(a.at_least)} THEN {1 << plan.bits[a][1]} "
            "ELSE 0 END)::BIGINT"
            for i, a in indexed
            if plan.bits[a][0] == column
        ]
        masks.append(f"({' + '.join(terms)}) AS {column}")
    any_bit = " OR ".join(f"{c} <> 0" for c in plan.columns)
    sql = f"""
        WITH counts AS ({union}),
        per AS (SELECT customer_id, {sums} FROM counts GROUP BY customer_id),
        flagged AS (SELECT customer_id, {", ".join(masks)} FROM per)
        SELECT * FROM flagged WHERE {any_bit}"""
    table = con.sql(sql, params=q.params).to_arrow_table()
    return table, plan
