"""Sending one claimed row, in a worker thread: render it, mark the hand-over, send it
through its channel, and mark what the provider answered — `sent`; back to the queue with a
backoff on a temporary failure; `failed` (and the address suppressed when it does not exist)
on a permanent one. Also when a channel counts as down for the rest of the run."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Engine

from reengage.channels.delivery import Channel, PermanentFailure, Receipt, TemporaryFailure
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ReengageError
from reengage.messages.claims import RETRY_FIRST, Claimed, retry_delay
from reengage.messages.marks import ClaimLost, Marks
from reengage.messages.outcomes import Outcome
from reengage.messages.outgoing import Composer, Job, open_channel

log = logging.getLogger(__name__)

# consecutive temporary failures after which a channel is taken as down for the run
DOWN_AFTER = 3
CHANNEL_UNAVAILABLE = "channel_unavailable"


def reason_of(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500] or type(exc).__name__


class Sender:
    """Delivers jobs one at a time; many threads share one."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Clock,
        marks: Marks,
        composer: Composer,
        *,
        lease: timedelta,
        max_attempts: int,
        channels: Mapping[str, Channel] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.marks = marks
        self.composer = composer
        self.lease = lease
        self.max_attempts = max_attempts
        self._given = dict(channels or {})
        self._opened: dict[str, Channel] = {}
        self.down: dict[str, str] = {}  # channel: why it is down for the run
        self._failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def channel(self, name: str) -> Channel:
        with self._lock:
            found = self._given.get(name) or self._opened.get(name)
            if found is None:
                found = self._opened[name] = open_channel(
                    name, self.settings, self.engine, self.clock
                )
            return found

    def close(self) -> None:
        """Close the channels opened here (not the ones given)."""
        for ch in self._opened.values():
            try:
                ch.close()
            except Exception:
                log.exception("closing the %s channel failed", ch.name)

    def deliver(self, job: Job) -> Outcome:
        row = job.row
        now = self.clock.now()
        down = self.down.get(row.channel)
        if down is not None:
            return self._put_back(row, down, now + RETRY_FIRST)
        if now - row.claimed_at > self.lease / 2:
            return self._put_back(row, "lease", now)
        try:
            channel = self.channel(row.channel)
        except ReengageError as exc:
            reason = f"{CHANNEL_UNAVAILABLE}: {reason_of(exc)}"[:500]
            with self._lock:
                self.down.setdefault(row.channel, reason)
            return self._put_back(row, reason, now + RETRY_FIRST)
        try:
            message, subject = self.composer.build(job, lambda: self._hand(row))
        except Exception as exc:  # a template that fails on this contact's data
            reason = f"render: {type(exc).__name__}"
            log.error("outbox %s could not be rendered: %s", row.id, type(exc).__name__)
            return self._end(row, "failed", reason, now)
        try:
            receipt: Receipt = channel.send(message)
        except ClaimLost:
            log.warning("outbox %s was claimed by another worker before it was sent", row.id)
            return Outcome(row, "lost", at=now)
        except TemporaryFailure as exc:
            return self._temporary(row, exc)
        except PermanentFailure as exc:
            return self._permanent(row, job, exc)
        except ValueError as exc:  # the channel could not build it (a bad header in the payload)
            log.error("outbox %s could not be built: %s", row.id, exc)
            return self._end(row, "failed", f"invalid message: {reason_of(exc)}", now)
        with self._lock:
            self._failures[row.channel] = 0
        sent_at = self.clock.now()
        provider = (receipt.provider_id or "")[:200] or None
        if not self.marks.sent(row, sent_at, provider, (subject or "")[:500] or None):
            log.warning("outbox %s was claimed by another worker while being sent", row.id)
            return Outcome(row, "lost", at=sent_at)
        return Outcome(row, "sent", provider_id=provider, at=sent_at)

    def _hand(self, row: Claimed) -> None:
        """The hand-over callback: the mark committed, or ClaimLost and nothing sent."""
        self.marks.handed(row, self.clock.now())

    def _temporary(self, row: Claimed, exc: TemporaryFailure) -> Outcome:
        reason = reason_of(exc)
        with self._lock:
            self._failures[row.channel] += 1
            if reason.startswith("smtp_url") or self._failures[row.channel] >= DOWN_AFTER:
                self.down.setdefault(row.channel, f"{CHANNEL_UNAVAILABLE}: {reason}"[:500])
        now = self.clock.now()
        if row.attempts >= self.max_attempts:
            return self._end(row, "failed", f"gave up after {row.attempts} attempts: {reason}", now)
        due = now + retry_delay(row.attempts, row.id)
        if not self.marks.finish(
            row, status="queued", reason=reason, due_at=due, claimed_at=None, handed_at=None
        ):
            return Outcome(row, "lost", at=now)
        return Outcome(row, "retry", reason, at=now)

    def _permanent(self, row: Claimed, job: Job, exc: PermanentFailure) -> Outcome:
        from reengage.suppressions import suppress

        now = self.clock.now()
        reason = reason_of(exc)
        suppressed = False
        with self.marks.writing() as conn:
            # the row first: its UPDATE takes SQLite's write lock before suppress() reads
            if not self.marks.set(conn, row, status="failed", reason=reason, handed_at=None):
                return Outcome(row, "lost", at=now)
            if exc.suppress:
                suppressed = suppress(
                    conn,
                    row.channel,
                    job.to,
                    "bounced",
                    source=f"{row.channel}_delivery",
                    at=now,
                    contact_id=row.contact_id,
                )
        return Outcome(row, "failed", reason, suppressed=suppressed, at=now)

    def _end(self, row: Claimed, status: str, reason: str, now: datetime) -> Outcome:
        if not self.marks.finish(row, status=status, reason=reason, handed_at=None):
            return Outcome(row, "lost", at=now)
        return Outcome(row, status, reason, at=now)

    def _put_back(self, row: Claimed, reason: str, due: datetime) -> Outcome:
        """Not tried: back to the queue as it was (its attempt not counted)."""
        if not self.marks.finish(
            row,
            status="queued",
            reason=reason,
            due_at=due,
            claimed_at=None,
            attempts=row.attempts - 1,
        ):
            return Outcome(row, "lost")
        return Outcome(row, "released", reason)
