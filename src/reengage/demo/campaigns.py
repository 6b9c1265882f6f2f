"""The demo's two campaigns: this week's newsletter to everyone who can be emailed, each at
their best hour, and a seasonal win-back mailing to everyone gone quiet, with a subject test
and a holdout. Both run through the real code (frozen audience, contact policy, outbox, mail
sink, decision, results) on a simulated clock that runs on from the shop's last day.

The synthetic customers do not answer messages by themselves (that is the measurement
issue's relational simulation), so this module makes them answer, and says so: a
**simulation** with the rates of `Responses`, written to the facts as the click handler and
the order import would write them. The results printed are then what reengage measures of
that simulation: the lift it finds should be near the uplift simulated, within its interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, func, select

from reengage.audience.definitions import create_segment
from reengage.campaigns import lifecycle
from reengage.campaigns.results import results
from reengage.campaigns.runner import next_due, tick
from reengage.clock import FixedClock, as_utc
from reengage.config import Home
from reengage.demo.responses import write_orders
from reengage.facts import reader
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.messages.dispatch import deliver_due
from reengage.state.schema import campaign_recipients, contacts, messages

SEGMENTS = {
    "subscribers": ("Everyone who can be emailed", "can email"),
    "gone_quiet": (
        "Customers who stopped buying",
        'lifecycle in ("at_risk", "inactive", "lost")',
    ),
}

NEWSLETTER = """\
description: This week's news, to everyone who can be emailed, at their best hour
audience: {segments: [subscribers], exclude: [gone_quiet]}
message: {intent: newsletter}
schedule: {best_time: 24h}
holdout: 10%
"""

WINBACK = """\
description: The seasonal win-back mailing, with a subject test
audience: {segments: [gone_quiet]}
message: {intent: winback_reminder}
holdout: 10%
test:
  share: 50%
  window: 4h
  metric: clicks
  variants:
    - name: plain
      copy:
        en: {subject: "It has been a while"}
        it: {subject: "È passato un po' di tempo"}
        fr: {subject: "Cela fait un moment"}
    - name: personal
      copy:
        en: {subject: "{{ first_name or 'Hello' }}, we kept a few things for you"}
        it: {subject: "{{ first_name or 'Ciao' }}, abbiamo tenuto qualcosa per te"}
        fr: {subject: "{{ first_name or 'Bonjour' }}, nous vous avons gardé quelques idées"}
