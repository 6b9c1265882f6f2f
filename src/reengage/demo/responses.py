"""How the synthetic shop's customers answer messages: one model for every simulation.

Each message sent gets, independently, a machine open (a privacy proxy fetching the pixel),
and from the person: an order within a few days with probability `buy`, a click with
probability `click` (every buyer clicks first: they came through the message), a human open
with probability `open` (every clicker opened). `buy` and `click` are base rates by the
message's intent (a cart reminder is answered more than a newsletter), multiplied by the
recipient's lifecycle stage (a lost customer answers less than a loyal one), and by
**(1 + congruence_effect) when the message's copy variant is the person's hidden style**.

The congruence effect is the one documented assumption about people. Its default, 0.4, is
taken from Matz, Kosinski, Nave & Stillwell (2017), "Psychological targeting as an effective
approach to digital mass persuasion", PNAS 114(48): 12714-12719 — ads matched to a person's
personality got up to about 40% more clicks and about 50% more purchases than mismatched
ones. Those were personality (Big Five) traits inferred from Facebook likes, not these four
styles: the figure is a plausible order of magnitude, not a measurement of this shop. It is
a parameter of the demo (`reengage demo --relational --congruence 0.4`), not a setting.

The answers are written to the facts as the click handler and the order import would write
them, marked `simulated` in the events' properties and `SIM-` in the order ids.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, func, select

from reengage.clock import as_utc
from reengage.config import Home
from reengage.facts.kinds import MESSAGE_EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.state.schema import contacts, messages, products, scores

__all__ = [
    "CONGRUENCE_EFFECT",
    "Answers",
    "ResponseModel",
    "answer_sent",
    "hidden_styles",
    "write_orders",
]

#: Matz et al. 2017 (PNAS): about +40% clicks, +50% purchases for personality-matched ads
CONGRUENCE_EFFECT = 0.4

_INTENT_RATES: dict[str, tuple[float, float]] = {  # prefix: (click, buy) per message
    "cart": (0.12, 0.08),
    "winback": (0.05, 0.03),
    "last_chance": (0.05, 0.03),
    "newsletter": (0.04, 0.015),
}
_DEFAULT_RATES = (0.04, 0.02)
_LIFECYCLE: dict[str, float] = {  # multiplies click and buy
    "new": 1.0,
    "repeat": 1.1,
    "loyal": 1.2,
    "reactivated": 1.0,
    "at_risk": 0.8,
    "inactive": 0.6,
    "lost": 0.4,
    "prospect": 0.7,
}


@dataclass(frozen=True)
class ResponseModel:
    """The simulated customers' behaviour towards messages (rates per message)."""

    congruence_effect: float = CONGRUENCE_EFFECT
    open: float = 0.35  # a human open (clickers always open)
    machine_open: float = 0.10  # a privacy proxy fetching the pixel
    intent_rates: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(_INTENT_RATES)
    )
    lifecycle: Mapping[str, float] = field(default_factory=lambda: dict(_LIFECYCLE))
    order_value: float = 60.0  # mean order value (log-normal, sigma 0.5)
    buy_within_hours: float = 72.0  # an order comes 1 hour to this after the click

    def __post_init__(self) -> None:
        if not (self.congruence_effect >= 0 and np.isfinite(self.congruence_effect)):
            raise ValueError(f"congruence_effect must be >= 0, got {self.congruence_effect}")

    def rates(self, intent: str) -> tuple[float, float]:
        """(click, buy) base rates of a message of this intent."""
        for prefix, found in self.intent_rates.items():
            if intent.startswith(prefix):
                return found
        return _DEFAULT_RATES

    def probabilities(
        self,
        intents: Sequence[str],
        stages: Sequence[str | None],
        congruent: Sequence[bool] | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per message, the probability of a click (buyers included) and of an order."""
        base = np.array([self.rates(i) for i in intents], dtype=np.float64).reshape(-1, 2)
        stage = np.array([self.lifecycle.get(s or "", 1.0) for s in stages], dtype=np.float64)
        match = np.where(np.asarray(congruent, dtype=bool), 1.0 + self.congruence_effect, 1.0)
        buy = np.minimum(1.0, base[:, 1] * stage * match)
        click_only = np.minimum(1.0, base[:, 0] * stage * match)
        return buy + (1 - buy) * click_only, buy


@dataclass(frozen=True)
class Answers:
    machine_open: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    bought: np.ndarray


def draw(
    model: ResponseModel,
    rng: np.random.Generator,
    intents: Sequence[str],
    stages: Sequence[str | None],
    congruent: Sequence[bool] | np.ndarray,
) -> Answers:
    """Who answers each message, how (one entry per message)."""
    n = len(intents)
    _, buy = model.probabilities(intents, stages, congruent)
    base = np.array([model.rates(i) for i in intents], dtype=np.float64).reshape(-1, 2)
    stage = np.array([model.lifecycle.get(s or "", 1.0) for s in stages], dtype=np.float64)
    match = np.where(np.asarray(congruent, dtype=bool), 1.0 + model.congruence_effect, 1.0)
    bought = rng.random(n) < buy
    clicked = bought | (rng.random(n) < np.minimum(1.0, base[:, 0] * stage * match))
    opened = clicked | (rng.random(n) < model.open)
    return Answers(rng.random(n) < model.machine_open, opened, clicked, bought)


def hidden_styles(shop_folder: Path) -> dict[str, str]:
    """customer id → hidden style, from the synthetic shop's styles.csv (never imported)."""
    with (shop_folder / "styles.csv").open(newline="", encoding="utf-8") as f:
        return {row["customer_id"]: row["style"] for row in csv.DictReader(f)}


def _stages(engine: Engine, contact_ids: Sequence[int]) -> dict[int, str]:
    ranked = (
        select(
            scores.c.contact_id,
            scores.c.lifecycle,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .where(scores.c.contact_id.in_(list(contact_ids)))
        .subquery()
    )
    with engine.connect() as conn:
        return {
            r.contact_id: r.lifecycle
            for r in conn.execute(select(ranked).where(ranked.c.rank == 1))
        }


def answer_sent(
    home: Home,
    engine: Engine,
    model: ResponseModel,
    rng: np.random.Generator,
    styles: Mapping[str, str],
    answered: set[int],
) -> int:
    """Have the recipients of every message sent and not yet answered answer it, writing the
    opens, clicks and orders to the facts. Returns the number of messages answered."""
    query = (
        select(
            messages.c.id,
            messages.c.contact_id,
            messages.c.intent,
            messages.c.variant,
            messages.c.channel,
            messages.c.sent_at,
            contacts.c.customer_id,
        )
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.status == "sent", messages.c.sent_at.is_not(None))
        .order_by(messages.c.id)
    )
    with engine.connect() as conn:
        new = [row for row in conn.execute(query) if row.id not in answered]
    if not new:
        return 0
    stages = _stages(engine, sorted({r.contact_id for r in new}))
    congruent = [bool(r.variant) and styles.get(r.customer_id or "") == r.variant for r in new]
    got = draw(
        model, rng, [r.intent for r in new], [stages.get(r.contact_id) for r in new], congruent
    )
    events: list[dict[str, Any]] = []
    buyers: list[tuple[str, datetime]] = []
    for i, row in enumerate(new):
        answered.add(row.id)
        sent = as_utc(row.sent_at)
        at = sent + timedelta(minutes=int(rng.integers(5, 180)))
        if got.machine_open[i] and row.channel == "email":
            events.append(_event(row, "open", sent + timedelta(seconds=30), machine=True))
        if got.opened[i] and row.channel == "email":
            events.append(_event(row, "open", at))
        if got.clicked[i]:
            events.append(_event(row, "click", at + timedelta(minutes=2)))
        if got.bought[i] and row.customer_id:
            hours = float(rng.uniform(1, model.buy_within_hours))
            buyers.append((row.customer_id, at + timedelta(minutes=2, hours=hours)))
    if events:
        schema = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])
        append(
            home.settings.facts_path,
            MESSAGE_EVENTS,
            pa.Table.from_pylist(events, schema=schema),
            ingested_at=max(e["occurred_at"] for e in events),
        )
    write_orders(home, engine, rng, buyers, model.order_value)
    return len(new)


