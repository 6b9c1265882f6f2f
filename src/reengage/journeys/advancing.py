"""Moving enrollments along their steps: claim the due ones, run each as far as it goes, and
write everything a batch decided in the one transaction that claimed it.

**Exactly once.** A batch's enrollments are claimed (`FOR UPDATE SKIP LOCKED` on PostgreSQL,
so several workers share the work; SQLite has one writer), and every effect of their steps —
outbox rows, offers, audience changes, attributes, suppressions, the step log, the new
position — is written in the same transaction. A worker killed at any point leaves the
transaction uncommitted: nothing happened, and the next worker does it all again. The outbox
row of a send is keyed `j:<enrollment>:<step>`, so even a step run twice queues one message.
A webhook step is the one effect outside the database: it is called before the commit with
a stable `Webhook-Id`, so a receiver sees a repeat only after a crash, and can tell it.

**Logical time.** A step runs at the instant it was due, not when the worker got to it: a
wait counts from when it began, a send is queued for when it was due. A worker that was down
for an hour catches up to where one running all along would be; `reengage run` replays
weeks the same way.

**Between steps** the goals are checked (an order imported late ends the enrollment when it is
seen), and an enrollment whose journey was disabled, or whose step no longer exists in an
edited journey, ends (recorded) rather than guess.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import httpx
from sqlalchemy import Connection, Engine, select

from reengage.audience import matching
from reengage.channels.audiences import change_member
from reengage.channels.quiet_hours import zone_named
from reengage.clock import FixedClock, as_utc
from reengage.config import Home, Settings
from reengage.journeys import effects, goals
from reengage.journeys.channel_choice import Wanted, choose_channels
from reengage.journeys.definition import Journey
from reengage.journeys.steps import (
    Audience,
    Branch,
    End,
    Holdout,
    Send,
    Split,
    Update,
    Wait,
    Webhook,
)
from reengage.messages.offers import issue_offer
from reengage.messages.outbox import OutboxItem, enqueue_many
from reengage.state.contacts import chunks
from reengage.state.db import among, bulk_insert, bulk_update
from reengage.state.schema import (
    contacts,
    enrollment_steps,
    enrollments,
)

BATCH = 500
WEBHOOK_RETRY = timedelta(minutes=10)
WEBHOOK_ATTEMPTS = 5
MAX_STEPS = 10_000  # per enrollment and pass: journeys never loop, this only guards a bug


@dataclass
class Summary:
    """What a pass of the engine did."""

    entered: Counter[str] = field(default_factory=Counter)
    held_out: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    queued: int = 0
    ended: Counter[str] = field(default_factory=Counter)

    def add(self, other: Summary) -> None:
        self.entered.update(other.entered)
        self.held_out.update(other.held_out)
        self.steps += other.steps
        self.queued += other.queued
        self.ended.update(other.ended)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entered": dict(self.entered),
            "held_out": dict(self.held_out),
            "steps": self.steps,
            "queued": self.queued,
            "ended": dict(self.ended),
        }


@dataclass
class Position:
    """One claimed enrollment as the batch moves it."""

    id: int
    journey_name: str
    journey: Journey | None
    contact_id: int
    entered_at: datetime
    step: str | None
    at: datetime  # logical time: when the current step is due
    variants: str
    digest: str
    steps_run: int
    payload: dict[str, Any]
    status: str = "active"
    reason: str | None = None
    ended_at: datetime | None = None

    def finish(self, status: str, reason: str, at: datetime) -> None:
        self.status, self.reason, self.ended_at = status, reason, at
        self.step = None


@dataclass(frozen=True)
class Services:
    """What a batch needs beyond the state: the settings, the facts, and the clock's now."""

    home: Home
    settings: Settings
    facts: duckdb.DuckDBPyConnection
    now: datetime
    http: httpx.Client | None = None


