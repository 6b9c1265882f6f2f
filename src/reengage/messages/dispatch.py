"""Delivering the outbox: claim due rows, check the contact policy again, render, send, mark.

    summary = deliver_due(home, engine, clock)              # everything due now
    summary = deliver_due(home, engine, clock, limit=1000, channel="email")
    summary = deliver_due(home, engine, clock, campaign="spring")   # one campaign's rows

This module runs the batches; the parts are `claims` (claiming, rate limits), `addressing`
(contacts and addresses), `outgoing` (a row's message on its channel), `sending` (one row
through its channel, and its outcome), `marks` (the fenced writes) and `outcomes` (events).

**Claiming.** A batch of due rows (`queued`, or `deferred` by a higher-priority message, with
`due_at` <= now) is set to `sending` with `claimed_at` = now and `attempts` + 1, in one short
transaction: `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` on PostgreSQL, so
concurrent dispatchers never take the same row, and one `UPDATE ... WHERE status = 'queued'
AND id IN (SELECT ...) RETURNING` on SQLite, atomic under its single writer. No other status
is claimed: the rows of a `paused` or `cancelled` campaign wait. A row left `sending` longer
than the lease (10 minutes) belonged to a worker that died: it is claimed again (its
attempts count on, and after `max_attempts` it is failed instead) — unless it carries the
hand-over mark (below). Rows are claimed in due order; priority decides inside a batch (the
policy's), not across batches. `claimed_at` is the claim's fence: every later write of the
row requires it unchanged, so a worker that lost its lease cannot overwrite the new owner's
outcome.

**Rate limits.** A channel in the settings' `rate_limits` (messages per minute) is claimed
apart: at most its limit less the rows of that channel claimed in the last 60 seconds,
whatever became of them (each claim is an attempt to hand one over), counted from the outbox
itself, so every dispatcher process shares the one limit. The count and the claim are one
step: an advisory lock per channel on PostgreSQL, SQLite's write lock (the claim's first
statement writes) on SQLite. A run that fills a channel's window takes no more of its rows;
the other channels go on. The summary says how many due rows were left (`throttled`) and
when the window next frees a place (`resume_at`: its oldest claim plus 60 seconds).

**Deciding.** The claimed rows are checked again by the contact policy (consents,
suppressions and counts may have changed since they were queued): `read_facts` for the batch,
without the batch's own rows among the counted messages, then `decide_many`, which decides by
priority and counts each allowed row as it goes — so of two promotions for one contact in a
batch the higher-priority one goes, as `check_many` would answer one request at a time. A
block marks the row `blocked` with the reason, a deferral puts it back to `queued` at the new
`due_at` with the reason (its attempt not counted), an allow may set lower-priority queued
rows aside (`apply_bumps`). The address actually sent to (email, E.164 phone, push endpoint)
is checked against the suppressions too. Two dispatchers deciding for one contact at the same
moment each count the other's claimed row: both may defer (never both send past a cap).

**Rendering.** Contexts are built for the whole batch from state (contacts, latest scores,
offers, products) and the facts (last valid order and last product viewed of every customer
of the batch in two DuckDB queries; recommendations computed once per run for everyone, the
same as `reengage recommend`), then overlaid with the row's payload (see
`reengage.messages.outbox`); the payload's `copy` ({field: template}) replaces those fields
of the intent's copy. Links are signed per message: every link to the shop is click-tracked
(`web.links.click_url`), the HTML carries the open pixel, and the footer and the
`List-Unsubscribe` header the unsubscribe and preferences links. SMS carry the untracked link
(a click token would double their length) and the opt-out line.

**Sending and marking.** Worker threads (`threads`, default 4) render, send through the
channel and mark each row in its own short transactions. Right before the channel's
irreversible write (SMTP's final dot, after the body; the provider's HTTP request) the row's
`handed_at` is set and committed, fenced like every write (`Outgoing.handing`; a commit
without waiting for the disk on PostgreSQL, `synchronous_commit` off). Right after the
provider answered: `sent` (sent_at, provider id, subject); on a `TemporaryFailure`, back to
`queued` later with `handed_at` cleared (10 min, 40 min, 2 h 40, then every 6 h; `failed`
after `max_attempts`, 6); on a `PermanentFailure`, `failed`, and the address suppressed
(`bounced`) when the provider said it does not exist. After three temporary failures in a
row (or a refused login, a bad certificate) the channel counts as down for the run: its
remaining rows go back to the queue for 10 minutes, their attempts not counted. A row whose
claim is older than half the lease when its turn comes goes back too, never sent late by a
worker that may have lost it. `sent` and `failed` message events go to the facts, 5,000 to a
file. While one batch is being sent, the next is claimed and prepared: at most two batches
are held at a time.

**The crash window.** A worker that dies leaves its rows `sending`. After the lease, a row
without `handed_at` is claimed and sent again: the provider never had it. A row with
`handed_at` is not: it is marked `sent` (`sent_at` = `handed_at`, reason UNCONFIRMED,
counted in `unconfirmed`), since the provider had it or was taking it. That closes the old
window between "the provider accepted" and "marked sent" (one message per thread, sent
twice). What remains, as far as SMTP allows:

- between the hand-over commit and the final dot's write (microseconds), a crash loses that
  message: the server drops a body without its dot, and the row says sent, unconfirmed;
- a connection lost after the dot was written and before the reply, or a provider's answer
  lost, is a temporary failure: the row goes back and may be delivered twice (the resend is
  recognisable: the Message-ID, the MIME boundary and every token derive from the outbox id;
  the Twilio status callback names it, the push Topic replaces an undelivered copy);
- on PostgreSQL, a crash of the database server itself (not of the worker) may lose the
  last hand-over commits (`synchronous_commit` off): those rows are sent again, as before;
- a channel that ignores `Outgoing.handing` (the maildir sink, whose filing is idempotent)
  keeps the at-least-once behaviour.

A crash after the state commit and before the events are written loses those `sent` events
(the rows still say `sent`); up to 5,000. A run stopped by an error or Ctrl-C puts the rows
it had not started back in the queue.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from reengage.channels.delivery import Channel
from reengage.clock import Clock
from reengage.config import Home, Settings
from reengage.messages.addressing import NO_ADDRESS, addresses, people
from reengage.messages.batch_contexts import BatchContexts, Person
from reengage.messages.claims import (
    LEASE,
    RETRY_FIRST,
    UNCONFIRMED,
    WINDOW,
    Claimed,
    claim,
    claim_due,
    count_due,
    retry_delay,
)
from reengage.messages.copy import Catalogue
from reengage.messages.marks import Marks
from reengage.messages.outcomes import EVENTS_PER_FILE, EventLog, Outcome
from reengage.messages.outgoing import Composer, Job
from reengage.messages.render import Renderer
from reengage.messages.screening import screen
from reengage.messages.sending import CHANNEL_UNAVAILABLE, DOWN_AFTER, Sender

__all__ = [
    "BATCH",
    "CHANNEL_UNAVAILABLE",
    "DOWN_AFTER",
    "EVENTS_PER_FILE",
    "LEASE",
    "MAX_ATTEMPTS",
    "NO_ADDRESS",
    "RETRY_FIRST",
    "THREADS",
    "UNCONFIRMED",
    "WINDOW",
    "BatchContexts",
    "Claimed",
    "DeliverySummary",
    "Person",
    "claim",
    "claim_due",
    "count_due",
    "deliver_due",
    "retry_delay",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BATCH = 500
THREADS = 4
MAX_THREADS = 12
TASK = 8  # messages a worker thread takes at a time

Progress = Callable[[str, int, int], None]


@dataclass
class DeliverySummary:
    """What a run did. `reasons` counts the reasons of rows blocked, deferred and released."""

    claimed: int = 0
    reclaimed: int = 0  # of the claimed: rows a dead worker had left `sending`
    sent: int = 0
    blocked: int = 0
    deferred: int = 0
    retrying: int = 0  # temporary failures, queued again for later
    failed: int = 0
    suppressed: int = 0  # addresses suppressed because the provider said they do not exist
    released: int = 0  # claimed but not tried (channel unavailable, lease running out)
    lost: int = 0  # sent or tried, but another worker had claimed the row meanwhile
    # not claimed: rows a dead worker left while handing them over, now `sent` (UNCONFIRMED)
    unconfirmed: int = 0
    throttled: int = 0  # due, but left for later: their channel's rate limit was reached
    resume_at: datetime | None = None  # when the first such window frees a place
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# the rows of a task, and the task's outcomes to come
Sending = tuple[list[Claimed], "Future[list[Outcome]]"]


class _Run:
    def __init__(
        self,
        home: Home,
        engine: Engine,
        clock: Clock,
        *,
        limit: int | None,
        channel: str | None,
        campaign: str | None,
        progress: Progress | None,
        threads: int,
        batch_size: int,
        lease: timedelta,
        max_attempts: int,
        channels: Mapping[str, Channel] | None,
        facts: Any = None,
    ) -> None:
        if threads < 1 or batch_size < 1 or max_attempts < 1:
            raise ValueError("threads, batch_size and max_attempts must be at least 1")
        if threads > MAX_THREADS:  # each holds a connection of the engine's pool (5 + 10)
            raise ValueError(f"threads: at most {MAX_THREADS}")
        self.home = home
        self.settings: Settings = home.settings
        self.engine = engine
        self.clock = clock
        self.limit = limit
        self.channel = channel
        self.campaign = campaign
        self.progress = progress
        self.threads = threads
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.summary = DeliverySummary()
        self.composer = Composer(self.settings, Renderer(Catalogue.for_settings(self.settings)))
        self.contexts = BatchContexts(home, engine, clock, facts=facts)
        self.marks = Marks(engine)
        self.sender = Sender(
            self.settings,
            engine,
            clock,
            self.marks,
            self.composer,
            lease=lease,
            max_attempts=max_attempts,
            channels=channels,
        )
        self.events = EventLog(self.settings, engine, clock)
        self._done = 0
        self._total = 0
        self._full: dict[str, datetime] = {}  # rate-limited channels no longer taken

    # the loop ---------------------------------------------------------------------------

    def run(self) -> DeliverySummary:
        due = self._due(self.channel)
        self._total = due if self.limit is None else min(due, self.limit)
        self._tick()
        inflight: deque[list[Sending]] = deque()
        claimed = 0
        exhausted = False
        executor = ThreadPoolExecutor(self.threads, thread_name_prefix="reengage-send")
        try:
            while True:
                while not exhausted and len(inflight) < 2:
                    want = self.batch_size
                    if self.limit is not None:
                        want = min(want, self.limit - claimed)
                    rows = self._claim(want) if want > 0 else []
                    if not rows:
                        exhausted = True
                        break
                    claimed += len(rows)
                    inflight.append(self._start(rows, executor))
                if not inflight:
                    break
                current = inflight[0]
                for future in as_completed(f for _, f in current):
                    for outcome in future.result():
                        self._record(outcome)
                inflight.popleft()
                if self.events.full:
                    self.events.flush()
        except BaseException:
            self._abandon(inflight)
            raise
        finally:
            executor.shutdown(wait=True)
            try:
                self.events.flush()
            finally:
                self._close()
        self._throttled()
        return self.summary

    def _due(self, channel: str | None) -> int:
        return count_due(
            self.engine, self.clock, channel=channel, campaign=self.campaign, lease=self.lease
        )

    def _claim(self, want: int) -> list[Claimed]:
        with self.marks.turns:
            found = claim_due(
                self.engine,
                self.clock,
                limit=want,
                channel=self.channel,
                campaign=self.campaign,
                lease=self.lease,
                rate_limits=self.settings.rate_limits,
                skip=self._full,
            )
        self._full.update(found.full)  # a full window: the channel's rows wait for the next run
        for r in found.unconfirmed:
            self.summary.unconfirmed += 1
            self.events.add(Outcome(r, "sent", UNCONFIRMED, at=r.handed_at))
        return found.rows

    def _throttled(self) -> None:
        """Count the rows left for a full window, and when the first one frees a place."""
        for channel, free_at in sorted(self._full.items()):
            waiting = self._due(channel)
            if waiting:
                self.summary.throttled += waiting
                resume = self.summary.resume_at
                self.summary.resume_at = free_at if resume is None else min(resume, free_at)
        if self.summary.throttled:
            self._total = max(self._done, self._total - self.summary.throttled)
            self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress("Delivering", self._done, max(self._total, self._done))

    def _abandon(self, inflight: deque[list[Sending]]) -> None:
        """Stopping early (an error, Ctrl-C): rows not started go back to the queue; the
        ones being sent finish and are marked (their outcomes may go unrecorded in the
        summary and the events, if they were recorded already or the stop came first)."""
        pairs = [pair for batch in inflight for pair in batch]
        for _, future in pairs:
            future.cancel()
        waiting = [r for rows, f in pairs if f.cancelled() for r in rows]
        self._release(waiting)

    def _release(self, rows: Sequence[Claimed]) -> None:
        self.summary.released += self.marks.release(rows, None, self.clock.now())

    def _close(self) -> None:
        try:
            self.sender.close()
            self.contexts.close()
        finally:
            self.marks.close()

    # a batch ----------------------------------------------------------------------------

    def _start(self, rows: list[Claimed], executor: ThreadPoolExecutor) -> list[Sending]:
        """Decide, address and render-prepare a claimed batch; its sends, submitted."""
        self.summary.claimed += len(rows)
        self.summary.reclaimed += sum(r.reclaimed for r in rows)
        try:
            jobs = self._prepare(rows)
        except BaseException:
            self._release(rows)  # the fence spares rows decided
            raise
        # a few messages per task: one future per message would cost more than its mark
        tasks = [jobs[i : i + TASK] for i in range(0, len(jobs), TASK)]
        return [([j.row for j in t], executor.submit(self._deliver_all, t)) for t in tasks]

    def _deliver_all(self, jobs: list[Job]) -> list[Outcome]:
        return [self.sender.deliver(job) for job in jobs]

    def _prepare(self, rows: list[Claimed]) -> list[Job]:
        now = self.clock.now()
        summary = self.summary
        marks = self.marks
        exhausted = [r for r in rows if r.attempts > self.max_attempts]
        for r in exhausted:
            reason = f"abandoned: claimed {r.attempts - 1} times without an answer"
            if marks.finish(r, status="failed", reason=reason):
                self.events.add(Outcome(r, "failed", reason, at=now))
                summary.failed += 1
        rows = [r for r in rows if r.attempts <= self.max_attempts]
        if not rows:
            return []
        allowed, held = screen(self.engine, self.settings, marks, rows, now)
        for status, why in held:
            if status == "blocked":
                summary.blocked += 1
            else:
                summary.deferred += 1
            self._count(why)
        self._done += len(rows) - len(allowed) + len(exhausted)
        self._tick()
        if not allowed:
            return []
        found = people(self.engine, sorted({r.contact_id for r in allowed}))
        addressed = addresses(self.engine, allowed, found)
        blocked = {m: reason for m, reason in addressed.items() if reason.startswith("!")}
        if blocked:
            with marks.writing() as conn:
                for r in allowed:
                    if r.id in blocked and marks.set(
                        conn, r, status="blocked", reason=blocked[r.id][1:], attempts=r.attempts - 1
                    ):
                        summary.blocked += 1
                        self._count(blocked[r.id][1:])
            self._done += len(blocked)
            self._tick()
        allowed = [r for r in allowed if r.id not in blocked]
        contexts = self.contexts.build(allowed, found, now)
        jobs: list[Job] = []
        for r in allowed:
            context = contexts[r.id]
            if isinstance(context, str):
                if marks.finish(r, status="failed", reason=context):
                    self.events.add(Outcome(r, "failed", context, at=now))
                    summary.failed += 1
                self._done += 1
                continue
            self.composer.preload(r)
            jobs.append(Job(r, found[r.contact_id], addressed[r.id], context))
        for r in allowed:
            self.events.customers[r.contact_id] = found[r.contact_id].customer_id
        self._tick()
        return jobs

    # results ----------------------------------------------------------------------------

    def _count(self, reason: str | None) -> None:
        if reason:
            key = reason.split(":", 1)[0] if reason.startswith(CHANNEL_UNAVAILABLE) else reason
            self.summary.reasons[key] = self.summary.reasons.get(key, 0) + 1

    def _record(self, outcome: Outcome) -> None:
        s = self.summary
        if outcome.status == "sent":
            s.sent += 1
        elif outcome.status == "failed":
            s.failed += 1
            s.suppressed += outcome.suppressed
        elif outcome.status == "retry":
            s.retrying += 1
        elif outcome.status == "released":
            s.released += 1
            self._count(outcome.reason)
        else:
            s.lost += 1
        self.events.add(outcome)
        self._done += 1
        self._tick()


def deliver_due(
    home: Home,
    engine: Engine,
    clock: Clock,
    *,
    limit: int | None = None,
    channel: str | None = None,
    campaign: str | None = None,
    progress: Progress | None = None,
    threads: int = THREADS,
    batch_size: int = BATCH,
    lease: timedelta = LEASE,
    max_attempts: int = MAX_ATTEMPTS,
    channels: Mapping[str, Channel] | None = None,
    facts: Any = None,
) -> DeliverySummary:
    """Deliver the outbox rows due now (at most `limit`; one `channel`, the rows of one
    `campaign`, only if given), within the settings' `rate_limits`.

    `progress(stage, done, total)` is called as rows are settled. `channels` replaces the
    channels the settings would open (tests, a provider of one's own); the ones opened here
    are closed at the end. `facts`: a DuckDB connection on the facts to read from (a
    replay's, `reader.materialise`d) instead of one opened for the run. Safe to run in
    several processes at once.
    """
    return _Run(
        home,
        engine,
        clock,
        limit=limit,
        channel=channel,
        campaign=campaign,
        progress=progress,
        threads=threads,
        batch_size=batch_size,
        lease=lease,
        max_attempts=max_attempts,
        channels=channels,
        facts=facts,
    ).run()
