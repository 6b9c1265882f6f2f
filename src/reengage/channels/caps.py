"""Frequency caps: how many promotional messages a contact may get per channel and across
channels (`all`), per calendar day of their wall clock and per rolling 7 days.

The counted messages are the contact's marketing messages already committed to: sent, being
sent, or queued. A message counts at the instant it went (`sent_at`), was claimed, or — still
queued — is due; a queued message due before the decision cannot go earlier than the
decision, so it counts at the decision's time.

A week cap is checked over every 7-day window that would hold the new message, not only the
one ending at it: a message queued for later must not end up over the cap either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from reengage.channels.quiet_hours import day_start, local_date

WEEK = timedelta(days=7)
TWO_DAYS = timedelta(days=2)
Period = Literal["day", "week"]
PERIODS: tuple[Period, ...] = ("day", "week")
COUNTED_STATUSES = ("sent", "sending", "queued")


@dataclass(frozen=True)
class Counted:
    """A marketing message that counts toward the caps. `id` is the outbox row (None for a
    send decided earlier in the same batch and not written yet)."""

    id: int | None
    channel: str
    at: datetime
    priority: int = 0
    status: str = "sent"

    @property
    def queued(self) -> bool:
        return self.status == "queued"


@dataclass(frozen=True)
class Cap:
    scope: str  # a channel, or "all"
    period: Period
    limit: int

    @property
    def code(self) -> str:
        return f"cap:{self.scope}:{self.period}"

    def counts(self, message: Counted) -> bool:
        return self.scope == "all" or message.channel == self.scope


def caps_for(channel: str, settings_caps: Mapping[str, Mapping[str, int]]) -> list[Cap]:
    """The caps a send on `channel` must fit, in the order they are reported: the channel's
    day and week, then all channels' day and week. A missing limit is no limit."""
    caps = []
    for scope in (channel, "all"):
        limits = settings_caps.get(scope) or {}
        for period in PERIODS:
            if period in limits:
                caps.append(Cap(scope, period, int(limits[period])))
    return caps


def effective(messages: Iterable[Counted], when: datetime, exclude: int | None) -> list[Counted]:
    """The messages as counted for a decision at `when`: without the message being decided
    (`exclude`), a queued message due earlier counted at `when`."""
    return [
        replace(m, at=when) if m.queued and m.at < when else m
        for m in messages
        if exclude is None or m.id != exclude
    ]


def is_full(cap: Cap, messages: Sequence[Counted], at: datetime, zone: ZoneInfo) -> bool:
    """Whether one more message at `at` would exceed the cap."""
    times = [m.at for m in messages if cap.counts(m)]
    if len(times) < cap.limit:  # room whatever their times: the common case, answered fast
        return False
    if cap.period == "day":
        day = local_date(at, zone)
        # two days apart is never the same local day (offsets stay within a day): skip those
        same = sum(abs(t - at) < TWO_DAYS and local_date(t, zone) == day for t in times)
        return same + 1 > cap.limit
    near = sorted(t for t in times if at - WEEK < t < at + WEEK)
    # every window (r - 7d, r] holding `at`: the most crowded ends at `at` or at a later message
    for right in (at, *(t for t in near if t >= at)):
        if sum(right - WEEK < t <= right for t in near) + 1 > cap.limit:
            return True
    return False


def frees_at(
    cap: Cap, messages: Sequence[Counted], at: datetime, zone: ZoneInfo, latest: datetime
) -> datetime | None:
    """The first instant after `at`, no later than `latest`, at which the cap has room; None
    when it has none until then. A day cap frees at a local midnight, a week cap when a
    counted message leaves the 7-day window."""
    if cap.period == "day":
        day = local_date(at, zone)
        for ahead in range(1, 400):
            start = day_start(day + timedelta(days=ahead), zone)
            if start > latest:
                return None
            if not is_full(cap, messages, start, zone):
                return start
        return None
    candidates = sorted({m.at + WEEK for m in messages if cap.counts(m) and m.at + WEEK > at})
    for candidate in candidates:
        if candidate > latest:
            return None
        if not is_full(cap, messages, candidate, zone):
            return candidate
    return None


def bumps(
    caps: Sequence[Cap],
    messages: Sequence[Counted],
    at: datetime,
    zone: ZoneInfo,
    priority: int,
) -> tuple[int, ...] | None:
    """Which queued messages of lower priority than `priority` to take out (defer) so that a
    message at `at` fits every cap: the lowest priority first, the latest due first among
    equals, only ones that count toward a cap still full. None when even taking out every
    such message leaves a cap full; () when nothing needs to go."""
    kept = list(messages)
    taken: list[int] = []
    movable = sorted(
        (m for m in messages if m.queued and m.id is not None and m.priority < priority),
        key=lambda m: (m.priority, -m.at.timestamp(), -(m.id or 0)),
    )
    while True:
        full = [cap for cap in caps if is_full(cap, kept, at, zone)]
        if not full:
            return tuple(taken)
        weighing = (m for m in movable if m.id not in taken and _weighs_on(full, m, at, zone))
        pick = next(weighing, None)
        if pick is None or pick.id is None:
            return None
        taken.append(pick.id)
        kept = [m for m in kept if m.id != pick.id]


def _weighs_on(caps: Sequence[Cap], message: Counted, at: datetime, zone: ZoneInfo) -> bool:
    """Whether the message is one of those filling one of the caps for a send at `at`."""
    for cap in caps:
        if not cap.counts(message):
            continue
        if cap.period == "day" and local_date(message.at, zone) == local_date(at, zone):
            return True
        if cap.period == "week" and abs(message.at - at) < WEEK:
            return True
    return False
