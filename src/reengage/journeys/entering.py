"""Entering journeys: read each journey's trigger since its cursor, and enroll the contacts
it fired for — once per firing, as re-entry allows, with the journey's holdout set aside.

A journey's cursor (`journey_cursors.scanned_until`) is how far its trigger has been read. A
journey seen for the first time starts at `start` (by default now: enabling a journey does
not replay the shop's history; `reengage run --from` does so on purpose). The cursor row is
locked while a journey is entered, so two workers never enroll the same stretch at once, and
it moves in the transaction that wrote the enrollments: a crash leaves both as they were.

Decisions, in order of the firings:

- a firing whose key this contact already entered by is ignored (a rescan);
- a contact still in the journey: if a goal of that enrollment was reached by the firing's
  time (a new order ends `post_purchase`'s care of the previous one), it ends first;
  otherwise the firing is passed over — nobody is in the same journey twice at once;
- re-entry (`never`, `always`, `after`) is judged against the contact's latest entry;
- the journey's holdout (`holdout: 0.1`) enrolls the same share of contacts as `held_out`:
  they receive nothing from it, and are the baseline its lift is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from reengage.clock import as_utc
from reengage.journeys import goals
from reengage.journeys.advancing import Services, Summary
from reengage.journeys.definition import Journey
from reengage.journeys.entries import Firing, firings
from reengage.journeys.steps import Send
from reengage.journeys.triggers import EventTrigger
from reengage.measure.holdout import REASON as GLOBAL_REASON
from reengage.measure.holdout import global_holdout
from reengage.state.contacts import chunks
from reengage.state.db import insert_missing
from reengage.state.schema import enrollments, journey_cursors

# how often the triggers that read the whole order history are read again
SCAN_EVERY = {"inactivity": timedelta(hours=1), "date": timedelta(hours=1)}

Source = Callable[[Journey, datetime, datetime, Connection], list[Firing]]


def cursors(conn: Connection) -> dict[str, datetime]:
    """How far each journey's trigger has been read."""
    return {
        r.journey: as_utc(r.scanned_until)
        for r in conn.execute(select(journey_cursors.c.journey, journey_cursors.c.scanned_until))
    }