"""

CAMPAIGNS = {"newsletter": NEWSLETTER, "winback_season": WINBACK}
SIMULATED_DAYS = 6


@dataclass(frozen=True)
class Responses:
    """How the simulated customers answer (rates per message sent, or per person over the
    conversion window). Assumptions for the demo, not measurements of anyone."""

    open: float = 0.35  # a human open
    machine_open: float = 0.10  # a privacy proxy fetching the pixel
    click: float = 0.04  # a human click, given an email
    click_boost: dict[str, float] | None = None  # variant: multiplier of `click`
    buy: float = 0.04  # anyone's chance to buy within the window, messaged or not
    uplift: float = 0.03  # added to `buy` for those who received the message
    order_value: float = 60.0  # mean order value (log-normal, sigma 0.5)

    def boost(self, variant: str | None) -> float:
        return (self.click_boost or {"personal": 2.0}).get(variant or "", 1.0)


def run_campaigns(
    home: Home, engine: Engine, now: datetime, responses: Responses | None = None
) -> dict[str, dict[str, Any]]:
    """Create, run and measure the two campaigns on a simulated clock from `now`; on a
    later demo run, the results of the ones already run (nothing is sent twice)."""
    responses = responses or Responses()
    known = {r.name: r for r in lifecycle.rows(engine)}
    fresh = [name for name in CAMPAIGNS if name not in known]
    end = now + timedelta(days=SIMULATED_DAYS)
    if fresh:
        clock = FixedClock(now)
        for name, (description, rule) in SEGMENTS.items():
            create_segment(home, name, rule, description=description, replace=True)
        for name in fresh:
            lifecycle.write(home, engine, clock, name, CAMPAIGNS[name])
            lifecycle.schedule(home, engine, clock, name, None)
        _simulate(home, engine, clock, end, responses)
    else:
        started = [r.started_at for r in known.values() if r.started_at is not None]
        end = as_utc(min(started)) + timedelta(days=SIMULATED_DAYS) if started else end
    return {name: results(home, engine, name, end) for name in CAMPAIGNS}


def _simulate(
    home: Home, engine: Engine, clock: FixedClock, end: datetime, responses: Responses
) -> None:
    """From one due moment to the next (a start, a decision, a message due): move the
    campaigns on, deliver what is due, and have the people who got a message answer it (and
    everyone in the audience buy, or not)."""
    rng = np.random.default_rng(10)
    answered: set[int] = set()
    # one facts connection for the whole run (listing the facts files is slow), its file
    # list refreshed after each round of answers
    facts = reader.connect(home.settings.facts_path)
    try:
        _rounds(home, engine, clock, end, responses, rng, answered, facts)
    finally:
        facts.close()
    _buy_without_message(home, engine, rng, responses)


def _rounds(
    home: Home,
    engine: Engine,
    clock: FixedClock,
    end: datetime,
    responses: Responses,
    rng: np.random.Generator,
    answered: set[int],
    facts: Any,
) -> None:
    while True:
        tick(home, engine, clock, facts=facts)
        deliver_due(home, engine, clock, facts=facts)
        if _answer(home, engine, rng, answered, responses):
            reader.refresh_views(facts, home.settings.facts_path)
        upcoming = [t for t in (next_due(engine), _next_message(engine)) if t is not None]
        if not upcoming or min(upcoming) >= end:
            break
        clock.advance(max(min(upcoming) - clock.now(), timedelta(minutes=1)))
    clock.advance(max(end - clock.now(), timedelta(0)))
    tick(home, engine, clock, facts=facts)


def _next_message(engine: Engine) -> datetime | None:
    query = select(func.min(messages.c.due_at)).where(
        messages.c.campaign.is_not(None), messages.c.status.in_(("queued", "deferred"))
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else as_utc(found)


def _answer(
    home: Home, engine: Engine, rng: np.random.Generator, answered: set[int], r: Responses
) -> bool:
    """Answers to the messages sent since the last round; whether there were any."""
    query = (
        select(messages.c.id, messages.c.step, messages.c.sent_at, contacts.c.customer_id)
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.campaign.is_not(None), messages.c.status == "sent")
    )
    with engine.connect() as conn:
        new = [row for row in conn.execute(query) if row.id not in answered]
    events: list[dict[str, Any]] = []
    buyers: list[tuple[str, datetime]] = []
    for row in new:
        answered.add(row.id)
        sent = as_utc(row.sent_at)
        minutes = rng.integers(5, 180)  # answers come within three hours, inside the test
        at = sent + timedelta(minutes=int(minutes))
        if rng.random() < r.machine_open:
            events.append(_event(row, "open", sent + timedelta(seconds=30), machine=True))
        opened = rng.random() < r.open
        if opened:
            events.append(_event(row, "open", at))
            if rng.random() < min(1.0, r.click * r.boost(row.step) / r.open):
                events.append(_event(row, "click", at + timedelta(minutes=2)))
        if row.customer_id and rng.random() < r.buy + r.uplift:
            buyers.append((row.customer_id, sent + timedelta(hours=float(rng.uniform(1, 96)))))
    if events:
        schema = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])
        append(
            home.settings.facts_path,
            MESSAGE_EVENTS,
            pa.Table.from_pylist(events, schema=schema),
            ingested_at=max(e["occurred_at"] for e in events),
        )
    _orders(home, engine, rng, buyers, r)
    return bool(new)


def _event(row: Any, kind: str, at: datetime, machine: bool = False) -> dict[str, Any]:
    return {
        "event_id": f"sim-{kind}-{row.id}-{int(machine)}",
        "message_id": str(row.id),
        "customer_id": row.customer_id,
        "channel": "email",
        "type": kind,
        "occurred_at": at,
        "properties": json.dumps({"machine": machine, "simulated": True}),
    }


def _buy_without_message(
    home: Home, engine: Engine, rng: np.random.Generator, r: Responses
) -> None:
    """The holdout and those the policy kept from the message buy at the base rate."""
    query = (
        select(contacts.c.customer_id, campaign_recipients.c.campaign)
        .join(contacts, contacts.c.id == campaign_recipients.c.contact_id)
        .outerjoin(
            messages,
            (messages.c.campaign == campaign_recipients.c.campaign)
            & (messages.c.contact_id == campaign_recipients.c.contact_id)
            & (messages.c.status == "sent"),
        )
        .where(messages.c.id.is_(None), contacts.c.customer_id.is_not(None))
    )
    starts = {r.name: as_utc(r.started_at) for r in lifecycle.rows(engine) if r.started_at}
    buyers: list[tuple[str, datetime]] = []
    with engine.connect() as conn:
        for customer, campaign in conn.execute(query):
            if campaign in starts and rng.random() < r.buy:
                hours = float(rng.uniform(1, 96))
                buyers.append((customer, starts[campaign] + timedelta(hours=hours)))
    _orders(home, engine, rng, buyers, r)


def _orders(
    home: Home,
    engine: Engine,
    rng: np.random.Generator,
    buyers: list[tuple[str, datetime]],
    r: Responses,
) -> None:
    write_orders(home, engine, rng, buyers, r.order_value)
