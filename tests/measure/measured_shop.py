"""A small shop worked out by hand for the measurement tests: six customers, their orders
and the messages that did or did not lead to them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.clock import FixedClock
from reengage.config import Home
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.ingest.importer import import_file
from reengage.state.schema import contacts, messages, offers

DAY0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price,coupon_code,status
O1,C1,{d4},P1,1,40.00,wb10,paid
O2,C2,{d4},P1,2,15.00,,paid
O3,C2,{d10},P1,1,15.00,,paid
O4,C3,{d3},P1,1,20.00,,paid
O5,C4,{d3},P1,1,20.00,,paid
O6,C5,{d3},P1,1,20.00,,paid
O7,C6,{d3},P1,1,50.00,,paid
O8,C6,{d3b},P1,1,70.00,,cancelled
"""


class Shop:
    def __init__(self, home: Home, engine: Engine) -> None:
        self.home, self.engine = home, engine
        self.events: list[dict[str, Any]] = []

    def contact(self, customer_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(contacts.c.id).where(contacts.c.customer_id == customer_id)
                ).scalar_one()
            )

    def message(self, customer_id: str, sent: datetime, channel: str = "email", **kw: Any) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    messages.insert().values(
                        message_key=f"k{customer_id}{sent.isoformat()}{channel}",
                        contact_id=self.contact(customer_id),
                        channel=channel,
                        intent=kw.get("intent", "winback"),
                        style="nurturer",
                        language="en",
                        variant="nurturer",
                        journey=kw.get("journey", "winback"),
                        step=kw.get("step", "first"),
                        status=kw.get("status", "sent"),
                        due_at=sent,
                        created_at=sent,
                        sent_at=sent,
                        attempts=1,
                        priority=0,
                        payload={},
                    )
                ).inserted_primary_key[0]
            )

    def offer(self, customer_id: str, message_id: int, code: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                offers.insert().values(
                    code=code,
                    contact_id=self.contact(customer_id),
                    intent="winback",
                    level=1,
                    kind="percent",
                    value=10,
                    currency="EUR",
                    issued_at=DAY0,
                    expires_at=day(30),
                    message_id=message_id,
                    status="issued",
                )
            )

    def event(self, message_id: int, kind: str, at: datetime, machine: bool = False) -> None:
        self.events.append(
            {
                "event_id": f"e{len(self.events)}",
                "message_id": str(message_id),
                "customer_id": None,
                "channel": "email",
                "type": kind,
                "occurred_at": at,
                "properties": json.dumps({"machine": True} if machine else {}),
            }
        )

    def store_events(self) -> None:
        schema = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])
        table = pa.Table.from_pylist(self.events, schema=schema)
        append(self.home.settings.facts_path, MESSAGE_EVENTS, table, ingested_at=day(20))


def build(home: Home, engine: Engine, tmp_path: Path) -> tuple[Shop, dict[str, int]]:
    path = tmp_path / "orders.csv"
    stamps = {"d3": day(3), "d3b": day(3.1), "d4": day(4), "d10": day(10)}
    path.write_text(
        ORDERS.format(**{k: v.isoformat() for k, v in stamps.items()}), encoding="utf-8"
    )
    assert import_file(home, engine, "orders", path, clock=FixedClock(day(20))).rejected == 0
    shop = Shop(home, engine)
    m: dict[str, int] = {}
    # C1: the code came with the winback email; a later SMS click does not take the order
    m["c1_code"] = shop.message("C1", day(1))
    shop.offer("C1", m["c1_code"], "WB10")
    m["c1_sms"] = shop.message("C1", day(3), channel="sms", journey="cart")
    shop.event(m["c1_sms"], "click", day(3.5))
    # C2: a click 3 days before O2 claims it; O3 is 9 days later, out of the window
    m["c2"] = shop.message("C2", day(0.5))
    shop.event(m["c2"], "click", day(1))
    # C3: only an open, a day before
    m["c3"] = shop.message("C3", day(1.5))
    shop.event(m["c3"], "open", day(2))
    # C4: a machine open (privacy proxy) right before
    m["c4"] = shop.message("C4", day(2.9))
    shop.event(m["c4"], "open", day(2.95), machine=True)
    # C5: a link scanner's click
    m["c5"] = shop.message("C5", day(2.5))
    shop.event(m["c5"], "click", day(2.5), machine=True)
    # C6: two clicked messages: the last click wins; the cancelled order is nobody's
    m["c6_first"] = shop.message("C6", day(0), step="first")
    m["c6_second"] = shop.message("C6", day(2), step="second")
    shop.event(m["c6_first"], "click", day(1))
    shop.event(m["c6_second"], "click", day(2.5))
    shop.event(m["c6_first"], "click", day(2.2))
    shop.store_events()
    return shop, m