def enter(
    engine: Engine,
    journeys: Mapping[str, Journey],
    services: Services,
    *,
    start: datetime | None = None,
    late: timedelta = timedelta(0),
    source: Source | None = None,
) -> Summary:
    """Enroll the contacts every journey's trigger fired for since its cursor, up to now.

    `late`: event triggers read again this far before their cursor, for events stored after
    their time had been read (a collector's retries, an hourly import). `source` replaces
    the facts reading (`reengage run` reads a day ahead at once)."""
    now = services.now
    summary = Summary()

    def read(journey: Journey, low: datetime, high: datetime, conn: Connection) -> list[Firing]:
        return firings(
            journey,
            low,
            high,
            conn=conn,
            facts=services.facts,
            root=services.settings.facts_path,
            zone=services.settings.zone,
        )

    for name in sorted(journeys):
        journey = journeys[name]
        with engine.begin() as conn:
            query = select(journey_cursors.c.scanned_until).where(journey_cursors.c.journey == name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            scanned = conn.execute(query).scalar_one_or_none()
            if scanned is None:
                first = as_utc(start) if start is not None else now
                insert_missing(
                    conn,
                    journey_cursors,
                    [{"journey": name, "scanned_until": first, "updated_at": now}],
                )
                scanned = first
            scanned = as_utc(scanned)
            if now <= scanned or now - scanned < SCAN_EVERY.get(journey.trigger.kind, timedelta(0)):
                continue
            low = scanned - late if isinstance(journey.trigger, EventTrigger) else scanned
            found = (source or read)(journey, low, now, conn)
            admit(conn, name, journey, found, services, summary)
            conn.execute(
                update(journey_cursors)
                .where(journey_cursors.c.journey == name)
                .values(scanned_until=now, updated_at=now)
            )
    return summary


def admit(
    conn: Connection,
    name: str,
    journey: Journey,
    found: list[Firing],
    services: Services,
    summary: Summary,
) -> None:
    """Enroll the contacts of these firings, as re-entry and the holdout allow."""
    if not found:
        return
    ids = sorted({f.contact_id for f in found})
    keys: set[tuple[int, str]] = set()
    latest: dict[int, datetime] = {}
    active: dict[int, goals.Open] = {}
    for part in chunks(ids):
        for r in conn.execute(
            select(
                enrollments.c.id,
                enrollments.c.contact_id,
                enrollments.c.trigger_key,
                enrollments.c.entered_at,
                enrollments.c.status,
                enrollments.c.payload,
            ).where(enrollments.c.journey == name, enrollments.c.contact_id.in_(part))
        ):
            at = as_utc(r.entered_at)
            keys.add((r.contact_id, r.trigger_key))
            latest[r.contact_id] = max(at, latest.get(r.contact_id, at))
            if r.status == "active":
                active[r.contact_id] = goals.Open(
                    r.id, r.contact_id, at, journey.goals, dict(r.payload or {})
                )
    reached: dict[int, tuple[str, datetime]] = {}
    share = services.settings.global_holdout
    marketing = any(
        isinstance(step, Send) and step.purpose == "marketing" for step in journey.walk()
    )
    globally = (
        {c for c, held in zip(ids, global_holdout(ids, share), strict=True) if held}
        if marketing
        else set()
    )
    root = services.settings.facts_path
    if active and journey.goals:
        reached = goals.reached(conn, services.facts, root, list(active.values()), services.now)
    rows: list[dict[str, Any]] = []
    for firing in found:
        contact = firing.contact_id
        if (contact, firing.key) in keys:
            continue
        current = active.get(contact)
        if current is not None and current.id < 0 and current.id not in reached and current.goals:
            # entered earlier in this very stretch: its goals are looked for now
            reached.update(goals.reached(conn, services.facts, root, [current], services.now))
        if current is not None and current.id in reached and reached[current.id][1] <= firing.at:
            goal, at = reached[current.id]
            if current.id < 0:
                ended = next(r for r in reversed(rows) if r["contact_id"] == contact)
                ended.update(status="goal", reason=f"goal {goal}", ended_at=at, step=None)
                ended["due_at"] = None
            else:
                conn.execute(
                    update(enrollments)
                    .where(enrollments.c.id == current.id, enrollments.c.status == "active")
                    .values(
                        status="goal", reason=f"goal {goal}", ended_at=at, step=None, due_at=None
                    )
                )
            summary.ended[f"goal {goal}"] += 1
            del active[contact]
            current = None
        if not journey.reentry.allows(latest.get(contact), firing.at, active=current is not None):
            continue
        held_globally = contact in globally
        held = held_globally or journey.held_out(contact)
        first = journey.first
        rows.append(
            {
                "journey": name,
                "contact_id": contact,
                "trigger_key": firing.key[:200],
                "entered_at": firing.at,
                "status": "held_out" if held else ("active" if first else "done"),
                "step": None if held else first,
                "due_at": None if held or not first else firing.at,
                "variants": "",
                "digest": journey.digest,
                "ended_at": firing.at if held or not first else None,
                "reason": (GLOBAL_REASON if held_globally else "journey holdout")
                if held
                else (None if first else "no steps"),
                "steps_run": 0,
                "payload": firing.payload,
            }
        )
        keys.add((contact, firing.key))
        latest[contact] = firing.at
        if held:
            summary.held_out[name] += 1
        else:
            summary.entered[name] += 1
            if first:
                # not stored yet: a negative id until then
                active[contact] = goals.Open(
                    -len(rows), contact, firing.at, journey.goals, firing.payload
                )
    insert_missing(conn, enrollments, rows)


__all__ = ["admit", "cursors", "enter"]
