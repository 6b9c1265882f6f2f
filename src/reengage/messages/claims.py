"""Claiming due outbox rows for a delivery run: `FOR UPDATE SKIP LOCKED` on PostgreSQL, a
guarded UPDATE on SQLite; a row left `sending` past its lease is claimed again; and the
backoff a temporary failure puts a row back with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.sql import ColumnElement

from reengage.clock import Clock
from reengage.messages.intents import variant_for
from reengage.state.schema import messages

LEASE = timedelta(minutes=10)
RETRY_FIRST = timedelta(minutes=10)
RETRY_FACTOR = 4
RETRY_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class Claimed:
    """An outbox row claimed by this worker: `claimed_at` is the fence of every later write."""

    id: int
    contact_id: int
    channel: str
    intent: str
    style: str
    variant: str
    language: str
    journey: str | None
    step: str | None
    campaign: str | None
    priority: int
    attempts: int  # this claim included
    claimed_at: datetime
    payload: dict[str, Any]
    offer_code: str | None
    reclaimed: bool = False


def claim(
    engine: Engine,
    clock: Clock,
    *,
    limit: int,
    channel: str | None = None,
    lease: timedelta = LEASE,
) -> list[Claimed]:
    """Claim up to `limit` due rows in one transaction: first rows left `sending` by a dead
    worker (older than `lease`), then rows `deferred` by a higher-priority message, then
    `queued` rows, each kind in due order. They are `sending` when this returns."""
    now = clock.now()
    found: list[Claimed] = []
    picked = messages.alias("picked")
    with engine.begin() as conn:
        for kind in ("stale", "deferred", "queued"):
            want = limit - len(found)
            if want <= 0:
                break
            condition, _ = _claimable(messages, kind, now, lease, channel)
            inner, inner_order = _claimable(picked, kind, now, lease, channel)
            pick = select(picked.c.id).where(inner).order_by(*inner_order).limit(want)
            if conn.dialect.name == "postgresql":
                # a CTE runs once: as a subquery of the UPDATE it may be run again for every
                # row, each run skipping the rows the UPDATE changed and locking the next ones
                chosen = pick.with_for_update(skip_locked=True).cte("chosen")
                ids: Any = select(chosen.c.id)
            else:
                ids = pick.scalar_subquery()
            statement = (
                messages.update()
                .where(messages.c.id.in_(ids), condition)
                .values(status="sending", claimed_at=now, attempts=messages.c.attempts + 1)
                .returning(
                    messages.c.id,
                    messages.c.contact_id,
                    messages.c.channel,
                    messages.c.intent,
                    messages.c.style,
                    messages.c.variant,
                    messages.c.language,
                    messages.c.journey,
                    messages.c.step,
                    messages.c.campaign,
                    messages.c.priority,
                    messages.c.attempts,
                    messages.c.payload,
                    messages.c.offer_code,
                )
            )
            for r in conn.execute(statement):
                found.append(
                    Claimed(
                        id=int(r.id),
                        contact_id=int(r.contact_id),
                        channel=r.channel,
                        intent=r.intent,
                        style=r.style,
                        variant=r.variant or variant_for(r.style),
                        language=r.language,
                        journey=r.journey,
                        step=r.step,
                        campaign=r.campaign,
                        priority=int(r.priority or 0),
                        attempts=int(r.attempts),
                        claimed_at=now,
                        payload=dict(r.payload or {}),
                        offer_code=r.offer_code,
                        reclaimed=kind == "stale",
                    )
                )
    return sorted(found, key=lambda c: c.id)


def _claimable(
    table: Any, kind: str, now: datetime, lease: timedelta, channel: str | None
) -> tuple[ColumnElement[bool], tuple[Any, ...]]:
    if kind == "stale":
        condition = and_(table.c.status == "sending", table.c.claimed_at < now - lease)
        order: tuple[Any, ...] = (table.c.claimed_at, table.c.id)
    else:
        condition = and_(table.c.status == kind, table.c.due_at <= now)
        order = (table.c.due_at, table.c.id)
    if channel is not None:
        condition = and_(condition, table.c.channel == channel)
    return condition, order


def count_due(
    engine: Engine, clock: Clock, *, channel: str | None = None, lease: timedelta = LEASE
) -> int:
    """How many rows a run started now would claim (left `sending`, deferred, queued)."""
    now = clock.now()
    total = 0
    with engine.connect() as conn:
        for kind in ("stale", "deferred", "queued"):
            condition, _ = _claimable(messages, kind, now, lease, channel)
            total += int(conn.execute(select(func.count()).where(condition)).scalar_one())
    return total


def retry_delay(attempts: int, message_id: int = 0) -> timedelta:
    """How long a row waits after its `attempts`-th try failed for now: 10 minutes, times 4
    each time, at most 6 hours; less up to a tenth, by outbox id, so rows that failed together
    are not all tried again in the same second."""
    delay = min(RETRY_MAX, RETRY_FIRST * RETRY_FACTOR ** max(0, attempts - 1))
    spread = (message_id * 2654435761 % 1000) / 10_000  # 0 to 0.1, stable per row
    return delay * (1 - spread)
