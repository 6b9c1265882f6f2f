"""`journeys simulate`: who a journey would write to, what, on which channel and when — over
the coming days from a date — without sending anything or changing the state.

The engine itself runs, on a scratch copy of the state (a temporary SQLite database; the
facts are only read): the journey's trigger is read from the date on, its steps run on a
simulated clock, and the outbox rows it queues are then put to the contact policy at their
due time, as the dispatcher would. What is shown is what the engine would do with the facts
as they are; facts that arrive later (a new order ending an enrollment) are not foreseen.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, select

from reengage.channels.policy import SendRequest, check_many, describe
from reengage.clock import as_utc
from reengage.config import Home
from reengage.journeys.advancing import Summary
from reengage.journeys.definition import Journey
from reengage.journeys.runner import run_until
from reengage.messages.intents import INTENTS
from reengage.state.db import bulk_insert, engine_for
from reengage.state.schema import contacts, journey_cursors, messages, metadata

COPY_BATCH = 20_000


@dataclass(frozen=True)
class Planned:
    """One message the journey would queue, and what the policy would say at its time."""

    customer_id: str | None
    contact_id: int
    step: str
    intent: str
    channel: str
    variant: str
    due_at: str
    decision: str  # send, block, defer
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Simulation:
    journey: str
    start: str
    until: str
    engine: Summary
    planned: list[Planned]

    def as_dict(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "start": self.start,
            "until": self.until,
            **self.engine.as_dict(),
            "messages": [p.as_dict() for p in self.planned],
        }


def copy_state(source: Engine, target: Path) -> Engine:
    """A SQLite copy of the state at `target`: the backup API from SQLite, table by table
    from PostgreSQL."""
    url = f"sqlite:///{target}"
    if source.dialect.name == "sqlite":
        raw = source.raw_connection()
        try:
            driver = raw.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            with sqlite3.connect(target) as copy:
                driver.backup(copy)
            copy.close()
        finally:
            raw.close()
        return engine_for(url)
    scratch = engine_for(url)
    metadata.create_all(scratch)
    with source.connect() as reading, scratch.begin() as writing:
        for table in metadata.sorted_tables:
            result = reading.execution_options(yield_per=COPY_BATCH).execute(select(table))
            for part in result.partitions():
                bulk_insert(writing, table, [dict(r._mapping) for r in part])
    return scratch


def simulate(
    home: Home, engine: Engine, journey: Journey, start: datetime, days: int
) -> Simulation:
    """What `journey` would send from `start` over `days` days."""
    start = as_utc(start)
    until = start + timedelta(days=days)
    with tempfile.TemporaryDirectory(prefix="reengage-simulate-") as folder:
        scratch = copy_state(engine, Path(folder) / "state.db")
        try:
            with scratch.begin() as conn:
                conn.execute(
                    delete(journey_cursors).where(journey_cursors.c.journey == journey.name)
                )
                before = conn.execute(select(messages.c.id).order_by(messages.c.id.desc())).first()
            first_new = before.id + 1 if before is not None else 0
            settings = home.settings.model_copy(
                update={"database_url": f"sqlite:///{folder}/state.db"}
            )
            sandbox = Home(settings)
            ran = run_until(
                sandbox,
                scratch,
                until,
                start=start,
                deliver=False,
                score_every=None,
                journeys={journey.name: journey},
            )
            planned = _planned(scratch, sandbox, journey.name, first_new)
        finally:
            scratch.dispose()
    return Simulation(journey.name, start.isoformat(), until.isoformat(), ran.engine, planned)


def _planned(engine: Engine, home: Home, name: str, first_id: int) -> list[Planned]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                messages.c.id,
                messages.c.contact_id,
                contacts.c.customer_id,
                messages.c.step,
                messages.c.intent,
                messages.c.channel,
                messages.c.variant,
                messages.c.style,
                messages.c.priority,
                messages.c.due_at,
            )
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(messages.c.journey == name, messages.c.id >= first_id)
            .order_by(messages.c.due_at, messages.c.id)
        ).all()
        requests = [
            SendRequest(
                r.contact_id,
                r.channel,
                INTENTS[r.intent].purpose,
                int(r.priority or 0),
                as_utc(r.due_at),
                message_id=r.id,
            )
            for r in rows
        ]
        decisions = check_many(conn, requests, home.settings) if requests else []
    planned = []
    for r, decision in zip(rows, decisions, strict=True):
        action = "send" if decision.allowed else decision.action
        reason = None
        if decision.reason:
            reason = describe(decision.reason)
            if decision.until is not None:
                reason += f" (until {decision.until.isoformat()})"
        planned.append(
            Planned(
                r.customer_id,
                r.contact_id,
                r.step or "",
                r.intent,
                r.channel,
                r.variant or r.style,
                as_utc(r.due_at).isoformat(),
                action,
                reason,
            )
        )
    return planned
