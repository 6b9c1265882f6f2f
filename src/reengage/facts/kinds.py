"""The kinds of facts, their columns and the column that identifies a row.

Every row carries a stable id, so a batch sent twice, or a file imported twice, adds nothing
the second time: the writer drops ids the day already holds, and readers keep one row per id
for the rare race between two writers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class FactKind:
    name: str
    id_column: str
    time_column: str
    schema: pa.Schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


ORDERS = FactKind(
    name="orders",
    id_column="line_id",
    time_column="ordered_at",
    schema=pa.schema(
        [
            ("line_id", pa.string()),
            ("order_id", pa.string()),
            ("customer_id", pa.string()),
            ("ordered_at", TS),
            ("product_id", pa.string()),
            ("quantity", pa.int32()),
            ("unit_price", pa.float64()),
            ("currency", pa.string()),
            ("discount", pa.float64()),
            ("coupon_code", pa.string()),
            ("status", pa.string()),
            ("ingested_at", TS),
        ]
    ),
)

EVENTS = FactKind(
    name="events",
    id_column="event_id",
    time_column="occurred_at",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("customer_id", pa.string()),
            ("anonymous_id", pa.string()),
            ("type", pa.string()),
            ("occurred_at", TS),
            ("product_id", pa.string()),
            ("session_id", pa.string()),
            ("source", pa.string()),
            ("device", pa.string()),
            ("duration_s", pa.float64()),
            ("properties", pa.string()),
            ("ingested_at", TS),
        ]
    ),
)

# What reengage's own messages lived through (sent, delivered, opened, clicked, bounced...).
MESSAGE_EVENTS = FactKind(
    name="message_events",
    id_column="event_id",
    time_column="occurred_at",
    schema=pa.schema(
        [
            ("event_id", pa.string()),
            ("message_id", pa.string()),
            ("customer_id", pa.string()),
            ("channel", pa.string()),
            ("type", pa.string()),
            ("occurred_at", TS),
            ("properties", pa.string()),
            ("ingested_at", TS),
        ]
    ),
)

KINDS: dict[str, FactKind] = {k.name: k for k in (ORDERS, EVENTS, MESSAGE_EVENTS)}


def kind(name: str) -> FactKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind of facts {name!r} (known: {', '.join(KINDS)})") from None
