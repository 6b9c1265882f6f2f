"""Local wall time in a contact's zone: quiet hours and calendar days, right across DST.

A contact lives by the clock on their wall, so the policy reasons in wall time and answers in
instants (UTC). Two wall-time facts of life are handled here once:

- a wall time that does not exist (skipped by a spring-forward change, e.g. 02:30 in Rome on
  the last Sunday of March) resolves to the first valid instant after it: the change itself;
- a wall time that happens twice (a fall-back change) is both instants, earlier first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ONE_SECOND = timedelta(seconds=1)


@lru_cache(maxsize=1024)
def zone_named(name: str | None) -> ZoneInfo | None:
    """The zone for an IANA name; None when the name is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def wall_instants(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants at which a clock in `zone` shows `wall` on `day`.

    One instant usually; two on a fall-back day (earlier first); for a wall time skipped by
    a spring-forward change, the first valid instant after it (the moment of the change).
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:  # the same offset either way: an ordinary wall time
        return [first]
    found = [
        instant
        for instant in (first, second)
        if instant.astimezone(zone).replace(tzinfo=None) == naive
    ]
    if found:
        return sorted(found)
    # Skipped. Read with the offset after the change (fold=1) the instant falls before the
    # change, read with the offset before it (fold=0) after: the change lies in between, on a
    # whole second; halve the interval down to that second.
    before, after = second, first
    while after - before > ONE_SECOND:
        middle = max((before + (after - before) / 2).replace(microsecond=0), before + ONE_SECOND)
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            after = middle
        else:
            before = middle
    return [after]


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar day the contact's wall calendar shows at `moment`."""
    return moment.astimezone(zone).date()


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local calendar day (a skipped midnight: the change after it)."""
    return wall_instants(day, time(0), zone)[0]


@dataclass(frozen=True)
class QuietHours:
    """A daily window of wall time, `start` inclusive to `end` exclusive; a window whose start
    is later than its end crosses midnight (21:00-09:00 is the evening and the night)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """The window of a `quiet_hours` setting ("21:00-09:00"); None for "off" (or a window
        that starts where it ends, which holds no time)."""
        if text.strip() in ("", "off"):
            return None
        first, second = text.split("-")
        window = cls(_clock(first), _clock(second))
        return None if window.start == window.end else window

    def inside(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Whether the wall clock in `zone` shows a time inside the window at `moment`."""
        wall = moment.astimezone(zone).time()
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def end_after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """`moment` itself when it is outside the window, else the window's end: the first
        instant after `moment` at which the wall clock shows `end` (resolved as
        `wall_instants` does) and the window is over."""
        if not self.inside(moment, zone):
            return moment
        today = local_date(moment, zone)
        for offset in (-1, 0, 1, 2, 3):  # the instants come in order: the first that fits
            for instant in wall_instants(today + timedelta(days=offset), self.end, zone):
                if instant > moment and not self.inside(instant, zone):
                    return instant
        raise AssertionError("a daily window always ends within a few days")


@lru_cache(maxsize=64)
def quiet_hours(text: str) -> QuietHours | None:
    """The parsed `quiet_hours` setting, cached: it is read for every decision."""
    return QuietHours.parse(text)


def _clock(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes))
