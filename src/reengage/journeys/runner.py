"""The engine's loop: enter, advance, deliver — in real time (`reengage worker`) or over a
simulated clock (`reengage run --until`).

One *tick* at an instant `now`: segments used by journey triggers are refreshed when due,
every enabled journey's trigger is read up to now and its contacts enrolled, every enrollment
due by now advances, and the outbox rows due by now are delivered. The worker ticks every few
seconds on the wall clock; `run` ticks a simulated clock forward through the facts, one
`step` (default an hour) at a time, skipping the hours where nothing is due.

Because every decision is dated by the facts and the logical times of the steps, not by when
the engine got to it, a replay and a worker running all along decide the same — up to
decisions that fall within the same step of the replay, which are taken together (two orders
of one customer within the hour, say).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
from sqlalchemy import Connection, Engine, func, select

from reengage.audience.segments import refresh_segments
from reengage.campaigns.runner import next_due as campaigns_due
from reengage.campaigns.runner import tick as campaigns_tick
from reengage.channels.delivery import Channel
from reengage.clock import Clock, FixedClock, as_utc
from reengage.config import Home
from reengage.errors import InputError, ReengageError
from reengage.facts import reader
from reengage.journeys import enabled_journeys
from reengage.journeys.advancing import BATCH, Services, Summary, advance
from reengage.journeys.definition import Journey
from reengage.journeys.entering import cursors, enter
from reengage.journeys.entries import Firing, firings
from reengage.journeys.triggers import SegmentTrigger
from reengage.messages.dispatch import DeliverySummary, deliver_due
from reengage.state.schema import enrollments, messages, scores

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
AHEAD = timedelta(days=1)
# a replay copies facts up to this size into memory once, rather than reading the files on
# every tick (Parquet compresses some 5 to 10 times: this is a few GB in memory at most)
MATERIALISE_BYTES = 512 * 2**20


@dataclass
class RunSummary:
    """What the engine did over a stretch of time."""

    start: str | None = None
    until: str | None = None
    ticks: int = 0
    scored: list[str] = field(default_factory=list)
    engine: Summary = field(default_factory=Summary)
    delivery: dict[str, int] = field(default_factory=dict)

    def deliveries(self, done: DeliverySummary) -> None:
        for name, value in done.as_dict().items():
            if isinstance(value, int):
                self.delivery[name] = self.delivery.get(name, 0) + value

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "until": self.until,
            "ticks": self.ticks,
            "scored": self.scored,
            **self.engine.as_dict(),
            "delivery": self.delivery,
        }


def segments_of(journeys: Mapping[str, Journey]) -> list[str]:
    """The segments whose entries trigger a journey: refreshed by the engine."""
    return sorted(
        {j.trigger.segment for j in journeys.values() if isinstance(j.trigger, SegmentTrigger)}
    )


class AheadReader:
    """Reads the triggers over the facts a day ahead, for a replay (the facts do not change
    while it runs); segment entries, written by the replay's own refreshes, are read as
    they come."""

    def __init__(self, facts: duckdb.DuckDBPyConnection, root: Path, zone: Any) -> None:
        self.facts = facts
        self.root = root
        self.zone = zone
        self._read: dict[str, tuple[datetime, datetime, list[Firing]]] = {}

    def __call__(
        self, journey: Journey, low: datetime, high: datetime, conn: Connection
    ) -> list[Firing]:
        if isinstance(journey.trigger, SegmentTrigger):
            return self._firings(journey, low, high, conn)
        return [f for f in self._covering(journey, low, high, conn) if low < f.at <= high]

    def _covering(
        self, journey: Journey, low: datetime, high: datetime, conn: Connection
    ) -> list[Firing]:
        """The firings read ahead for a stretch holding (low, high]; read again (for at
        least a day from `low`) when what is held does not cover it."""
        held = self._read.get(journey.name)
        if held is None or low < held[0] or high > held[1]:
            top = max(high, low + AHEAD)
            held = (low, top, self._firings(journey, low, top, conn))
            self._read[journey.name] = held
        return held[2]

    def _firings(
        self, journey: Journey, low: datetime, high: datetime, conn: Connection
    ) -> list[Firing]:
        return firings(
            journey, low, high, conn=conn, facts=self.facts, root=self.root, zone=self.zone
        )

    def next_after(
        self,
        moment: datetime,
        horizon: datetime,
        journeys: Mapping[str, Journey],
        conn: Connection,
    ) -> datetime | None:
        """The next firing after `moment`, if any. A trigger whose reading ahead ends before
        `horizon` (or was never read: the first tick of a run reads nothing) is read again
        for a day from `moment`, so that the replay never skips a firing before `horizon`."""
        times: list[datetime] = []
        for journey in journeys.values():
            if isinstance(journey.trigger, SegmentTrigger):
                continue
            held = self._covering(journey, moment, horizon, conn)
            times.extend(f.at for f in held if f.at > moment)
        return min(times, default=None)


def tick(
    home: Home,
    engine: Engine,
    clock: Clock,
    journeys: Mapping[str, Journey],
    *,
    facts: duckdb.DuckDBPyConnection,
    refresh: bool = False,
    deliver: bool = True,
    start: datetime | None = None,
    late: timedelta = timedelta(0),
    source: AheadReader | None = None,
    channels: Mapping[str, Channel] | None = None,
    batch: int = BATCH,
) -> tuple[Summary, DeliverySummary | None]:
    """One pass of the engine at the clock's now."""
    now = as_utc(clock.now())
    if refresh and (names := segments_of(journeys)):
        refresh_segments(home, engine, clock, names, facts=facts)
    services = Services(home, home.settings, facts, now)
    done = enter(engine, journeys, services, start=start, late=late, source=source)
    done.add(advance(engine, journeys, services, batch=batch))
    campaigns_tick(home, engine, clock, facts=facts)
    delivered = None
    if deliver:
        delivered = deliver_due(home, engine, clock, channels=channels, facts=facts)
    return done, delivered


