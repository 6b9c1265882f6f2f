"""Who a journey's trigger fires for, and when: the candidates to enter, found in the facts
(events, orders) and the state (segment transitions, scores, birthdays).

Every trigger is read as a list of *firings*, each with its instant, its contact and a key
that names what fired (an event id, a transition, a date). `firings(journey, low, high)`
returns those whose instant falls in `(low, high]`: the engine asks for the stretch of time
since it last looked, so the firings of any stretch are the same whether it is read in one
piece or in a hundred (a worker polling every minute and a replay over weeks agree). The key
makes entering idempotent: a firing read twice enters once.

- an `event` fires when the event happened; with `abandoned`, `within` later, and only if
  none of the `unless` events followed in between, nor the same event again (the last cart
  counts: a second add_to_cart within the hour starts the wait over);
- `order_placed` fires when a valid order was placed (its latest status not cancelled or
  refunded);
- `segment_entered` fires at each `enter` transition a refresh recorded;
- `inactivity` fires when the days since a valid order reach the number (or the contact's
  own threshold T) with no order in between;
- `date` fires at the start of the day (in the contact's zone) the date falls on, moved by
  the offset.

Events of a visitor whose anonymous id is not (yet) tied to a contact fire nothing: there
is nobody to write to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
from sqlalchemy import Connection, and_, func, select

from reengage.channels.quiet_hours import zone_named
from reengage.clock import as_utc
from reengage.facts import reader
from reengage.journeys.definition import Journey
from reengage.journeys.steps import local_instant
from reengage.journeys.triggers import (
    ORDER_PLACED,
    DateTrigger,
    EventTrigger,
    InactivityTrigger,
    SegmentTrigger,
)
from reengage.state.contacts import chunks, contact_ids_by_customer, identity_owners
from reengage.state.schema import contacts, products, scores, segment_transitions

VOID = "('cancelled', 'refunded')"
ORDERS_WINDOW = "ordered_at > $low AND ordered_at <= $high + $window"


@dataclass(frozen=True)
class Firing:
    """One contact for whom the trigger fired at `at`; `key` names what fired."""

    contact_id: int
    key: str
    at: datetime
    payload: dict[str, Any] = field(default_factory=dict, compare=False)


def firings(
    journey: Journey,
    low: datetime,
    high: datetime,
    *,
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
    zone: ZoneInfo,
) -> list[Firing]:
    """The firings of the journey's trigger in `(low, high]`, by instant; `facts` is a
    connection `reader.connect` made on the facts at `root`."""
    low, high = as_utc(low), as_utc(high)
    if high <= low:
        return []
    trigger = journey.trigger
    if isinstance(trigger, EventTrigger):
        found = _events(trigger, low, high, conn, facts, root)
    elif isinstance(trigger, SegmentTrigger):
        found = _segment(trigger, low, high, conn)
    elif isinstance(trigger, InactivityTrigger):
        found = _inactivity(trigger, low, high, conn, facts)
    else:
        found = _dates(trigger, low, high, conn, facts, zone)
    return sorted(found, key=lambda f: (f.at, f.contact_id, f.key))


# --- events and orders --------------------------------------------------------------------


def valid_orders(where: str, source: str = "orders") -> str:
    """Valid orders (latest status not void) among the order lines matching `where` (in
    `source`: the orders view, or `reader.between` for a stretch of time)."""
    return f"""
        WITH g AS (
          SELECT order_id, status, max(customer_id) AS customer_id,
                 min(ordered_at) AS ordered_at, max(ingested_at) AS ingested_at,
                 min(product_id) AS product_id,
                 sum(quantity * unit_price - discount) AS value
          FROM {source} AS lines WHERE {where} GROUP BY order_id, status),
        l AS (
          SELECT order_id,
                 arg_max({{'status': status, 'customer_id': customer_id,
                          'ordered_at': ordered_at, 'product_id': product_id,
                          'value': value}}, ingested_at) AS o
          FROM g GROUP BY order_id)
        SELECT order_id, o.customer_id AS customer_id, o.ordered_at AS ordered_at,
               o.product_id AS product_id, o.value AS value
        FROM l WHERE o.status NOT IN {VOID}"""


def _who(events: str = "") -> str:
    prefix = f"{events}." if events else ""
    return f"coalesce({prefix}customer_id, '~' || {prefix}anonymous_id)"


def _events(
    trigger: EventTrigger,
    low: datetime,
    high: datetime,
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    root: Path,
) -> list[Firing]:
    if trigger.type == ORDER_PLACED:
        source = reader.between(root, "orders", low, high, facts)
        rows = facts.execute(
            f"SELECT * FROM ({valid_orders('ordered_at > $low AND ordered_at <= $high', source)})",
            {"low": low, "high": high},
        ).fetchall()
        owners = _owners(conn, [(r[1], None) for r in rows])
        return [
            Firing(
                owners[(customer, None)],
                f"o:{order_id}",
                as_utc(at),
                {"order_id": order_id, "product_id": product},
            )
            for order_id, customer, at, product, _value in rows
            if (customer, None) in owners
        ]
    window = trigger.abandoned.within.timedelta if trigger.abandoned else timedelta(0)
    params: dict[str, Any] = {"type": trigger.type, "low": low - window, "high": high - window}
    events = reader.between(root, "events", low - window, high, facts)
    sql = f"""SELECT event_id, customer_id, anonymous_id, occurred_at, product_id
              FROM {events} AS c
              WHERE type = $type AND occurred_at > $low AND occurred_at <= $high
                AND (customer_id IS NOT NULL OR anonymous_id IS NOT NULL)"""
    if trigger.abandoned is not None:
        params["window"] = window
        stoppers = [trigger.type, *(u for u in trigger.abandoned.unless if u != ORDER_PLACED)]
        params["stoppers"] = stoppers
        # the same event again, or an `unless` one, within the window: no firing for this one
        sql += f"""
            AND NOT EXISTS (
              SELECT 1 FROM {events} AS e
              WHERE e.occurred_at > $low AND e.occurred_at <= $high + $window
                AND {_who("e")} = {_who("c")} AND list_contains($stoppers, e.type)
                AND e.occurred_at > c.occurred_at AND e.occurred_at <= c.occurred_at + $window)"""
        if ORDER_PLACED in trigger.abandoned.unless:
            orders = reader.between(root, "orders", low - window, high, facts)
            sql += f"""
            AND NOT EXISTS (
              SELECT 1 FROM ({valid_orders(ORDERS_WINDOW, orders)}) o
              WHERE o.customer_id = c.customer_id
                AND o.ordered_at > c.occurred_at AND o.ordered_at <= c.occurred_at + $window)"""
    rows = facts.execute(sql, params).fetchall()
    owners = _owners(conn, [(r[1], r[2]) for r in rows])
    found = []
    for event_id, customer, anonymous, at, product in rows:
        contact = owners.get((customer, anonymous))
        if contact is None:
            continue
        payload = {"event_id": event_id}
        if product:
            payload["product_id"] = product
        found.append(Firing(contact, f"e:{event_id}", as_utc(at) + window, payload))
    return found


def _owners(
    conn: Connection, people: Sequence[tuple[str | None, str | None]]
) -> dict[tuple[str | None, str | None], int]:
    """The contact of each (customer id, anonymous id): the customer id's, else the
    anonymous id's (an identified visitor)."""
    customers = sorted({c for c, _ in people if c})
    anonymous = sorted({a for c, a in people if a and not c})
    by_customer = contact_ids_by_customer(conn, customers) if customers else {}
    by_anonymous = identity_owners(conn, "anonymous_id", anonymous) if anonymous else {}
    found: dict[tuple[str | None, str | None], int] = {}
    for customer, anon in people:
        contact = by_customer.get(customer) if customer else by_anonymous.get(anon or "")
        if contact is not None:
            found[(customer, anon)] = contact
    return found


