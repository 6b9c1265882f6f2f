"""What recipients did after a campaign's message: human clicks (machine fetches never
count) and valid orders, read from the facts for a set of sent messages. Shared by the test
decision (`deciding`) and the campaign report (`results`).

An order counts for a message when its customer placed it after the message was sent and
within the window (the campaign's `conversion_window`, or up to the decision for a test):
the simple "bought after receiving" rule; the measurement issue's attribution (one message
per order: a redeemed code, else the last click) will refine it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from reengage.facts import reader
from reengage.journeys.entries import valid_orders


@dataclass(frozen=True)
class Sent:
    """Messages to look at: outbox id, customer id (None for prospects), when each went."""

    message_ids: list[int]
    customer_ids: list[str | None]
    sent_at: list[datetime]


def clicked(facts: duckdb.DuckDBPyConnection, root: Path, sent: Sent, until: datetime) -> set[int]:
    """The messages with a human click at or before `until`."""
    if not sent.message_ids:
        return set()
    table = pa.table({"message_id": pa.array([str(i) for i in sent.message_ids], pa.string())})
    events = reader.between(root, "message_events", min(sent.sent_at), until, facts)
    facts.register("__campaign_sent", table)
    try:
        rows = facts.execute(
            f"""SELECT DISTINCT m.message_id FROM {events} AS m
               WHERE m.type = 'click' AND m.occurred_at <= $until
                 AND m.message_id IN (SELECT message_id FROM __campaign_sent)
                 AND coalesce(json_extract_string(m.properties, '$.machine'), 'false')
                     <> 'true'""",
            {"until": until},
        ).fetchall()
    finally:
        facts.unregister("__campaign_sent")
    return {int(r[0]) for r in rows}


def events_of(
    facts: duckdb.DuckDBPyConnection, root: Path, sent: Sent, kind: str, until: datetime
) -> dict[int, int]:
    """Per message, how many events of `kind` (open, click, unsubscribe) it had by `until`,
    machine ones apart: {message id: human count}; `machine_<kind>` counted in key -1."""
    if not sent.message_ids:
        return {}
    table = pa.table({"message_id": pa.array([str(i) for i in sent.message_ids], pa.string())})
    events = reader.between(root, "message_events", min(sent.sent_at), until, facts)
    facts.register("__campaign_sent", table)
    try:
        rows = facts.execute(
            f"""SELECT m.message_id,
                      coalesce(json_extract_string(m.properties, '$.machine'), 'false') = 'true'
                        AS machine,
                      count(*)
               FROM {events} AS m
               WHERE m.type = $kind AND m.occurred_at <= $until
                 AND m.message_id IN (SELECT message_id FROM __campaign_sent)
               GROUP BY ALL""",
            {"kind": kind, "until": until},
        ).fetchall()
    finally:
        facts.unregister("__campaign_sent")
    found: dict[int, int] = {}
    for message_id, machine, count in rows:
        key = -1 if machine else int(message_id)
        found[key] = found.get(key, 0) + int(count)
    return found


def orders_after(
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    customers: list[str | None],
    since: list[datetime],
    window: timedelta,
    until: datetime,
) -> list[float | None]:
    """Per person (customer id and the instant they count from): the value of their valid
    orders in [since, min(since + window, until)], or None when they placed none."""
    people = [(i, c, s) for i, (c, s) in enumerate(zip(customers, since, strict=True)) if c]
    answer: list[float | None] = [None] * len(customers)
    if not people:
        return answer
    table = pa.table(
        {
            "i": pa.array([p[0] for p in people], pa.int64()),
            "customer_id": pa.array([p[1] for p in people], pa.string()),
            "since": pa.array([p[2] for p in people], pa.timestamp("us", tz="UTC")),
        }
    )
    low = min(p[2] for p in people)
    source = reader.between(root, "orders", low, until, facts)
    orders = valid_orders("ordered_at >= $low AND ordered_at <= $until", source)
    facts.register("__campaign_people", table)
    try:
        rows = facts.execute(
            f"""SELECT p.i, sum(o.value) FROM __campaign_people AS p
               JOIN ({orders}) AS o ON o.customer_id = p.customer_id
               WHERE o.ordered_at >= p.since
                 AND o.ordered_at <= least(p.since + $window, $until)
               GROUP BY p.i""",
            {"low": low, "until": until, "window": window},
        ).fetchall()
    finally:
        facts.unregister("__campaign_people")
    for i, value in rows:
        answer[int(i)] = float(value or 0.0)
    return answer


def open_facts(root: Path, facts: Any) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """The caller's facts connection, or a new one (True: to be closed by the caller)."""
    if facts is not None:
        return facts, False
    return reader.connect(root), True
