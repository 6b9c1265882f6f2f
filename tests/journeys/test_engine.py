"""The journey engine end to end, on SQLite and PostgreSQL state: who enters a journey and
when, what each step queues and at which logical time, goals, re-entry, holdouts, branches and
splits, the side effects of `update` and `audience` steps, disabling and editing a journey
under running enrollments, replay determinism, and the `run` and `journeys simulate` commands.

Every shop here is tiny (a handful of contacts, a few days of facts) and every run keeps the
messages queued (`deliver=False`): the contact policy is the dispatcher's business, except in
`journeys simulate`, which reports what it would say.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from sqlalchemy import Engine, Table, delete, func, insert, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock, as_utc
from reengage.config import Home, load_settings
from reengage.facts.kinds import EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.journeys import (
    Split,
    disable_journey,
    enable_journey,
    enabled_journeys,
    find_journey,
    folder,
)
from reengage.journeys.runner import RunSummary, run_until, work
from reengage.state.db import engine_for
from reengage.state.schema import (
    audience_members,
    consents,
    contacts,
    enrollment_steps,
    enrollments,
    journey_cursors,
    messages,
    suppressions,
)

T0 = datetime(2026, 10, 5, 9, 10, tzinfo=UTC)  # a Monday morning; Rome is on summer time
H = timedelta(hours=1)
D = timedelta(days=1)
MIN = timedelta(minutes=1)


# --- a tiny shop --------------------------------------------------------------------------


@dataclass
class Shop:
    """A home and its state, with a few contacts and the facts about them."""

    home: Home
    engine: Engine
    ids: dict[str, int] = field(default_factory=dict)  # contact id by customer id
    _events: list[dict[str, Any]] = field(default_factory=list)
    _orders: list[dict[str, Any]] = field(default_factory=list)

    def contact(
        self,
        customer: str,
        *,
        timezone: str | None = None,
        phone: str | None = None,
        marketing: bool = False,
    ) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(
                insert(contacts).values(
                    customer_id=customer,
                    email=f"{customer.lower()}@example.com",
                    phone=phone,
                    timezone=timezone,
                    created_at=T0 - 100 * D,
                    updated_at=T0 - 100 * D,
                    origin="customers",
                    attributes={},
                )
            ).inserted_primary_key
            assert key is not None
            contact_id = int(key[0])
            if marketing:
                conn.execute(
                    insert(consents).values(
                        contact_id=contact_id,
                        channel="email",
                        purpose="marketing",
                        granted=True,
                        source="test",
                        recorded_at=T0 - 100 * D,
                    )
                )
        self.ids[customer] = contact_id
        return contact_id

    def event(self, customer: str, kind: str, at: datetime, product: str = "P1") -> str:
        event_id = f"e{len(self._events) + 1}-{customer}-{kind}"
        self._events.append(
            {
                "event_id": event_id,
                "customer_id": customer,
                "anonymous_id": None,
                "type": kind,
                "occurred_at": at,
                "product_id": product,
                "session_id": f"s-{customer}",
                "source": None,
                "device": None,
                "duration_s": None,
                "properties": None,
            }
        )
        return event_id

    def order(self, customer: str, at: datetime, order_id: str | None = None) -> str:
        order_id = order_id or f"O{len(self._orders) + 1}-{customer}"
        self._orders.append(
            {
                "line_id": f"{order_id}-1",
                "order_id": order_id,
                "customer_id": customer,
                "ordered_at": at,
                "product_id": "P1",
                "quantity": 1,
                "unit_price": 25.0,
                "currency": "EUR",
                "discount": 0.0,
                "coupon_code": None,
                "status": "paid",
            }
        )
        return order_id

    def save(self) -> None:
        """Write the facts gathered so far into the home's facts store."""
        root = self.home.settings.facts_path
        if self._events:
            append(root, EVENTS, pa.Table.from_pylist(self._events), ingested_at=T0 - 200 * D)
        if self._orders:
            append(root, ORDERS, pa.Table.from_pylist(self._orders), ingested_at=T0 - 200 * D)
        self._events, self._orders = [], []

    def journey(self, name: str, text: str) -> None:
        """Place a journey file in the home: it runs."""
        path = folder(self.home) / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def run(self, until: datetime, start: datetime | None = None) -> RunSummary:
        return run_until(
            self.home, self.engine, until, start=start, deliver=False, score_every=None
        )

    def customer(self, contact_id: int) -> str:
        return {v: k for k, v in self.ids.items()}[contact_id]