# --- segments -----------------------------------------------------------------------------


def _segment(
    trigger: SegmentTrigger, low: datetime, high: datetime, conn: Connection
) -> list[Firing]:
    t = segment_transitions
    rows = conn.execute(
        select(t.c.id, t.c.contact_id, t.c.at).where(
            t.c.segment == trigger.segment, t.c.kind == "enter", t.c.at > low, t.c.at <= high
        )
    )
    return [Firing(r.contact_id, f"t:{r.id}", as_utc(r.at)) for r in rows]


# --- inactivity ---------------------------------------------------------------------------


def _latest_scores(conn: Connection, until: datetime, *columns: Any) -> Any:
    """Each contact's latest scores row dated no later than `until`: (contact_id, *columns)."""
    newest = (
        select(scores.c.contact_id, func.max(scores.c.as_of).label("as_of"))
        .where(scores.c.as_of <= until)
        .group_by(scores.c.contact_id)
        .subquery()
    )
    return conn.execute(
        select(scores.c.contact_id, *columns).join(
            newest,
            and_(scores.c.contact_id == newest.c.contact_id, scores.c.as_of == newest.c.as_of),
        )
    )


def _customers(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(contacts.c.customer_id, contacts.c.id).where(contacts.c.customer_id.is_not(None))
    )
    return {r.customer_id: r.id for r in rows}


