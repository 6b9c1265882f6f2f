"""Which message each order is owed to: at most one, by the first rule that finds one.

1. **code**: the order redeemed a code that reengage issued with a message (`offers`); the
   message that carried it wins, whenever it was sent;
2. **click**: else the message of the customer's last human click within
   `attribution_click_days` (default 5) before the order;
3. **open**: else, only when `attribution_open_days` is set, the message of the customer's
   last human open within that window.

Machine opens and clicks (privacy proxies, link scanners: `properties.machine` in the
message events) never count. Cancelled and refunded orders are not attributed: they are not
orders any more. An order none of the rules claims is unattributed, which most are: the lift
against a holdout, not attribution, says what reengage caused (docs/measurement.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.journeys.entries import valid_orders
from reengage.state.schema import contacts, messages, offers

RULES = ("code", "click", "open")

COLUMNS = (
    "order_id",
    "customer_id",
    "ordered_at",
    "value",
    "discount",
    "message_id",
    "rule",
    "channel",
    "journey",
    "campaign",
    "step",
    "variant",
    "intent",
    "style",
)


@dataclass(frozen=True)
class Windows:
    click: timedelta
    open: timedelta | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Windows:
        days = settings.attribution_open_days
        return cls(
            timedelta(days=settings.attribution_click_days),
            timedelta(days=days) if days is not None else None,
        )


def _sent_messages(engine: Engine, until: datetime) -> pa.Table:
    """Every message that went out by `until`, with its customer and the code it carried."""
    m, c, o = messages, contacts, offers
    query = (
        select(
            m.c.id,
            c.c.customer_id,
            m.c.channel,
            m.c.journey,
            m.c.campaign,
            m.c.step,
            m.c.variant,
            m.c.intent,
            m.c.style,
            m.c.sent_at,
        )
        .join(c, c.c.id == m.c.contact_id)
        .where(m.c.status == "sent", m.c.sent_at.is_not(None), m.c.sent_at <= until)
    )
    codes = select(o.c.code, o.c.message_id).where(o.c.message_id.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        code_rows = conn.execute(codes).all()
    by_message: dict[int, list[str]] = {}
    for code, message_id in code_rows:
        by_message.setdefault(int(message_id), []).append(str(code).upper())
    return pa.table(
        {
            "message_id": pa.array([str(r.id) for r in rows], pa.string()),
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "channel": pa.array([r.channel for r in rows], pa.string()),
            "journey": pa.array([r.journey for r in rows], pa.string()),
            "campaign": pa.array([r.campaign for r in rows], pa.string()),
            "step": pa.array([r.step for r in rows], pa.string()),
            "variant": pa.array([r.variant for r in rows], pa.string()),
            "intent": pa.array([r.intent for r in rows], pa.string()),
            "style": pa.array([r.style for r in rows], pa.string()),
            "sent_at": pa.array([as_utc(r.sent_at) for r in rows], pa.timestamp("us", "UTC")),
            "codes": pa.array([by_message.get(r.id, []) for r in rows], pa.list_(pa.string())),
        }
    )


def attribute(
    settings: Settings,
    engine: Engine,
    since: datetime,
    until: datetime,
    *,
    windows: Windows | None = None,
    facts: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The valid orders placed in (since, until], each with the message it is attributed to
    and the rule that found it (message columns null when none did); COLUMNS, by time."""
    windows = windows or Windows.from_settings(settings)
    root = settings.facts_path
    own = facts is None
    con = facts if facts is not None else reader.connect(root)
    widest = max(windows.click, windows.open or timedelta(0))
    sent = _sent_messages(engine, until)
    try:
        orders_src = reader.between(root, "orders", since, until, con)
        events_src = reader.between(root, "message_events", since - widest, until, con)
        con.register("__sent", sent)
        params: dict[str, Any] = {
            "low": as_utc(since),
            "high": as_utc(until),
            "click": windows.click,
            "open": windows.open or timedelta(0),
            "use_open": windows.open is not None,
        }
        found = con.sql(
            f"""
            WITH o AS ({valid_orders("ordered_at > $low AND ordered_at <= $high", orders_src)}),
            codes AS (
              SELECT order_id, list(DISTINCT upper(coupon_code)) AS codes
              FROM {orders_src} AS lines
              WHERE coupon_code IS NOT NULL AND ordered_at > $low AND ordered_at <= $high
              GROUP BY order_id),
            discounts AS (  -- per status, as each status's lines are a copy of the order
              SELECT order_id, max(d) AS discount
              FROM (SELECT order_id, status, sum(coalesce(discount, 0)) AS d
                    FROM {orders_src} AS lines
                    WHERE ordered_at > $low AND ordered_at <= $high GROUP BY ALL) AS x
              GROUP BY order_id),
            human AS (
              SELECT e.type, e.occurred_at, s.message_id, s.customer_id
              FROM {events_src} AS e JOIN __sent AS s ON s.message_id = e.message_id
              WHERE e.type IN ('click', 'open')
                AND coalesce(json_extract_string(e.properties, '$.machine'), 'false') <> 'true'),
            by_code AS (
              SELECT o.order_id, arg_max(s.message_id, s.sent_at) AS message_id
              FROM o JOIN codes USING (order_id)
                     JOIN __sent AS s ON s.customer_id = o.customer_id
              WHERE len(list_intersect(codes.codes, s.codes)) > 0
              GROUP BY o.order_id),
            by_click AS (
              SELECT o.order_id, arg_max(h.message_id, h.occurred_at) AS message_id
              FROM o JOIN human AS h ON h.customer_id = o.customer_id
              WHERE h.type = 'click' AND h.occurred_at <= o.ordered_at
                AND h.occurred_at >= o.ordered_at - $click
              GROUP BY o.order_id),
            by_open AS (
              SELECT o.order_id, arg_max(h.message_id, h.occurred_at) AS message_id
              FROM o JOIN human AS h ON h.customer_id = o.customer_id
              WHERE $use_open AND h.type = 'open' AND h.occurred_at <= o.ordered_at
                AND h.occurred_at >= o.ordered_at - $open
              GROUP BY o.order_id),
            chosen AS (
              SELECT o.order_id, o.customer_id, o.ordered_at, o.value,
                     coalesce(c.message_id, k.message_id, p.message_id) AS message_id,
                     CASE WHEN c.message_id IS NOT NULL THEN 'code'
                          WHEN k.message_id IS NOT NULL THEN 'click'
                          WHEN p.message_id IS NOT NULL THEN 'open' END AS rule
              FROM o LEFT JOIN by_code AS c USING (order_id)
                     LEFT JOIN by_click AS k USING (order_id)
                     LEFT JOIN by_open AS p USING (order_id))
            SELECT chosen.order_id, chosen.customer_id, chosen.ordered_at,
                   round(chosen.value, 2) AS value,
                   round(coalesce(d.discount, 0), 2) AS discount,
                   CAST(chosen.message_id AS BIGINT) AS message_id, chosen.rule,
                   s.channel, s.journey, s.campaign, s.step, s.variant, s.intent, s.style
            FROM chosen LEFT JOIN __sent AS s ON s.message_id = chosen.message_id
              LEFT JOIN discounts AS d ON d.order_id = chosen.order_id
            ORDER BY chosen.ordered_at, chosen.order_id
            """,
            params=params,
        ).to_arrow_table()
        table: pa.Table = found
    finally:
        con.unregister("__sent")
        if own:
            con.close()
    return table.select(list(COLUMNS))