def _next_due(engine: Engine, deliver: bool = True) -> datetime | None:
    """When the next enrollment is due, or (when delivering) the next message."""
    with engine.connect() as conn:
        enrollment = conn.execute(
            select(func.min(enrollments.c.due_at)).where(enrollments.c.status == "active")
        ).scalar_one_or_none()
        message = None
        if deliver:  # messages left queued (--no-deliver) are due for nobody
            message = conn.execute(
                select(func.min(messages.c.due_at)).where(
                    messages.c.status.in_(("queued", "deferred"))
                )
            ).scalar_one_or_none()
    found = [as_utc(t) for t in (enrollment, message, campaigns_due(engine)) if t is not None]
    return min(found, default=None)


def _ceil(moment: datetime, step: timedelta) -> datetime:
    """The first instant at or after `moment` on the grid of `step` (from midnight UTC)."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    steps = -(-(moment - day) // step)
    return day + steps * step


def run_until(
    home: Home,
    engine: Engine,
    until: datetime,
    *,
    start: datetime | None = None,
    step: timedelta = timedelta(hours=1),
    score_every: timedelta | None = timedelta(days=7),
    deliver: bool = True,
    channels: Mapping[str, Channel] | None = None,
    progress: Progress | None = None,
    journeys: Mapping[str, Journey] | None = None,
    batch: int = BATCH,
) -> RunSummary:
    """Replay the engine from where it stopped (or `start`) to `until` on a simulated
    clock: what a worker running all along would have done. `journeys`: these instead of
    the enabled ones."""
    from reengage.analytics.scoring import score

    journeys = enabled_journeys(home) if journeys is None else journeys
    until = as_utc(until)
    with engine.connect() as conn:
        known = cursors(conn)
    begun = [known[n] for n in journeys if n in known]
    if begun:
        now = min(begun)
    elif start is not None:
        now = as_utc(start)
    else:
        raise InputError("the engine has not run yet: give --from DATE, where the replay begins")
    if now >= until:
        return RunSummary(now.isoformat(), until.isoformat())
    summary = RunSummary(now.isoformat(), until.isoformat())
    clock = FixedClock(now)
    facts = reader.connect(home.settings.facts_path)
    if reader.size_on_disk(home.settings.facts_path) <= MATERIALISE_BYTES:
        reader.materialise(facts)
    ahead = AheadReader(facts, home.settings.facts_path, home.settings.zone)
    # a replay resumed after a stop scores and refreshes at midnights, as the uninterrupted
    # one would: only a fresh replay begins with both, wherever it begins
    last_score = _latest_scoring(engine, now) if begun else None
    began, total = now, max(1, int((until - now) / step))
    try:
        first = not begun
        while True:
            day_start = first or now.time() == datetime.min.time()
            scored = False
            if (
                score_every is not None
                and day_start
                and (last_score is None or now - last_score >= score_every)
            ):
                score(home, engine, as_of=now, clock=clock)
                summary.scored.append(now.isoformat())
                last_score, scored = now, True
            done, delivered = tick(
                home,
                engine,
                clock,
                journeys,
                facts=facts,
                refresh=day_start or scored,
                deliver=deliver,
                start=start,
                source=ahead,
                channels=channels,
                batch=batch,
            )
            summary.ticks += 1
            summary.engine.add(done)
            if delivered is not None:
                summary.deliveries(delivered)
            if progress:
                progress("replaying", min(total, int((now - began) / step)), total)
            if now >= until:
                break
            first = False
            now = _following(engine, ahead, journeys, now, step, until, deliver)
            clock = FixedClock(now)
    finally:
        facts.close()
    if progress:
        progress("replaying", total, total)
    return summary


def _latest_scoring(engine: Engine, now: datetime) -> datetime | None:
    """The date of the latest scores no later than `now` (None: none)."""
    with engine.connect() as conn:
        found = conn.execute(
            select(func.max(scores.c.as_of)).where(scores.c.as_of <= now)
        ).scalar_one_or_none()
    return None if found is None else as_utc(found)


def _following(
    engine: Engine,
    ahead: AheadReader,
    journeys: Mapping[str, Journey],
    now: datetime,
    step: timedelta,
    until: datetime,
    deliver: bool = True,
) -> datetime:
    """The next tick: the next step on the grid where something is due, at the latest the
    next midnight (segments, scores) or `until`."""
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    candidates = [midnight, until, now + AHEAD]
    with engine.connect() as conn:
        fires = ahead.next_after(now, midnight, journeys, conn)
    for due in (_next_due(engine, deliver), fires):
        if due is not None:
            candidates.append(max(due, now + timedelta(microseconds=1)))
    return min(_ceil(min(candidates), step), midnight, until)


CONVERSIONS_EVERY = timedelta(minutes=5)


def _send_conversions(home: Home, engine: Engine, clock: Clock) -> None:
    """Queue and send the server-side conversion events of the last days, when a platform is
    configured. A platform's failure is recorded on its rows and logged; it never stops the
    worker, and the next pass retries what is still queued."""
    from reengage.retarget.conversion_platforms import send_conversions
    from reengage.retarget.conversions import platforms, queue_conversions

    if not platforms(home.settings):
        return
    try:
        queue_conversions(home.settings, engine, None, None, clock)
        send_conversions(home.settings, engine, clock)
    except (ReengageError, httpx.HTTPError, OSError) as exc:
        log.error("conversion events: %s (the next pass tries again)", type(exc).__name__)


def work(
    home: Home,
    engine: Engine,
    clock: Clock,
    *,
    interval: timedelta = timedelta(seconds=30),
    once: bool = False,
    late: timedelta = timedelta(minutes=15),
    refresh_every: timedelta = timedelta(hours=1),
    stop: threading.Event | None = None,
    report: Callable[[Summary, DeliverySummary | None], None] | None = None,
    batch: int = BATCH,
    deliver: bool = True,
) -> Summary:
    """Tick on the clock every `interval` until stopped (SIGTERM, SIGINT, `stop`), or once.

    The enabled journeys are read again at every tick, so enabling or editing one needs no
    restart; a broken file stops the worker with its problems rather than running without it.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    total = Summary()
    refreshed: datetime | None = None
    converted: datetime | None = None
    while not stop.is_set():
        now = as_utc(clock.now())
        journeys = enabled_journeys(home)
        refresh = refreshed is None or now - refreshed >= refresh_every
        facts = reader.connect(home.settings.facts_path)
        try:
            done, delivered = tick(
                home,
                engine,
                clock,
                journeys,
                facts=facts,
                refresh=refresh,
                late=late,
                batch=batch,
                deliver=deliver,
            )
        finally:
            facts.close()
        if refresh:
            refreshed = now
        if deliver and (converted is None or now - converted >= CONVERSIONS_EVERY):
            _send_conversions(home, engine, clock)
            converted = now
        total.add(done)
        if report:
            report(done, delivered)
        if once:
            break
        stop.wait(interval.total_seconds())
    return total