def _inactivity(
    trigger: InactivityTrigger,
    low: datetime,
    high: datetime,
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
) -> list[Firing]:
    customers = _customers(conn)
    if trigger.days is not None:
        days = pa.table(
            {"customer_id": pa.array([], pa.string()), "days": pa.array([], pa.float64())}
        )
        default: float | None = float(trigger.days)
    else:
        # each contact's own threshold, as their latest scores before `high` put it
        owner = {v: k for k, v in customers.items()}
        found = [
            (owner[r.contact_id], float(r.threshold_days))
            for r in _latest_scores(conn, high, scores.c.threshold_days)
            if r.contact_id in owner and r.threshold_days is not None
        ]
        days = pa.table(
            {
                "customer_id": pa.array([f[0] for f in found], pa.string()),
                "days": pa.array([f[1] for f in found], pa.float64()),
            }
        )
        default = None
    facts.register("__inactivity_days", days)
    try:
        rows = facts.execute(
            f"""WITH o AS ({valid_orders("ordered_at <= $high")}),
                d AS (
                  SELECT o.customer_id, o.ordered_at,
                         lead(o.ordered_at) OVER (PARTITION BY o.customer_id
                                                  ORDER BY o.ordered_at) AS next_at,
                         coalesce(t.days, $default) AS days
                  FROM o LEFT JOIN __inactivity_days t USING (customer_id)),
                f AS (
                  SELECT customer_id, ordered_at, next_at,
                         ordered_at + to_microseconds(CAST(days * 86400e6 AS BIGINT)) AS fires
                  FROM d WHERE days IS NOT NULL)
                SELECT customer_id, ordered_at, fires FROM f
                WHERE fires > $low AND fires <= $high AND (next_at IS NULL OR next_at > fires)""",
            {"low": low, "high": high, "default": default},
        ).fetchall()
    finally:
        facts.unregister("__inactivity_days")
    return [
        Firing(customers[c], f"i:{as_utc(last).isoformat()}", as_utc(fires), {})
        for c, last, fires in rows
        if c in customers
    ]


# --- dates --------------------------------------------------------------------------------


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return local_instant(day, time(0, 0), zone)


def _yearly(day: date, year: int) -> date:
    """The day's anniversary in `year`: 29 February becomes the 28th in other years."""
    try:
        return day.replace(year=year)
    except ValueError:
        return day.replace(year=year, day=28)


