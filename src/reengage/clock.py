"""Time, behind one small interface, so the demo and the tests can fast-forward.

Nothing in reengage calls `datetime.now()` deep inside: commands take a `Clock` and pass it on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move: for tests and the demo."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    @classmethod
    def parse(cls, text: str) -> FixedClock:
        """A clock at an ISO 8601 instant; one without an offset is taken as UTC."""
        at = datetime.fromisoformat(text)
        return cls(at if at.tzinfo else at.replace(tzinfo=UTC))

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def as_utc(moment: datetime) -> datetime:
    """An aware UTC instant; a naive datetime (as SQLite hands back) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
