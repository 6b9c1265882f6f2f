"""When date and inactivity triggers fire: birthdays and order anniversaries at midnight in the
contact's own zone, moved by the offset; inactivity when the days since a valid order reach
the number with no order in between — and the firings of a stretch of time are the same
whether it is read in one piece or in several."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
from sqlalchemy import Engine, insert

from reengage.config import Home
from reengage.facts import reader
from reengage.facts.kinds import ORDERS
from reengage.facts.writer import append
from reengage.journeys.definition import parse_journey
from reengage.journeys.entries import Firing, firings
from reengage.state.schema import contacts

D = timedelta(days=1)


def journey(trigger: str) -> str:
    return f"name: t\ntrigger: {trigger}\nreentry: always\nsteps:\n  - {{id: done, type: end}}\n"


def add(engine: Engine, customer: str, zone: str | None, born: date | None = None) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            insert(contacts).values(
                customer_id=customer,
                timezone=zone,
                birthday=born,
                created_at=datetime(2020, 1, 1, tzinfo=UTC),
                updated_at=datetime(2020, 1, 1, tzinfo=UTC),
                origin="test",
                attributes={},
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def orders(home: Home, lines: list[tuple[str, str, datetime, str]]) -> None:
    append(
        home.settings.facts_path,
        ORDERS,
        pa.Table.from_pylist(
            [
                {"line_id": f"{o}-1", "order_id": o, "customer_id": c, "ordered_at": t}
                | {"product_id": "P1", "quantity": 1, "unit_price": 10.0, "currency": "EUR"}
                | {"discount": 0.0, "coupon_code": None, "status": status}
                for o, c, t, status in lines
            ]
        ),
        ingested_at=datetime(2027, 1, 1, tzinfo=UTC),
    )


def read(
    home: Home, engine: Engine, text: str, low: datetime, high: datetime, pieces: int = 1
) -> list[Firing]:
    """The firings in (low, high], read in `pieces` consecutive stretches."""
    parsed = parse_journey(text, name="t", shown="t.yaml")
    facts = reader.connect(home.settings.facts_path)
    found: list[Firing] = []
    try:
        with engine.connect() as conn:
            edges = [low + (high - low) * i / pieces for i in range(pieces + 1)]
            for a, b in itertools.pairwise(edges):
                found += firings(
                    parsed,
                    a,
                    b,
                    conn=conn,
                    facts=facts,
                    root=home.settings.facts_path,
                    zone=home.settings.zone,
                )
    finally:
        facts.close()
    return found


def test_a_birthday_fires_at_midnight_in_the_contacts_zone_moved_by_the_offset(
    home: Home, engine: Engine
) -> None:
    york = add(engine, "NY", "America/New_York", date(1990, 3, 15))
    rome = add(engine, "RM", "Europe/Rome", date(1985, 3, 15))
    leap = add(engine, "LP", None, date(2000, 2, 29))  # the shop's zone (UTC)
    add(engine, "NB", "Europe/Rome")  # no birthday: never
    text = journey("{date: {of: birthday, offset: -1d}}")
    low, high = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)
    found = {f.contact_id: f for f in read(home, engine, text, low, high)}
    assert set(found) == {york, rome, leap}
    # New York is on daylight time from 8 March 2026: its midnight is 04:00 UTC
    assert found[york].at == datetime(2026, 3, 14, 4, 0, tzinfo=UTC)
    assert found[rome].at == datetime(2026, 3, 13, 23, 0, tzinfo=UTC)  # 00:00 CET, 14 March
    assert found[leap].at == datetime(2026, 2, 27, 0, 0, tzinfo=UTC)  # 28 Feb, less a day
    assert found[york].key == "b:2026-03-15"
    assert read(home, engine, text, low, high, pieces=7) == sorted(
        found.values(), key=lambda f: (f.at, f.contact_id, f.key)
    )


def test_an_order_anniversary_counts_from_the_first_valid_order(home: Home, engine: Engine) -> None:
    buyer = add(engine, "B", "Europe/Rome")
    add(engine, "N", "Europe/Rome")  # no order: no anniversary
    orders(
        home,
        [
            ("O0", "B", datetime(2025, 5, 1, 12, tzinfo=UTC), "cancelled"),  # not valid
            ("O1", "B", datetime(2025, 6, 10, 12, tzinfo=UTC), "paid"),
            ("O2", "B", datetime(2025, 9, 1, 12, tzinfo=UTC), "paid"),
        ],
    )
    text = journey("{date: order_anniversary}")
    year = read(
        home, engine, text, datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert [(f.contact_id, f.at, f.key) for f in year] == [
        (buyer, datetime(2026, 6, 9, 22, 0, tzinfo=UTC), "a:2026-06-10")  # 00:00 in Rome
    ]
    # the first year's own day is no anniversary
    first = read(
        home, engine, text, datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert first == []


def test_inactivity_fires_once_the_days_since_the_last_order_reach_the_number(
    home: Home, engine: Engine
) -> None:
    quiet = add(engine, "Q", None)
    back = add(engine, "R", None)
    t0 = datetime(2026, 1, 1, 9, tzinfo=UTC)
    orders(
        home,
        [
            ("Q1", "Q", t0, "paid"),
            ("Q2", "Q", t0 + 10 * D, "paid"),  # moves Q's crossing to day 40
            ("R1", "R", t0, "paid"),
            ("R2", "R", t0 + 35 * D, "paid"),  # R came back before day 30 + 35 ...
            ("R3", "R", t0 + 50 * D, "refunded"),  # ... and a refund does not count
        ],
    )
    text = journey("{inactivity: {days: 30}}")
    found = read(home, engine, text, t0, t0 + 120 * D)
    assert [(f.contact_id, f.at) for f in found] == [
        (back, t0 + 30 * D),  # 30 days after R1, before R2 came
        (quiet, t0 + 40 * D),  # 30 days after Q2, not after Q1
        (back, t0 + 65 * D),  # 30 days after R2: the refunded R3 is no order
    ]
    assert len({f.key for f in found}) == 3
    assert read(home, engine, text, t0, t0 + 120 * D, pieces=9) == found