@pytest.fixture
def shop(home: Home, engine: Engine) -> Shop:
    return Shop(home, engine)


def rows(engine: Engine, table: Table, *where: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(select(table).where(*where).order_by(*table.primary_key.columns))
        return [dict(r._mapping) for r in found]


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def of(shop: Shop, customer: str, journey: str | None = None) -> list[dict[str, Any]]:
    """A customer's enrollments, oldest first."""
    where = [enrollments.c.contact_id == shop.ids[customer]]
    if journey is not None:
        where.append(enrollments.c.journey == journey)
    return rows(shop.engine, enrollments, *where)


def sent(shop: Shop, enrollment: dict[str, Any]) -> list[tuple[str, str, datetime]]:
    """(intent, channel, due_at) of the messages an enrollment queued, by due time."""
    found = rows(shop.engine, messages, messages.c.message_key.like(f"j:{enrollment['id']}:%"))
    return [
        (m["intent"], m["channel"], as_utc(m["due_at"]))
        for m in sorted(found, key=lambda m: (as_utc(m["due_at"]), m["intent"]))
    ]


def at(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def not_held_out(shop: Shop, journey: str, *customers: str) -> None:
    """The journey's holdout is a hash of the contact id: make sure the contacts a test
    follows are not the ones it keeps out (a precondition, not what is tested)."""
    j = find_journey(shop.home, journey).journey
    assert j is not None
    assert not [c for c in customers if j.held_out(shop.ids[c])]


@contextmanager
def own_signals() -> Iterator[None]:
    """`work` installs SIGTERM and SIGINT handlers in the main thread: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def worker_pass(shop: Shop, now: datetime) -> None:
    """One pass of the real-time worker at `now`."""
    with own_signals():
        work(shop.home, shop.engine, FixedClock(now), once=True, deliver=False)


# --- abandoned cart -----------------------------------------------------------------------


def test_abandoned_cart_reminds_helps_and_offers_until_an_order(shop: Shop) -> None:
    enable_journey(shop.home, "abandoned_cart")
    for customer in "ABCD":
        shop.contact(customer)
    not_held_out(shop, "abandoned_cart", "A", "B", "C")
    shop.event("A", "add_to_cart", T0)
    shop.event("B", "add_to_cart", T0)
    shop.order("B", T0 + 5 * H)  # between the reminder and the help
    shop.event("C", "add_to_cart", T0)
    second = shop.event("C", "add_to_cart", T0 + 30 * MIN)
    shop.event("D", "add_to_cart", T0)
    shop.event("D", "checkout_start", T0 + 20 * MIN)
    shop.save()

    done = shop.run(T0 + 4 * D, start=T0 - H)

    # A: a reminder an hour after the cart, help a day after it, the incentive on the third
    [a] = of(shop, "A")
    assert at(a["entered_at"]) == T0 + H
    assert (a["status"], a["reason"]) == ("done", "completed")
    assert sent(shop, a) == [
        ("cart_reminder", "email", T0 + H),
        ("cart_help", "email", T0 + 24 * H),
        ("cart_incentive", "email", T0 + 72 * H),
    ]
    log = rows(shop.engine, enrollment_steps, enrollment_steps.c.enrollment_id == a["id"])
    assert [(s["step"], s["kind"]) for s in log] == [
        ("reminder", "send"),
        ("next_day", "wait"),
        ("help", "send"),
        ("third_day", "wait"),
        ("still_no_order", "branch"),
        ("incentive", "send"),
    ]
    assert log[4]["outcome"] == "then"  # still no order: the incentive's arm
    assert all(s["message_id"] is not None for s in log if s["kind"] == "send")

    # B ordered four hours after the reminder: the journey ends there, nothing more is queued
    [b] = of(shop, "B")
    assert (b["status"], b["reason"]) == ("goal", "goal order_placed")
    assert at(b["ended_at"]) == T0 + 5 * H
    assert (b["step"], b["due_at"]) == (None, None)
    assert sent(shop, b) == [("cart_reminder", "email", T0 + H)]

    # C's second cart, 30 minutes later, started the hour over: one firing, the last cart's
    [c] = of(shop, "C")
    assert c["trigger_key"] == f"e:{second}"
    assert at(c["entered_at"]) == T0 + 90 * MIN
    assert sent(shop, c)[0] == ("cart_reminder", "email", T0 + 90 * MIN)

    # D went to the checkout within the hour: not abandoned
    assert of(shop, "D") == []

    assert done.engine.entered == Counter({"abandoned_cart": 3})
    assert done.engine.queued == count(shop.engine, messages) == 3 + 1 + 3
    assert {m["status"] for m in rows(shop.engine, messages)} == {"queued"}


def test_abandoned_cart_reentry_waits_seven_days(shop: Shop) -> None:
    enable_journey(shop.home, "abandoned_cart")
    shop.contact("E")
    not_held_out(shop, "abandoned_cart", "E")
    first = shop.event("E", "add_to_cart", T0)
    shop.event("E", "add_to_cart", T0 + 2 * D)  # still in the first series
    shop.event("E", "add_to_cart", T0 + 5 * D)  # the series is over, but within 7 days
    last = shop.event("E", "add_to_cart", T0 + 8 * D)  # 8 days on: a new series
    shop.save()

    shop.run(T0 + 9 * D, start=T0 - H)

    one, two = of(shop, "E")
    assert (one["trigger_key"], at(one["entered_at"])) == (f"e:{first}", T0 + H)
    assert (one["status"], at(one["ended_at"])) == ("done", T0 + 72 * H)
    assert (two["trigger_key"], at(two["entered_at"])) == (f"e:{last}", T0 + 8 * D + H)
    assert two["status"] == "active"
    assert sent(shop, two)[0] == ("cart_reminder", "email", T0 + 8 * D + H)
    # nothing was queued for the carts that were passed over
    assert count(shop.engine, messages) == 3 + 2


# --- post-purchase care -------------------------------------------------------------------


def test_post_purchase_thanks_at_once_and_checks_in_at_ten_on_the_contacts_clock(
    shop: Shop,
) -> None:
    enable_journey(shop.home, "post_purchase")
    shop.contact("NY", timezone="America/New_York")
    shop.contact("ROME", timezone="Europe/Rome")
    ordered = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)  # 08:00 in New York, 14:00 in Rome
    shop.order("NY", ordered, "N1")
    shop.order("ROME", ordered, "R1")
    again = datetime(2026, 10, 12, 9, 0, tzinfo=UTC)
    shop.order("ROME", again, "R2")
    shop.save()

    shop.run(datetime(2026, 10, 13, tzinfo=UTC), start=ordered - H)

    # New York: 5 days later it is 08:00 there, so 10:00 the same day (EDT, UTC-4)
    [ny] = of(shop, "NY")
    assert (ny["trigger_key"], ny["status"], ny["step"]) == ("o:N1", "active", "review")
    assert sent(shop, ny) == [
        ("thank_you", "email", ordered),
        ("check_in", "email", datetime(2026, 10, 10, 14, 0, tzinfo=UTC)),
    ]
    # Rome: 5 days later it is 14:00 there, so 10:00 the next morning (CEST, UTC+2)
    first, second = of(shop, "ROME")
    assert sent(shop, first) == [
        ("thank_you", "email", ordered),
        ("check_in", "email", datetime(2026, 10, 11, 8, 0, tzinfo=UTC)),
    ]
    # the second order ended the first care (goal) and started a new one, about that order
    assert (first["status"], first["reason"]) == ("goal", "goal order_placed")
    assert at(first["ended_at"]) == again
    assert first["payload"]["order_id"] == "R1"
    assert (second["trigger_key"], at(second["entered_at"])) == ("o:R2", again)
    assert (second["status"], second["step"]) == ("active", "check_in")
    assert second["payload"]["order_id"] == "R2"
    assert sent(shop, second) == [("thank_you", "email", again)]


# --- holdout ------------------------------------------------------------------------------

MEASURED = """\
name: measured
holdout: 0.5
trigger:
  event: order_placed
goals: [unsubscribed]
reentry: always
steps:
  - id: thanks
    type: send
    intent: thank_you
    channel: email
"""


PROMOTED = """\
name: promoted
trigger:
  event: order_placed
reentry: always
steps:
  - id: browse
    type: send
    intent: browse_reminder
    channel: email
"""
SERVICE = MEASURED.replace("holdout: 0.5\n", "").replace("name: measured", "name: service")


@pytest.fixture
def global_env(env: dict[str, str]) -> dict[str, str]:
    """A home whose global holdout keeps half of all contacts from marketing."""
    env["REENGAGE_GLOBAL_HOLDOUT"] = "0.5"
    return env


def test_the_global_holdout_keeps_the_same_contacts_from_every_marketing_journey(
    global_env: dict[str, str], shop: Shop
) -> None:
    from reengage.measure.holdout import global_holdout

    assert shop.home.settings.global_holdout == 0.5
    shop.journey("promoted", PROMOTED)
    shop.journey("service", SERVICE)
    people = [f"G{i:02d}" for i in range(40)]
    for i, customer in enumerate(people):
        shop.contact(customer)
        shop.order(customer, T0 + i * MIN)
    shop.save()
    shop.run(T0 + D, start=T0 - H)
    drawn = global_holdout([shop.ids[c] for c in people], 0.5)
    expected = {c for c, held in zip(people, drawn, strict=True) if held}
    assert 10 <= len(expected) <= 30  # about half of 40
    promoted = {
        shop.customer(e["contact_id"]): e
        for e in rows(shop.engine, enrollments, enrollments.c.journey == "promoted")
    }
    assert {c for c, e in promoted.items() if e["status"] == "held_out"} == expected
    assert {e["reason"] for c, e in promoted.items() if c in expected} == {"global holdout"}
    # a service journey (an order's thanks) still reaches everyone
    service = rows(shop.engine, enrollments, enrollments.c.journey == "service")
    assert len(service) == 40 and not [e for e in service if e["status"] == "held_out"]
    receivers = {
        shop.customer(m["contact_id"])
        for m in rows(shop.engine, messages, messages.c.intent == "browse_reminder")
    }
    assert receivers == set(people) - expected


def test_the_journey_holdout_keeps_half_out_the_same_way_every_time(shop: Shop) -> None:
    shop.journey("measured", MEASURED)
    people = [f"C{i:02d}" for i in range(40)]
    for i, customer in enumerate(people):
        shop.contact(customer)
        shop.order(customer, T0 + i * MIN)
        shop.order(customer, T0 + 2 * D + i * MIN)  # enters again
    shop.save()

    def held() -> dict[str, set[str]]:
        statuses: dict[str, set[str]] = {}
        for e in rows(shop.engine, enrollments):
            statuses.setdefault(shop.customer(e["contact_id"]), set()).add(e["status"])
        return statuses

    done = shop.run(T0 + 3 * D, start=T0 - H)
    statuses = held()
    assert set(statuses) == set(people)
    # each contact is on one side both times they entered
    assert all(len(s) == 1 for s in statuses.values())
    out = {c for c, s in statuses.items() if s == {"held_out"}}
    assert {c for c, s in statuses.items() if s == {"done"}} == set(people) - out
    assert 12 <= len(out) <= 28  # about half of 40
    assert done.engine.held_out == Counter({"measured": 2 * len(out)})
    assert done.engine.entered == Counter({"measured": 2 * (40 - len(out))})
    for e in rows(shop.engine, enrollments, enrollments.c.status == "held_out"):
        assert e["reason"] == "journey holdout"
        assert (e["step"], e["due_at"], e["steps_run"]) == (None, None, 0)
        assert at(e["ended_at"]) == at(e["entered_at"])
    # the held-out get nothing; everyone else a thank-you per order
    receivers = Counter(shop.customer(m["contact_id"]) for m in rows(shop.engine, messages))
    assert receivers == Counter({c: 2 for c in set(people) - out})
    measured = enabled_journeys(shop.home)["measured"]
    assert out == {c for c in people if measured.held_out(shop.ids[c])}

    # a replay from scratch holds out the same contacts
    with shop.engine.begin() as conn:
        for table in (enrollment_steps, messages, enrollments, journey_cursors):
            conn.execute(delete(table))
    shop.run(T0 + 3 * D, start=T0 - H)
    assert held() == statuses


# --- branch and split ---------------------------------------------------------------------

TRYOUT = """\
name: tryout
trigger:
  event: product_view
goals: [unsubscribed]
reentry: never
steps:
  - id: buyer
    type: branch
    if: purchased within 30d
    then:
      - {id: to_buyer, type: send, intent: cross_sell, channel: email}
    else:
      - {id: to_browser, type: send, intent: browse_reminder, channel: email}
  - id: pause
    type: wait
    duration: 1d
  - id: note_test
    type: split
    variants:
      - name: short
        steps:
          - {id: short_note, type: send, intent: up_sell, channel: email}
      - name: long
        steps:
          - {id: long_note, type: send, intent: down_sell, channel: email}
          - {id: long_rest, type: wait, duration: 2h}
"""


def test_a_branch_tells_buyers_from_browsers_and_a_split_runs_the_chosen_variant(
    shop: Shop,
) -> None:
    shop.journey("tryout", TRYOUT)
    buyers, browsers = ["B1", "B2", "B3"], ["V1", "V2", "V3"]
    for customer in buyers + browsers:
        shop.contact(customer)
        shop.event(customer, "product_view", T0)
    for customer in buyers:
        shop.order(customer, T0 - 10 * D)
    shop.order("V1", T0 - 40 * D)  # too long ago to count
    shop.save()
    journey = enabled_journeys(shop.home)["tryout"]
    split = journey.step("note_test")
    assert isinstance(split, Split)
    drawn = {c: journey.choose(split, shop.ids[c]).name for c in shop.ids}
    assert set(drawn.values()) == {"short", "long"}  # precondition: both arms are drawn

    shop.run(T0 + 2 * D, start=T0 - H)

    for customer in buyers + browsers:
        [e] = of(shop, customer)
        assert e["status"] == "done"
        assert e["variants"] == f"note_test={drawn[customer]}"
        first = "cross_sell" if customer in buyers else "browse_reminder"
        second = "up_sell" if drawn[customer] == "short" else "down_sell"
        assert sent(shop, e) == [(first, "email", T0), (second, "email", T0 + D)]
        log = {
            s["step"]: s["outcome"]
            for s in rows(
                shop.engine, enrollment_steps, enrollment_steps.c.enrollment_id == e["id"]
            )
        }
        assert log["buyer"] == ("then" if customer in buyers else "else")
        assert log["note_test"] == f"variant {drawn[customer]}"
        # the other arm's steps never ran
        assert ("long_note" in log) == (drawn[customer] == "long")
        assert ("short_note" in log) == (drawn[customer] == "short")
        if drawn[customer] == "long":
            assert at(e["ended_at"]) == T0 + D + 2 * H  # after the variant's own wait


# --- update and audience steps ------------------------------------------------------------

FAREWELL = """\
name: farewell
trigger:
  event: order_placed
reentry: never
steps:
  - {id: retarget, type: audience, add: buyers}
  - {id: rest, type: wait, duration: 2d}
  - id: sunset
    type: update
    set: {sunset: true}
    suppress: sunset
"""


def test_update_suppresses_and_audience_adds(shop: Shop) -> None:
    shop.journey("farewell", FAREWELL)
    gone = shop.contact("GONE", phone="+39 333 123 4567")
    stays = shop.contact("STAYS")
    shop.order("GONE", T0)
    shop.save()

    shop.run(T0 + D, start=T0 - H)
    [member] = rows(shop.engine, audience_members)
    assert (member["audience"], member["contact_id"]) == ("buyers", gone)
    assert (at(member["joined_at"]), member["left_at"]) == (T0, None)
    assert rows(shop.engine, suppressions) == []  # still waiting

    shop.run(T0 + 3 * D)
    found = {
        (
            s["channel"],
            s["address"],
            s["reason"],
            s["contact_id"],
            s["source"],
            at(s["recorded_at"]),
        )
        for s in rows(shop.engine, suppressions)
    }
    assert found == {
        ("email", "gone@example.com", "sunset", gone, "journey farewell", T0 + 2 * D),
        ("sms", "+393331234567", "sunset", gone, "journey farewell", T0 + 2 * D),
    }
    [person] = rows(shop.engine, contacts, contacts.c.id == gone)
    assert person["attributes"] == {"sunset": True}
    [other] = rows(shop.engine, contacts, contacts.c.id == stays)
    assert other["attributes"] == {}
    [e] = of(shop, "GONE")
    assert e["status"] == "done"
    log = rows(shop.engine, enrollment_steps, enrollment_steps.c.enrollment_id == e["id"])
    assert [(s["step"], s["outcome"]) for s in log] == [
        ("retarget", "add buyers"),
        ("rest", f"until {(T0 + 2 * D).isoformat()}"),
        ("sunset", "set sunset; suppressed 2 address(es): sunset"),
    ]


# --- disabling and editing a journey under running enrollments ----------------------------


def test_disabling_or_editing_a_journey_ends_the_enrollments_it_strands(shop: Shop) -> None:
    enable_journey(shop.home, "abandoned_cart")
    shop.contact("A")
    shop.contact("B")
    not_held_out(shop, "abandoned_cart", "A", "B")
    shop.event("A", "add_to_cart", T0)
    shop.event("B", "add_to_cart", T0 + 2 * D)
    shop.save()
    shop.run(T0 + 2 * H, start=T0 - H)
    [a] = of(shop, "A")
    # past the day's wait, it stands at the step that runs when the wait is over
    assert (a["status"], a["step"], at(a["due_at"])) == ("active", "help", T0 + 24 * H)

    # disabled: the next pass ends the enrollment, recorded, without another message
    disable_journey(shop.home, "abandoned_cart")
    worker_pass(shop, T0 + 25 * H)
    [a] = of(shop, "A")
    assert (a["status"], a["reason"]) == ("ended", "journey disabled")
    assert (a["step"], a["due_at"], at(a["ended_at"])) == (None, None, T0 + 25 * H)
    assert [m[0] for m in sent(shop, a)] == ["cart_reminder"]

    # enabled again (the .disabled file comes back): B's cart enters, and waits a day
    assert enable_journey(shop.home, "abandoned_cart").action == "restored"
    worker_pass(shop, T0 + 2 * D + 2 * H)
    [b] = of(shop, "B")
    assert (b["status"], b["step"]) == ("active", "help")
    assert [m[0] for m in sent(shop, b)] == ["cart_reminder"]

    # edited so that B's step is gone: it ends, naming the step, rather than guess
    path = folder(shop.home) / "abandoned_cart.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("id: help") == 1
    path.write_text(text.replace("id: help", "id: helping_hand"), encoding="utf-8")
    worker_pass(shop, T0 + 3 * D + 2 * H)
    [b] = of(shop, "B")
    assert (b["status"], b["reason"]) == ("ended", "step help is no longer in the journey")
    assert at(b["ended_at"]) == T0 + 3 * D + 2 * H
    assert [m[0] for m in sent(shop, b)] == ["cart_reminder"]
    assert not rows(shop.engine, enrollments, enrollments.c.status == "active")


# --- replay determinism -------------------------------------------------------------------


def build_busy_shop(shop: Shop) -> None:
    """Carts, orders and views for three journeys, over about a week."""
    enable_journey(shop.home, "abandoned_cart")
    enable_journey(shop.home, "post_purchase")
    shop.journey("tryout", TRYOUT)
    shop.contact("A", timezone="Europe/Rome")
    shop.contact("B", timezone="America/New_York")
    shop.contact("C")
    shop.contact("D", timezone="Asia/Tokyo")
    shop.contact("E")
    shop.event("A", "add_to_cart", T0)
    shop.event("B", "add_to_cart", T0 + 3 * H)
    shop.order("B", T0 + 30 * H + 20 * MIN)  # ends B's cart series
    shop.event("C", "add_to_cart", T0 + D)
    shop.event("C", "add_to_cart", T0 + D + 25 * MIN)
    shop.order("D", T0 - 5 * D)
    shop.order("D", T0 + 2 * D + 7 * H)
    shop.event("D", "product_view", T0 + 4 * H)
    shop.event("E", "product_view", T0 + 2 * D)
    shop.event("A", "product_view", T0 + 5 * H)
    shop.contact("F")
    shop.event("F", "add_to_cart", T0 + 2 * D + 5 * H)  # just after a piece ends
    shop.order("F", T0 + 2 * D + 9 * H + 20 * MIN)
    shop.save()


@pytest.fixture
def twin(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[Shop]:
    """A second home with its own state on the same backend as `home`."""
    admin = None  # PostgreSQL: where the twin's database is made and dropped
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        server = request.getfixturevalue("pg_server")
        admin = server.url().replace("+psycopg", "")
        name = f"twin{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = server.url(name)
    settings = load_settings(
        {"REENGAGE_HOME": str(tmp_path / "twin"), "REENGAGE_DATABASE_URL": url}
    )
    home = init_home(settings).home
    eng = engine_for(home.settings.state_url)
    try:
        yield Shop(home, eng)
    finally:
        eng.dispose()
        if admin is not None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def outcome(shop: Shop) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """What the engine decided, by natural keys (surrogate ids aside): the messages as
    (journey, customer, trigger, step, intent, channel, due_at) and the enrollments."""
    natural = {
        e["id"]: (e["journey"], shop.customer(e["contact_id"]), e["trigger_key"])
        for e in rows(shop.engine, enrollments)
    }
    queued = set()
    for m in rows(shop.engine, messages):
        _, enrollment, step = m["message_key"].split(":")
        assert step == m["step"]
        queued.add((*natural[int(enrollment)], step, m["intent"], m["channel"], at(m["due_at"])))
    enrolled = {
        (
            *natural[e["id"]],
            at(e["entered_at"]),
            e["status"],
            e["reason"],
            e["step"],
            at(e["due_at"]),
            e["variants"],
            at(e["ended_at"]),
            e["steps_run"],
        )
        for e in rows(shop.engine, enrollments)
    }
    return queued, enrolled


def test_a_replay_in_pieces_decides_what_a_replay_in_one_go_does(shop: Shop, twin: Shop) -> None:
    build_busy_shop(shop)
    build_busy_shop(twin)
    assert shop.ids == twin.ids
    not_held_out(shop, "abandoned_cart", *shop.ids)
    start, until = T0 - 2 * H, T0 + 6 * D

    whole = shop.run(until, start=start)
    # pieces that end off the hourly grid, mid-series
    pieces = [
        twin.run(T0 + 17 * H + 37 * MIN, start=start),
        twin.run(T0 + 2 * D + 4 * H + 5 * MIN),
        twin.run(until),
    ]

    queued, enrolled = outcome(shop)
    assert outcome(twin) == (queued, enrolled)
    # the shop was busy enough for this to mean something
    assert {q[0] for q in queued} == {"abandoned_cart", "post_purchase", "tryout"}
    assert len(queued) >= 12
    assert {e[4] for e in enrolled} >= {"goal", "active", "done"}
    assert whole.engine.queued == sum(p.engine.queued for p in pieces) == len(queued)
    assert whole.engine.entered == sum((p.engine.entered for p in pieces), Counter())


# --- the commands -------------------------------------------------------------------------


def test_journeys_simulate_plans_with_the_policy_and_changes_nothing(
    shop: Shop, cli: CliRunner
) -> None:
    shop.contact("YES", marketing=True)
    shop.contact("NO")  # no marketing consent
    not_held_out(shop, "abandoned_cart", "YES", "NO")
    shop.event("YES", "add_to_cart", T0)
    shop.event("NO", "add_to_cart", T0)
    shop.order("NO", T0 + 10 * D)  # after the simulated days: not foreseen
    shop.save()

    result = cli.invoke(
        app,
        [
            "journeys",
            "simulate",
            "abandoned_cart",
            "--as-of",
            "2026-10-05",
            "--days",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["journey"], data["start"]) == ("abandoned_cart", "2026-10-05T00:00:00+00:00")
    assert data["entered"] == {"abandoned_cart": 2}
    planned = {(m["customer_id"], m["intent"]): m for m in data["messages"]}
    assert set(planned) == {
        ("YES", "cart_reminder"),
        ("YES", "cart_help"),
        ("NO", "cart_reminder"),
        ("NO", "cart_help"),
    }
    reminder = planned[("YES", "cart_reminder")]
    assert (reminder["step"], reminder["channel"]) == ("reminder", "email")
    assert reminder["due_at"] == (T0 + H).isoformat()
    assert reminder["decision"] == "send" and reminder["reason"] is None
    assert planned[("YES", "cart_help")]["due_at"] == (T0 + 24 * H).isoformat()
    refused = planned[("NO", "cart_reminder")]
    assert refused["decision"] == "block"
    assert "consent" in refused["reason"]

    # a service message needs no opt-in from a customer
    care = cli.invoke(
        app,
        ["journeys", "simulate", "post_purchase", "--as-of", "2026-10-15", "--days", "1", "--json"],
    )
    assert care.exit_code == 0, care.output
    [thanks] = json.loads(care.stdout)["messages"]
    assert (thanks["customer_id"], thanks["intent"], thanks["decision"]) == (
        "NO",
        "thank_you",
        "send",
    )

    # nothing of it is in the real state
    for table in (enrollments, enrollment_steps, messages, journey_cursors):
        assert count(shop.engine, table) == 0


def test_the_run_command_replays_and_reports_what_it_did(shop: Shop, cli: CliRunner) -> None:
    enable_journey(shop.home, "abandoned_cart")
    enable_journey(shop.home, "post_purchase")
    shop.contact("A")
    shop.contact("B")
    not_held_out(shop, "abandoned_cart", "A")
    shop.event("A", "add_to_cart", T0)
    shop.order("B", T0 + 2 * H)
    shop.order("B", T0 + 2 * D)
    shop.save()

    # the first run must say where the replay begins
    fresh = cli.invoke(app, ["run", "--until", "2026-10-09", "--no-deliver", "--json"])
    assert fresh.exit_code == 2
    assert "--from" in fresh.stderr
    assert "Traceback" not in fresh.output
    assert count(shop.engine, journey_cursors) == 0

    args = ["run", "--until", "2026-10-09", "--from", "2026-10-05"]
    result = cli.invoke(app, [*args, "--no-deliver", "--score-every", "0d", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["start"], data["until"]) == (
        "2026-10-05T00:00:00+00:00",
        "2026-10-09T00:00:00+00:00",
    )
    assert data["scored"] == []
    # four days, but the hours where nothing is due are skipped (queued messages that are
    # not delivered are due for nobody)
    assert 4 <= data["ticks"] < 24
    assert data["entered"] == {"abandoned_cart": 1, "post_purchase": 2}
    assert data["held_out"] == {}
    assert data["ended"] == {"completed": 1, "goal order_placed": 1}
    assert data["delivery"] == {}
    # the counts are the state's
    entered = Counter(e["journey"] for e in rows(shop.engine, enrollments))
    assert data["entered"] == dict(entered)
    assert data["steps"] == count(shop.engine, enrollment_steps) > 0
    assert data["queued"] == count(shop.engine, messages) == 3 + 2
    assert {m["status"] for m in rows(shop.engine, messages)} == {"queued"}
    ended = Counter(e["reason"] for e in rows(shop.engine, enrollments) if e["status"] != "active")
    assert data["ended"] == dict(ended)

    # a later run goes on where this one stopped: nothing twice
    again = cli.invoke(app, ["run", "--until", "2026-10-09", "--no-deliver", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["queued"] == 0
    assert count(shop.engine, messages) == 5