def advance(
    engine: Engine,
    journeys: Mapping[str, Journey],
    services: Services,
    *,
    batch: int = BATCH,
    limit: int | None = None,
) -> Summary:
    """Run every enrollment due by now as far as it goes, `batch` enrollments per
    transaction (at most `limit` enrollments in all)."""
    summary = Summary()
    handled = 0
    while limit is None or handled < limit:
        want = batch if limit is None else min(batch, limit - handled)
        with engine.begin() as conn:
            query = (
                select(enrollments)
                .where(enrollments.c.status == "active", enrollments.c.due_at <= services.now)
                .order_by(enrollments.c.due_at, enrollments.c.id)
                .limit(want)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                break
            positions = [
                Position(
                    id=r.id,
                    journey_name=r.journey,
                    journey=journeys.get(r.journey),
                    contact_id=r.contact_id,
                    entered_at=as_utc(r.entered_at),
                    step=r.step,
                    at=as_utc(r.due_at),
                    variants=r.variants or "",
                    digest=r.digest,
                    steps_run=r.steps_run,
                    payload=dict(r.payload or {}),
                )
                for r in rows
            ]
            summary.add(Batch(conn, services, positions).run())
        handled += len(rows)
    return summary


class Batch:
    """The enrollments of one transaction, moved as far as they go."""

    def __init__(self, conn: Connection, services: Services, positions: list[Position]) -> None:
        self.conn = conn
        self.services = services
        self.now = services.now
        self.positions = positions
        self.log: list[dict[str, Any]] = []
        self.sends: list[tuple[Position, Send, int]] = []  # position, step, index in log
        self.branches: dict[tuple[str, str], list[Position]] = defaultdict(list)
        self.summary = Summary()
        self._zones: dict[int, ZoneInfo] = {}

    def run(self) -> Summary:
        self._close_gone()
        self._check_goals()
        self._load_zones()
        pending = [p for p in self.positions if p.status == "active"]
        while pending:
            for p in pending:
                self._walk(p)
            pending = self._decide_branches()
        self._queue_sends()
        self._write()
        return self.summary

    # --- before the steps -----------------------------------------------------------------

    def _close_gone(self) -> None:
        for p in self.positions:
            if p.journey is None:
                p.finish("ended", "journey disabled", self.now)
            elif p.step is not None and not p.journey.has(p.step):
                p.finish("ended", f"step {p.step} is no longer in the journey", self.now)
            else:
                p.digest = p.journey.digest or p.digest

    def _check_goals(self) -> None:
        items = [
            goals.Open(p.id, p.contact_id, p.entered_at, p.journey.goals, p.payload, until=p.at)
            for p in self.positions
            if p.status == "active" and p.journey is not None and p.journey.goals
        ]
        if not items:
            return
        reached = goals.reached(
            self.conn, self.services.facts, self.services.settings.facts_path, items, self.now
        )
        for p in self.positions:
            if p.id in reached:
                goal, at = reached[p.id]
                p.finish("goal", f"goal {goal}", at)

    def _load_zones(self) -> None:
        shop = self.services.settings.zone
        ids = sorted({p.contact_id for p in self.positions if p.status == "active"})
        for part in chunks(ids):
            for r in self.conn.execute(
                select(contacts.c.id, contacts.c.timezone).where(
                    among(self.conn, contacts.c.id, part)
                )
            ):
                self._zones[r.id] = zone_named(r.timezone) or shop

    # --- the steps ------------------------------------------------------------------------

    def _note(self, p: Position, step_id: str, kind: str, outcome: str) -> int:
        self.log.append(
            {
                "enrollment_id": p.id,
                "journey": p.journey_name,
                "step": step_id,
                "kind": kind,
                "at": p.at,
                "outcome": outcome[:200],
                "message_id": None,
            }
        )
        p.steps_run += 1
        self.summary.steps += 1
        return len(self.log) - 1

    def _walk(self, p: Position) -> None:
        """Run steps until the enrollment meets a wait or a branch, or ends."""
        journey = p.journey
        assert journey is not None
        for _ in range(MAX_STEPS):
            if p.step is None:
                p.finish("done", "completed", p.at)
                return
            step = journey.step(p.step)
            following = journey.after(step.id)
            if isinstance(step, Wait):
                until = step.due_at(
                    p.at, self._zones.get(p.contact_id, self.services.settings.zone)
                )
                self._note(p, step.id, step.kind, f"until {until.isoformat()}")
                p.step, p.at = following, until
                # even a wait over by now hands back: the next batch checks the goals as of
                # its end, as a worker running at that time would have
                return
            elif isinstance(step, Send):
                index = self._note(p, step.id, step.kind, "queued")
                self.sends.append((p, step, index))
                p.step = following
            elif isinstance(step, Branch):
                self.branches[(p.journey_name, step.id)].append(p)
                return
            elif isinstance(step, Split):
                variant = journey.choose(step, p.contact_id)
                self._note(p, step.id, step.kind, f"variant {variant.name}")
                chosen = f"{step.id}={variant.name}"
                p.variants = f"{p.variants};{chosen}" if p.variants else chosen
                p.step = journey.into(step, variant.steps)
            elif isinstance(step, Holdout):
                held = journey.holds(step, p.contact_id)
                self._note(p, step.id, step.kind, "held out" if held else "passed")
                if held:
                    p.finish("held_out", f"holdout {step.id}", p.at)
                    return
                p.step = following
            elif isinstance(step, Audience):
                changed = change_member(
                    self.conn, step.audience, p.contact_id, join=step.action == "add", at=p.at
                )
                self._note(
                    p,
                    step.id,
                    step.kind,
                    f"{step.action} {step.audience}" + ("" if changed else " (already)"),
                )
                p.step = following
            elif isinstance(step, Update):
                self._note(p, step.id, step.kind, self._update(p, step))
                p.step = following
            elif isinstance(step, Webhook):
                outcome = self._webhook(p, step)
                if outcome is None:  # failed: try again later, from this step
                    p.at = self.now + WEBHOOK_RETRY
                    return
                self._note(p, step.id, step.kind, outcome)
                p.step = following
            elif isinstance(step, End):
                self._note(p, step.id, step.kind, "end")
                p.finish("done", f"end {step.id}", p.at)
                return
        raise RuntimeError(f"enrollment {p.id}: more than {MAX_STEPS} steps in one pass")

    def _decide_branches(self) -> list[Position]:
        """Evaluate every branch met in this round, for its contacts, in one query; move each
        enrollment into `then` or `else`. The enrollments to walk on."""
        if not self.branches:
            return []
        waiting, self.branches = self.branches, defaultdict(list)
        rules = {}
        names: dict[tuple[str, str], str] = {}
        for i, (journey_name, step_id) in enumerate(waiting):
            journey = waiting[(journey_name, step_id)][0].journey
            assert journey is not None
            step = journey.step(step_id)
            assert isinstance(step, Branch)
            names[(journey_name, step_id)] = f"b{i}"
            rules[f"b{i}"] = step.condition
        ids = sorted({p.contact_id for ps in waiting.values() for p in ps})
        matched: dict[str, set[int]] = {name: set() for name in rules}
        try:
            found = matching.match(
                self.conn,
                self.services.settings.facts_path,
                rules,
                self.now,
                only=ids,
                con=self.services.facts,
            )
            for row in self.conn.execute(select(found.table)):
                values = row._mapping
                for name, (column, bit) in found.places.items():
                    if (values[column] >> bit) & 1:
                        matched[name].add(values["contact_id"])
        finally:
            matching.drop(self.conn)
        walk_on = []
        for key, group in waiting.items():
            for p in group:
                journey = p.journey
                assert journey is not None
                step = journey.step(key[1])
                assert isinstance(step, Branch)
                yes = p.contact_id in matched[names[key]]
                self._note(p, step.id, step.kind, "then" if yes else "else")
                p.step = journey.into(step, step.then if yes else step.otherwise)
                walk_on.append(p)
        return walk_on

    def _update(self, p: Position, step: Update) -> str:
        return effects.update_contact(self.conn, p.contact_id, p.journey_name, step, p.at)

    def _webhook(self, p: Position, step: Webhook) -> str | None:
        """What the call did; None when it failed and is to be tried again later."""
        outcome, failure = effects.call_webhook(
            self.services.settings,
            self.services.http,
            p.id,
            p.journey_name,
            p.contact_id,
            step,
            self.now,
        )
        if failure is None:
            return outcome
        tries = effects.past_attempts(self.conn, p.id, step.id) + 1
        if tries >= WEBHOOK_ATTEMPTS:
            return f"failed {tries} times, given up: {failure}"
        self.log.append(
            {
                "enrollment_id": p.id,
                "journey": p.journey_name,
                "step": step.id,
                "kind": effects.WEBHOOK_TRY,
                "at": self.now,
                "outcome": f"failed: {failure}"[:200],
                "message_id": None,
            }
        )
        return None

    # --- sends ----------------------------------------------------------------------------

    def _channels(self) -> list[str]:
        wanted = [
            Wanted(p.contact_id, step, p.journey.priority if p.journey else 0, self.log[i]["at"])
            for p, step, i in self.sends
        ]
        return choose_channels(self.conn, self.services.settings, self.services.home, wanted)

    def _queue_sends(self) -> None:
        if not self.sends:
            return
        channels = self._channels()
        items = []
        for (p, step, index), channel in zip(self.sends, channels, strict=True):
            payload = {k: p.payload[k] for k in ("product_id",) if p.payload.get(k)}
            items.append(
                OutboxItem(
                    message_key=f"j:{p.id}:{step.id}",
                    contact_id=p.contact_id,
                    intent=step.intent,
                    channel=channel,
                    due_at=self.log[index]["at"],  # p.at has moved on with later steps
                    journey=p.journey_name,
                    step=step.id,
                    priority=p.journey.priority if p.journey else 0,
                    payload=payload or None,
                )
            )
        ids = enqueue_many(
            self.conn,
            items,
            clock=FixedClock(self.now),
            settings=self.services.settings,
        )
        for (p, step, index), message_id, channel in zip(self.sends, ids, channels, strict=True):
            self.log[index]["message_id"] = message_id
            self.log[index]["outcome"] = f"queued on {channel}"
            if message_id is None:
                self.log[index]["outcome"] = "already queued"
                continue
            self.summary.queued += 1
            if step.offer:
                at = FixedClock(self.log[index]["at"])
                offer = issue_offer(
                    self.conn, p.contact_id, step.intent, step.offer, at, message_id
                )
                if offer is not None:
                    self.log[index]["outcome"] += f", offer level {offer.level}"

    # --- writing --------------------------------------------------------------------------

    def _write(self) -> None:
        for p in self.positions:
            if p.status != "active":
                self.summary.ended[p.reason or p.status] += 1
        ps = self.positions
        bulk_update(
            self.conn,
            enrollments,
            "id",
            {
                "id": [p.id for p in ps],
                "status": [p.status for p in ps],
                "step": [p.step for p in ps],
                "due_at": [p.at if p.status == "active" else None for p in ps],
                "variants": [p.variants for p in ps],
                "digest": [p.digest for p in ps],
                "ended_at": [p.ended_at for p in ps],
                "reason": [p.reason for p in ps],
                "steps_run": [p.steps_run for p in ps],
            },
        )
        bulk_insert(self.conn, enrollment_steps, self.log)
