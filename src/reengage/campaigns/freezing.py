"""Freezing a campaign's audience when it starts: who is in (the first of its segments each
contact is a member of, and since when), who is left out (members of an excluded segment),
the holdout, the test share and its arms, and when each message is to go.

The recipients are written in one transaction with the campaign's move to `frozen`: a
crash before the commit leaves nothing, after it the frozen audience is the run's and a
restart goes on from it. Segment membership changing later does not change who gets the
campaign.

Send times: the test share goes at the start (its results decide the rest); the rest at the
start, or once the test window is over; with `schedule.best_time`, each of the rest at their
best hour within that window from then (`send_times`). The holdout gets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.audience.segments import refresh_segments
from reengage.campaigns.definition import Campaign
from reengage.campaigns.groups import GROUPS, draw
from reengage.campaigns.lifecycle import Row
from reengage.clock import Clock, FixedClock
from reengage.config import Home
from reengage.measure.holdout import global_holdout
from reengage.messages.intents import INTENTS
from reengage.state.db import bulk_insert_columns
from reengage.state.schema import campaign_recipients, campaigns, contacts, segment_members


@dataclass(frozen=True)
class Frozen:
    audience: int  # everyone in, holdout included
    excluded: int
    holdout: int
    test: int
    rest: int


def freeze(
    home: Home, engine: Engine, clock: Clock, row: Row, campaign: Campaign, facts: Any
) -> Frozen | None:
    """Freeze the audience of a scheduled campaign now; None when it is no longer scheduled
    (paused or cancelled meanwhile: nothing is written)."""
    now = clock.now()
    if campaign.refresh:
        names = [*campaign.segments, *campaign.exclude]
        refresh_segments(home, engine, FixedClock(now), names, facts=facts)
    members = _members(engine, campaign)
    ids = members["contact_id"]
    test = campaign.test
    group, arm = draw(
        ids,
        campaign.name,
        holdout=campaign.holdout,
        test_share=test.share if test else 0.0,
        arms=len(test.arms) if test else 0,
    )
    if INTENTS[campaign.intent].purpose == "marketing":
        # the global holdout gets no marketing: it joins the campaign's own holdout, which
        # stays a random draw, so the campaign's lift is still measured without bias
        held = global_holdout(ids, home.settings.global_holdout)
        group[held] = 2
        arm[held] = -1
    decide_at = now + test.window.timedelta if test else None
    send_at = _send_times(home, facts, members, group, now, decide_at or now, campaign)
    arms = [a.name for a in test.arms] if test else []
    with engine.begin() as conn:
        moved = conn.execute(
            campaigns.update()
            .where(
                campaigns.c.name == row.name,
                campaigns.c.status == "scheduled",
                campaigns.c.phase.is_(None),
            )
            .values(
                status="testing" if test else "sending",
                phase="frozen",
                started_at=now,
                frozen_at=now,
                decide_at=decide_at,
                audience=len(ids),
                excluded=members["excluded"],
                holdout=int((group == 2).sum()),
                updated_at=now,
            )
        ).rowcount
        if not moved:
            return None
        bulk_insert_columns(
            conn,
            campaign_recipients,
            {
                "campaign": [row.name] * len(ids),
                "contact_id": ids.tolist(),
                "grp": [GROUPS[g] for g in group.tolist()],
                "arm": [arms[a] if a >= 0 else None for a in arm.tolist()],
                "send_at": send_at,
                "segment": members["segment"],
                "entered_at": members["entered_at"],
            },
        )
    return Frozen(
        audience=len(ids),
        excluded=members["excluded"],
        holdout=int((group == 2).sum()),
        test=int((group == 1).sum()),
        rest=int((group == 0).sum()),
    )


def _members(engine: Engine, campaign: Campaign) -> dict[str, Any]:
    """Each contact of the audience once (the first segment listed that holds them), in
    contact id order, with what send times need; and how many were excluded."""
    seen: dict[int, tuple[str, datetime, str | None, str | None]] = {}
    left_out: set[int] = set()
    with engine.connect() as conn:
        for name in campaign.exclude:
            left_out.update(
                conn.execute(
                    select(segment_members.c.contact_id).where(segment_members.c.segment == name)
                ).scalars()
            )
        excluded: set[int] = set()
        for name in campaign.segments:
            query = (
                select(
                    segment_members.c.contact_id,
                    segment_members.c.entered_at,
                    contacts.c.customer_id,
                    contacts.c.timezone,
                )
                .join(contacts, contacts.c.id == segment_members.c.contact_id)
                .where(segment_members.c.segment == name)
            )
            for cid, entered, customer, zone in conn.execute(query):
                if cid in left_out:
                    excluded.add(cid)
                elif cid not in seen:
                    seen[cid] = (name, entered, customer, zone)
    ordered = sorted(seen)
    return {
        "contact_id": np.array(ordered, dtype=np.int64),
        "segment": [seen[c][0] for c in ordered],
        "entered_at": [seen[c][1] for c in ordered],
        "customer_id": [seen[c][2] for c in ordered],
        "timezone": [seen[c][3] for c in ordered],
        "excluded": len(excluded),
    }


def _send_times(
    home: Home,
    facts: Any,
    members: dict[str, Any],
    group: np.ndarray,
    start: datetime,
    rest_from: datetime,
    campaign: Campaign,
) -> list[datetime | None]:
    """When each recipient's message is due (None for the holdout)."""
    times: list[datetime | None] = [
        None if g == 2 else (start if g == 1 else rest_from) for g in group.tolist()
    ]
    if campaign.best_time is None:
        return times
    rest = np.flatnonzero(group == 0)
    if not len(rest):
        return times
    from reengage.campaigns.send_times import best_send_times

    table = pa.table(
        {
            "contact_id": pa.array(members["contact_id"][rest]),
            "customer_id": pa.array([members["customer_id"][i] for i in rest], pa.string()),
            "timezone": pa.array([members["timezone"][i] for i in rest], pa.string()),
        }
    )
    chosen = best_send_times(
        facts,
        table,
        start=rest_from,
        window=campaign.best_time.timedelta,
        shop_zone=home.settings.zone,
        now=start,
    )
    instants = chosen.send_at.astype("datetime64[us]").astype(datetime).tolist()
    for i, at in zip(rest.tolist(), instants, strict=True):
        times[i] = at.replace(tzinfo=UTC)
    return times


def window_end(campaign: Campaign, rest_from: datetime) -> datetime:
    """When the last message of the rest is due at the latest."""
    return rest_from + (campaign.best_time.timedelta if campaign.best_time else timedelta(0))
