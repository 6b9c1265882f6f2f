"""Claiming due outbox rows for a delivery run: `FOR UPDATE SKIP LOCKED` on PostgreSQL, a
guarded UPDATE on SQLite; a row left `sending` past its lease is claimed again, unless it
was being handed to its provider (then it is settled as sent, unconfirmed); the channels'
rate limits; and the backoff a temporary failure puts a row back with."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select
from sqlalchemy.sql import ColumnElement

from reengage.clock import Clock, as_utc
from reengage.messages.intents import variant_for
from reengage.state.schema import messages

LEASE = timedelta(minutes=10)
RETRY_FIRST = timedelta(minutes=10)
RETRY_FACTOR = 4
RETRY_MAX = timedelta(hours=6)
WINDOW = timedelta(seconds=60)  # a rate limit is messages per minute, sliding
UNCONFIRMED = "unconfirmed: the sender stopped while the provider was accepting it"
_LOCKS = 0x7265656E  # "reen": the advisory lock space of the rate limits (PostgreSQL)


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
    handed_at: datetime | None = None  # of a row settled as unconfirmed


@dataclass
class Claim:
    """What one claim did."""

    rows: list[Claimed] = field(default_factory=list)  # now `sending`, this worker's
    # rows a dead worker left while handing them over: now `sent`, with UNCONFIRMED
    unconfirmed: list[Claimed] = field(default_factory=list)
    # rate-limited channels whose window is full: when its oldest claim leaves it
    full: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class _Scope:
    channel: str | None = None  # only this channel
    exclude: frozenset[str] = frozenset()  # none of these channels
    campaign: str | None = None

    def where(self, table: Any) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.channel is not None:
            found.append(table.c.channel == self.channel)
        if self.exclude:
            found.append(table.c.channel.not_in(sorted(self.exclude)))
        if self.campaign is not None:
            found.append(table.c.campaign == self.campaign)
        return found


_RETURNED = (
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


def claim(
    engine: Engine,
    clock: Clock,
    *,
    limit: int,
    channel: str | None = None,
    campaign: str | None = None,
    lease: timedelta = LEASE,
) -> list[Claimed]:
    """Claim up to `limit` due rows (see `claim_due`); they are `sending` when this returns."""
    return claim_due(
        engine, clock, limit=limit, channel=channel, campaign=campaign, lease=lease
    ).rows


def claim_due(
    engine: Engine,
    clock: Clock,
    *,
    limit: int,
    channel: str | None = None,
    campaign: str | None = None,
    lease: timedelta = LEASE,
    rate_limits: Mapping[str, int] | None = None,
    skip: Collection[str] = (),
) -> Claim:
    """Claim up to `limit` due rows in one transaction: first rows left `sending` by a dead
    worker (older than `lease`), then rows `deferred` by a higher-priority message, then
    `queued` rows, each kind in due order. Rows of a `paused` or `cancelled` campaign are
    never taken.

    Rows left `sending` with `handed_at` set were being handed to the provider when their
    worker stopped: they are marked `sent` (UNCONFIRMED, `sent_at` = `handed_at`), not
    claimed. A channel in `rate_limits` (messages per minute) gets at most its limit less
    the rows of that channel claimed in the last minute, whatever became of them; the count
    and the claim are one atomic step across processes. Channels in `skip` are left alone.
    """
    now = clock.now()
    answer = Claim()
    scope = _Scope(channel=channel, campaign=campaign)
    limited = {
        ch: n for ch, n in (rate_limits or {}).items() if channel in (None, ch) and ch not in skip
    }
    with engine.begin() as conn:
        # a write first: on SQLite it takes the database's write lock, which makes the window
        # counts below and the claims one step (PostgreSQL takes advisory locks for that)
        answer.unconfirmed = _settle_handed(conn, now, lease, scope)
        oldest: dict[str, datetime] = {}  # the oldest claim in each window
        caps: dict[str, int] = {}
        for ch in sorted(limited):
            used, first = _window(conn, ch, now)
            if first is not None:
                oldest[ch] = first
            caps[ch] = max(0, limited[ch] - used)
        groups: list[tuple[_Scope, str | None, int]] = [
            (_Scope(ch, campaign=campaign), ch, caps[ch]) for ch in caps if caps[ch]
        ]
        shut = frozenset(limited) | frozenset(skip)
        if channel is None:
            groups.append((_Scope(exclude=shut, campaign=campaign), None, limit))
        elif channel not in shut:
            groups.append((scope, None, limit))
        taken = dict.fromkeys(caps, 0)
        for kind in ("stale", "deferred", "queued"):
            for group, name, cap in groups:
                want = min(limit - len(answer.rows), cap - taken.get(name or "", 0))
                if want <= 0:
                    continue
                rows = _claim_kind(conn, kind, now, lease, group, want)
                answer.rows.extend(rows)
                if name is not None and rows:
                    taken[name] += len(rows)
                    oldest.setdefault(name, now)
        for ch, cap in caps.items():
            if taken[ch] >= cap:  # full already, or filled by this claim
                answer.full[ch] = oldest.get(ch, now) + WINDOW
    answer.rows.sort(key=lambda c: c.id)
    return answer


def _settle_handed(
    conn: Connection, now: datetime, lease: timedelta, scope: _Scope
) -> list[Claimed]:
    statement = (
        messages.update()
        .where(
            messages.c.status == "sending",
            messages.c.claimed_at < now - lease,
            messages.c.handed_at.is_not(None),
            *scope.where(messages),
        )
        .values(status="sent", sent_at=messages.c.handed_at, reason=UNCONFIRMED)
        .returning(*_RETURNED, messages.c.claimed_at, messages.c.handed_at)
    )
    return [
        _claimed(r, as_utc(r.claimed_at), handed_at=as_utc(r.handed_at))
        for r in conn.execute(statement)
    ]


def _window(conn: Connection, channel: str, now: datetime) -> tuple[int, datetime | None]:
    """The rows of a channel claimed in the last minute, and the oldest such claim."""
    if conn.dialect.name == "postgresql":  # held to the end of the claim's transaction
        key = zlib.crc32(channel.encode()) & 0x7FFFFFFF
        conn.execute(select(func.pg_advisory_xact_lock(_LOCKS, key)))
    used, first = conn.execute(
        select(func.count(), func.min(messages.c.claimed_at)).where(
            messages.c.channel == channel, messages.c.claimed_at > now - WINDOW
        )
    ).one()
    return int(used), (as_utc(first) if first is not None else None)


def _claim_kind(
    conn: Connection, kind: str, now: datetime, lease: timedelta, scope: _Scope, want: int
) -> list[Claimed]:
    picked = messages.alias("picked")
    condition, _ = _claimable(messages, kind, now, lease, scope)
    inner, inner_order = _claimable(picked, kind, now, lease, scope)
    pick = select(picked.c.id).where(inner).order_by(*inner_order).limit(want)
    if conn.dialect.name == "postgresql":
        # a CTE runs once: as a subquery of the UPDATE it may be run again for every row,
        # each run skipping the rows the UPDATE changed and locking the next ones
        chosen = pick.with_for_update(skip_locked=True).cte("chosen")
        ids: Any = select(chosen.c.id)
    else:
        ids = pick.scalar_subquery()
    statement = (
        messages.update()
        .where(messages.c.id.in_(ids), condition)
        .values(status="sending", claimed_at=now, attempts=messages.c.attempts + 1)
        .returning(*_RETURNED)
    )
    return [_claimed(r, now, reclaimed=kind == "stale") for r in conn.execute(statement)]


def _claimed(r: Any, claimed_at: datetime, **extra: Any) -> Claimed:
    return Claimed(
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
        claimed_at=claimed_at,
        payload=dict(r.payload or {}),
        offer_code=r.offer_code,
        **extra,
    )


def _claimable(
    table: Any, kind: str, now: datetime, lease: timedelta, scope: _Scope
) -> tuple[ColumnElement[bool], tuple[Any, ...]]:
    """Which rows of a kind a claim takes (only these statuses: never `paused`,
    `cancelled` or a final one), and in what order."""
    if kind == "stale":
        condition = and_(
            table.c.status == "sending",
            table.c.claimed_at < now - lease,
            table.c.handed_at.is_(None),
        )
        order: tuple[Any, ...] = (table.c.claimed_at, table.c.id)
    else:
        condition = and_(table.c.status == kind, table.c.due_at <= now)
        order = (table.c.due_at, table.c.id)
    return and_(condition, *scope.where(table)), order


def count_due(
    engine: Engine,
    clock: Clock,
    *,
    channel: str | None = None,
    campaign: str | None = None,
    lease: timedelta = LEASE,
) -> int:
    """How many rows a run started now would claim (left `sending`, deferred, queued), rate
    limits aside."""
    now = clock.now()
    scope = _Scope(channel=channel, campaign=campaign)
    total = 0
    with engine.connect() as conn:
        for kind in ("stale", "deferred", "queued"):
            condition, _ = _claimable(messages, kind, now, lease, scope)
            total += int(conn.execute(select(func.count()).where(condition)).scalar_one())
    return total


def retry_delay(attempts: int, message_id: int = 0) -> timedelta:
    """How long a row waits after its `attempts`-th try failed for now: 10 minutes, times 4
    each time, at most 6 hours; less up to a tenth, by outbox id, so rows that failed together
    are not all tried again in the same second."""
    delay = min(RETRY_MAX, RETRY_FIRST * RETRY_FACTOR ** max(0, attempts - 1))
    spread = (message_id * 2654435761 % 1000) / 10_000  # 0 to 0.1, stable per row
    return delay * (1 - spread)
