"""Moving campaigns on: `tick` does whatever each campaign has due now, one step after the
other, under the campaign's lease (one worker at a time per campaign):

1. a scheduled campaign whose start has come: its audience is frozen (`freezing`);
2. frozen: the test share's messages are queued (or, without a test, everyone's);
3. test window over: the decision (`deciding`);
4. decided: the rest's messages are queued, with the winner;
5. everything queued and nothing left to send: done.

Each step ends with the campaign's `phase` written, so a worker killed anywhere goes on from
the last step that committed (and `queueing` from its last chunk). Sending is the
dispatcher's: `reengage worker`, `reengage run` and `campaigns deliver` deliver the rows as
they fall due, within the channels' rate limits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from reengage.campaigns import lifecycle
from reengage.campaigns.definition import Campaign
from reengage.campaigns.lifecycle import PENDING, Row
from reengage.campaigns.queueing import queue_group
from reengage.campaigns.responses import open_facts
from reengage.clock import Clock
from reengage.config import Home
from reengage.state.schema import campaigns, messages

Progress = Callable[[str, int, int], None]


@dataclass
class TickSummary:
    started: list[str] = field(default_factory=list)
    queued: int = 0
    decided: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "queued": self.queued,
            "decided": self.decided,
            "finished": self.finished,
        }


def tick(
    home: Home,
    engine: Engine,
    clock: Clock,
    *,
    only: str | None = None,
    facts: Any = None,
    progress: Progress | None = None,
) -> TickSummary:
    """Do what every campaign (or `only` that one) has due now."""
    summary = TickSummary()
    now = clock.now()
    query = select(campaigns.c.name).where(
        campaigns.c.status.in_(("scheduled", "testing", "sending"))
    )
    if only is not None:
        query = query.where(campaigns.c.name == only)
    with engine.connect() as conn:
        names = list(conn.execute(query.order_by(campaigns.c.name)).scalars())
    if not names:
        return summary
    con, close = open_facts(home.settings.facts_path, facts)
    try:
        for name in names:
            with lifecycle.leased(engine, clock, name) as mine:
                if mine:
                    _advance(home, engine, clock, name, now, con, summary, progress)
    finally:
        if close:
            con.close()
    return summary


def _advance(
    home: Home,
    engine: Engine,
    clock: Clock,
    name: str,
    now: datetime,
    facts: Any,
    summary: TickSummary,
    progress: Progress | None,
) -> None:
    from reengage.campaigns.deciding import decide
    from reengage.campaigns.freezing import freeze

    while True:
        with engine.connect() as conn:
            row = lifecycle.get(conn, name)
        if row.status not in ("scheduled", "testing", "sending"):
            return
        campaign = row.campaign()
        if row.phase is None:
            if row.start_at is None or row.start_at > now:
                return
            if freeze(home, engine, clock, row, campaign, facts) is None:
                return
            summary.started.append(name)
        elif row.phase == "frozen":
            tested = campaign.test is not None
            group, then = ("test", "test_queued") if tested else ("rest", "queued")
            if not _queue(home, engine, campaign, row, group, None, then, now, summary, progress):
                return
        elif row.phase == "test_queued":
            if row.decide_at is None or row.decide_at > now:
                return
            decide(home, engine, campaign, now, facts)
            summary.decided.append(name)
        elif row.phase == "decided":
            winner = row.winner
            if not _queue(
                home, engine, campaign, row, "rest", winner, "queued", now, summary, progress
            ):
                return
        elif row.phase == "queued":
            if not _finish(engine, name, now):
                return
            summary.finished.append(name)
            return
        else:
            return


def _queue(
    home: Home,
    engine: Engine,
    campaign: Campaign,
    row: Row,
    group: str,
    arm: str | None,
    then: str,
    now: datetime,
    summary: TickSummary,
    progress: Progress | None,
) -> bool:
    written = queue_group(engine, home.settings, campaign, group, now, arm=arm, progress=progress)
    if written is None:  # paused or cancelled meanwhile
        return False
    summary.queued += written
    status = "sending" if then == "queued" else None
    _set_phase(engine, row.name, then, now, expect=row.phase, status=status)
    return True


def _set_phase(
    engine: Engine,
    name: str,
    phase: str,
    now: datetime,
    *,
    expect: str | None = None,
    status: str | None = None,
) -> None:
    values: dict[str, Any] = {"phase": phase, "updated_at": now}
    with engine.begin() as conn:
        query = campaigns.update().where(
            campaigns.c.name == name, campaigns.c.status.in_(("testing", "sending"))
        )
        if expect is not None:
            query = query.where(campaigns.c.phase == expect)
        if status is not None:
            values["status"] = status
        conn.execute(query.values(**values))


def _finish(engine: Engine, name: str, now: datetime) -> bool:
    """Done when every message of the campaign is settled (sent, blocked, failed)."""
    with engine.begin() as conn:
        left = conn.execute(
            select(func.count())
            .select_from(messages)
            .where(messages.c.campaign == name, messages.c.status.in_((*PENDING, "paused")))
        ).scalar_one()
        if left:
            return False
        done = conn.execute(
            campaigns.update()
            .where(campaigns.c.name == name, campaigns.c.status == "sending")
            .values(status="done", finished_at=now, updated_at=now)
        ).rowcount
    return bool(done)


def next_due(engine: Engine) -> datetime | None:
    """When a campaign next has something to do by the clock: a start, a decision."""
    from reengage.clock import as_utc

    with engine.connect() as conn:
        start = conn.execute(
            select(func.min(campaigns.c.start_at)).where(
                campaigns.c.status == "scheduled", campaigns.c.phase.is_(None)
            )
        ).scalar_one_or_none()
        decide = conn.execute(
            select(func.min(campaigns.c.decide_at)).where(
                campaigns.c.status == "testing", campaigns.c.phase == "test_queued"
            )
        ).scalar_one_or_none()
    found = [as_utc(t) for t in (start, decide) if t is not None]
    return min(found, default=None)