def _event(row: Any, kind: str, at: datetime, machine: bool = False) -> dict[str, Any]:
    return {
        "event_id": f"sim-{kind}-{row.id}-{int(machine)}",
        "message_id": str(row.id),
        "customer_id": row.customer_id,
        "channel": row.channel,
        "type": kind,
        "occurred_at": at,
        "properties": json.dumps({"machine": machine, "simulated": True}),
    }


def write_orders(
    home: Home,
    engine: Engine,
    rng: np.random.Generator,
    buyers: list[tuple[str, datetime]],
    order_value: float,
) -> None:
    """One simulated order line per (customer, instant), of a catalogue product."""
    if not buyers:
        return
    with engine.connect() as conn:
        catalogue = [p for (p,) in conn.execute(select(products.c.product_id).limit(200))]
    lines = []
    for customer, at in buyers:
        order = f"SIM-{customer}-{int(at.timestamp())}"
        lines.append(
            {
                "line_id": f"{order}-1",
                "order_id": order,
                "customer_id": customer,
                "ordered_at": at,
                "product_id": str(rng.choice(catalogue)) if catalogue else None,
                "quantity": 1,
                "unit_price": round(float(order_value * rng.lognormal(-0.125, 0.5)), 2),
                "currency": home.settings.currency,
                "discount": 0.0,
                "coupon_code": None,
                "status": "paid",
            }
        )
    schema = pa.schema([f for f in ORDERS.schema if f.name != "ingested_at"])
    append(
        home.settings.facts_path,
        ORDERS,
        pa.Table.from_pylist(lines, schema=schema),
        ingested_at=max(at for _, at in buyers),
    )