def _zones(conn: Connection, ids: Iterable[int], shop: ZoneInfo) -> dict[int, ZoneInfo]:
    zones: dict[int, ZoneInfo] = {}
    for part in chunks(sorted(set(ids))):
        for r in conn.execute(
            select(contacts.c.id, contacts.c.timezone).where(contacts.c.id.in_(part))
        ):
            zones[r.id] = zone_named(r.timezone) or shop
    return zones


def _dates(
    trigger: DateTrigger,
    low: datetime,
    high: datetime,
    conn: Connection,
    facts: duckdb.DuckDBPyConnection,
    zone: ZoneInfo,
) -> list[Firing]:
    offset = trigger.offset.timedelta
    # the dates whose firing can fall in the window, with a day's margin for the zones
    first, last = (
        (low - offset).date() - timedelta(days=1),
        (high - offset).date() + timedelta(days=1),
    )
    dated: list[tuple[int, date, str]] = []  # contact, date, key prefix
    if trigger.of == "birthday":
        rows = conn.execute(
            select(contacts.c.id, contacts.c.birthday).where(contacts.c.birthday.is_not(None))
        )
        for r in rows:
            for year in range(first.year, last.year + 1):
                dated.append((r.id, _yearly(r.birthday, year), "b"))
    elif trigger.of == "order_anniversary":
        customers = _customers(conn)
        firsts = facts.execute(
            f"""SELECT customer_id, min(ordered_at) FROM ({valid_orders("ordered_at <= $high")})
                GROUP BY customer_id""",
            {"high": high},
        ).fetchall()
        for customer, at in firsts:
            if customer not in customers:
                continue
            day = as_utc(at).date()
            for year in range(max(first.year, day.year + 1), last.year + 1):
                dated.append((customers[customer], _yearly(day, year), "a"))
    else:
        dated = _replenishment(trigger, high, conn, facts)
    zones = _zones(conn, (c for c, _, _ in dated), zone)
    found = []
    for contact, day, prefix in dated:
        if not first <= day <= last:
            continue
        at = _midnight(day, zones[contact]) + offset
        if low < at <= high:
            found.append(Firing(contact, f"{prefix}:{day.isoformat()}", at))
    return found


def _replenishment(
    trigger: DateTrigger, high: datetime, conn: Connection, facts: duckdb.DuckDBPyConnection
) -> list[tuple[int, date, str]]:
    """Each contact's expected next order date: the model's, else the earliest of their last
    order in an `intervals` category plus its interval."""
    expected: dict[int, date] = {}
    for r in _latest_scores(conn, high, scores.c.expected_next_order_at):
        if r.expected_next_order_at is not None:
            expected[r.contact_id] = as_utc(r.expected_next_order_at).date()
    if trigger.intervals:
        customers = _customers(conn)
        wanted = {c: d.timedelta for c, d in trigger.intervals}
        catalogue = conn.execute(
            select(products.c.product_id, products.c.category).where(
                products.c.category.in_(list(wanted))
            )
        ).all()
        facts.register(
            "__categories",
            pa.table(
                {
                    "product_id": pa.array([r[0] for r in catalogue], pa.string()),
                    "category": pa.array([r[1] for r in catalogue], pa.string()),
                }
            ),
        )
        try:
            rows = facts.execute(
                """SELECT o.customer_id, c.category, max(o.ordered_at)
                   FROM orders o JOIN __categories c USING (product_id)
                   WHERE o.ordered_at <= $high AND o.status NOT IN ('cancelled', 'refunded')
                   GROUP BY o.customer_id, c.category""",
                {"high": high},
            ).fetchall()
        finally:
            facts.unregister("__categories")
        by_interval: dict[int, date] = {}
        for customer, category, at in rows:
            contact = customers.get(customer)
            if contact is None or contact in expected:
                continue
            day = (as_utc(at) + wanted[category]).date()
            by_interval[contact] = min(day, by_interval.get(contact, day))
        expected.update(by_interval)
    return [(c, d, "r") for c, d in expected.items()]
