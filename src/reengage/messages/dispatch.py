"""Delivering the outbox: claim due rows, check the contact policy again, render, send, mark.

    summary = deliver_due(home, engine, clock)              # everything due now
    summary = deliver_due(home, engine, clock, limit=1000, channel="email")

**Claiming.** A batch of due rows (`queued`, or `deferred` by a higher-priority message, with
`due_at` <= now) is set to `sending` with `claimed_at` = now and `attempts` + 1, in one short
transaction: `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)` on PostgreSQL, so
concurrent dispatchers never take the same row, and one `UPDATE ... WHERE status = 'queued'
AND id IN (SELECT ...) RETURNING` on SQLite, atomic under its single writer. A row left
`sending` longer than the lease (10 minutes) belonged to a worker that died: it is claimed
again (its attempts count on, and after `max_attempts` it is failed instead). Rows are claimed
in due order; priority decides inside a batch (the policy's), not across batches.
`claimed_at` is the claim's fence: every later write of the row requires it unchanged, so a
worker that lost its lease cannot overwrite the new owner's outcome.

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
`reengage.messages.outbox`). Links are signed per message: every link to the shop is
click-tracked (`web.links.click_url`), the HTML carries the open pixel, and the footer and the
`List-Unsubscribe` header the unsubscribe and preferences links. SMS carry the untracked link
(a click token would double their length) and the opt-out line.

**Sending and marking.** Worker threads (`threads`, default 4) render, send through the
channel and mark each row in its own short transaction right after the provider answered:
`sent` (sent_at, provider id, subject); on a `TemporaryFailure`, back to `queued` later (10
min, 40 min, 2 h 40, then every 6 h; `failed` after `max_attempts`, 6); on a
`PermanentFailure`, `failed`, and the address suppressed (`bounced`) when the provider said it
does not exist. After three temporary failures in a row (or a refused login, a bad
certificate) the channel counts as down for the run: its remaining rows go back to the queue
for 10 minutes, their attempts not counted. A row whose claim is older than half the lease
when its turn comes goes back too, never sent late by a worker that may have lost it. `sent`
and `failed` message events go to the facts, 5,000 to a file. While one batch is being sent,
the next is claimed and prepared: at most two batches are held at a time.

**The crash window.** Between the provider accepting a message and its row being marked
`sent` there is one message per sending thread. A worker that dies there leaves the row
`sending`; after the lease it is sent again. The resend is recognisable: the Message-ID, the
MIME boundary and every token derive from the outbox id (the Twilio status callback names it,
the push Topic replaces an undelivered copy). A crash after the state commit and before the
events are written loses those `sent` events (the rows still say `sent`); up to 5,000.
A run stopped by an error or Ctrl-C puts the rows it had not started back in the queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

import markupsafe
import pyarrow as pa
from sqlalchemy import Connection, Engine, select

from reengage.channels.delivery import (
    Channel,
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
)
from reengage.channels.policy import SendRequest, apply_bumps, decide_many, read_facts
from reengage.channels.sms import e164
from reengage.clock import Clock, as_utc
from reengage.config import Home, Settings
from reengage.errors import ReengageError
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.messages.batch_contexts import BatchContexts, Person
from reengage.messages.claims import LEASE, RETRY_FIRST, Claimed, claim, count_due, retry_delay
from reengage.messages.context import (
    Context,
)
from reengage.messages.copy import Catalogue
from reengage.messages.intents import INTENTS
from reengage.messages.render import Links, Rendered, Renderer
from reengage.messages.tokens import sign
from reengage.state.contacts import chunks
from reengage.state.schema import contacts, messages, push_subscriptions
from reengage.state.schema import suppressions as suppressions_table
from reengage.suppressions import normalise_address
from reengage.web.links import is_web_url, open_url, preferences_url, unsubscribe_url

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BATCH = 500
THREADS = 4
MAX_THREADS = 12
EVENTS_PER_FILE = 5000
# consecutive temporary failures after which a channel is taken as down for the run
DOWN_AFTER = 3
CHANNEL_UNAVAILABLE = "channel_unavailable"
NO_ADDRESS = "no_address"

TASK = 8  # messages a worker thread takes at a time

Progress = Callable[[str, int, int], None]
_EVENT_SCHEMA = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])


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
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- one run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    row: Claimed
    person: Person
    to: str
    context: Context


@dataclass(frozen=True)
class Outcome:
    row: Claimed
    status: str  # sent, failed, retry, released, lost
    reason: str | None = None
    provider_id: str | None = None
    suppressed: bool = False
    at: datetime | None = None


# the rows of a task, and the task's outcomes to come
Sending = tuple[list[Claimed], "Future[list[Outcome]]"]


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500] or type(exc).__name__


def _header_token(value: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in value)


class _Run:
    def __init__(
        self,
        home: Home,
        engine: Engine,
        clock: Clock,
        *,
        limit: int | None,
        channel: str | None,
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
        self.progress = progress
        self.threads = threads
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.summary = DeliverySummary()
        self.renderer = Renderer(Catalogue.for_settings(self.settings))
        self.contexts = BatchContexts(home, engine, clock, facts=facts)
        self._given = dict(channels or {})
        self._opened: dict[str, Channel] = {}
        self._down: dict[str, str] = {}
        self._failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._customers: dict[int, str | None] = {}
        self._done = 0
        self._total = 0
        self._local = threading.local()
        self._raws: list[Any] = []
        self.secret = self.settings.secret()
        self._turns: AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )
        self._own_links = f"{self.settings.public_url}/l/"
        self._clicks = f"{self.settings.public_url}/l/c/"
        self._urls: dict[str, bool] = {}

    # the loop ---------------------------------------------------------------------------

    def run(self) -> DeliverySummary:
        due = count_due(self.engine, self.clock, channel=self.channel, lease=self.lease)
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
                    rows = (
                        self._claim(
                            self.engine,
                            self.clock,
                            limit=want,
                            channel=self.channel,
                            lease=self.lease,
                        )
                        if want > 0
                        else []
                    )
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
                if len(self._events) >= EVENTS_PER_FILE:
                    self._flush_events()
        except BaseException:
            self._abandon(inflight)
            raise
        finally:
            executor.shutdown(wait=True)
            try:
                self._flush_events()
            finally:
                self._close()
        return self.summary

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
        self._release(waiting, None, self.clock.now())

    def _close(self) -> None:
        for ch in self._opened.values():
            try:
                ch.close()
            except Exception:
                log.exception("closing the %s channel failed", ch.name)
        self.contexts.close()
        for raw in self._raws:
            try:
                raw.close()  # back to the pool
            except Exception:
                log.exception("closing a state connection failed")

    # a batch ----------------------------------------------------------------------------

    def _start(self, rows: list[Claimed], executor: ThreadPoolExecutor) -> list[Sending]:
        """Decide, address and render-prepare a claimed batch; its sends, submitted."""
        self.summary.claimed += len(rows)
        self.summary.reclaimed += sum(r.reclaimed for r in rows)
        try:
            jobs = self._prepare(rows)
        except BaseException:
            self._release(rows, None, self.clock.now())  # the fence spares rows decided
            raise
        # a few messages per task: one future per message would cost more than its mark
        tasks = [jobs[i : i + TASK] for i in range(0, len(jobs), TASK)]
        return [([j.row for j in t], executor.submit(self._deliver_all, t)) for t in tasks]

    def _deliver_all(self, jobs: list[Job]) -> list[Outcome]:
        return [self._deliver(job) for job in jobs]

    def _prepare(self, rows: list[Claimed]) -> list[Job]:
        now = self.clock.now()
        summary = self.summary
        exhausted = [r for r in rows if r.attempts > self.max_attempts]
        for r in exhausted:
            reason = f"abandoned: claimed {r.attempts - 1} times without an answer"
            if self._finish(r, status="failed", reason=reason):
                self._outcome_event(Outcome(r, "failed", reason, at=now))
                summary.failed += 1
        rows = [r for r in rows if r.attempts <= self.max_attempts]
        if not rows:
            return []
        requests = [
            SendRequest(r.contact_id, r.channel, INTENTS[r.intent].purpose, r.priority, now, r.id)
            for r in rows
        ]
        with self.engine.connect() as conn:
            facts = read_facts(conn, requests, self.settings)
        # the batch's own rows are being decided, not yet committed to: each counts once
        # allowed (decide_many goes by priority), so a higher priority row of the batch can
        # take the place of a lower one
        ours = {r.id for r in rows}
        facts = {
            contact: replace(f, messages=tuple(m for m in f.messages if m.id not in ours))
            for contact, f in facts.items()
        }
        decisions = decide_many(facts, requests, self.settings)
        allowed: list[Claimed] = []
        with self._writing() as conn:
            for r, d in zip(rows, decisions, strict=True):
                if d.action == "block":
                    if self._set(
                        conn, r, status="blocked", reason=d.reason, attempts=r.attempts - 1
                    ):
                        summary.blocked += 1
                        self._count(d.reason)
                elif d.action == "defer":
                    assert d.until is not None
                    if self._set(
                        conn,
                        r,
                        status="queued",
                        reason=d.reason,
                        due_at=d.until,
                        claimed_at=None,
                        attempts=r.attempts - 1,
                    ):
                        summary.deferred += 1
                        self._count(d.reason)
                else:
                    allowed.append(r)
                    apply_bumps(conn, d)
        self._done += len(rows) - len(allowed) + len(exhausted)
        self._tick()
        if not allowed:
            return []
        people = self._people(sorted({r.contact_id for r in allowed}))
        addressed = self._addresses(allowed, people)
        blocked = {m: reason for m, reason in addressed.items() if reason.startswith("!")}
        if blocked:
            with self._writing() as conn:
                for r in allowed:
                    if r.id in blocked and self._set(
                        conn, r, status="blocked", reason=blocked[r.id][1:], attempts=r.attempts - 1
                    ):
                        summary.blocked += 1
                        self._count(blocked[r.id][1:])
            self._done += len(blocked)
            self._tick()
        allowed = [r for r in allowed if r.id not in blocked]
        contexts = self.contexts.build(allowed, people, now)
        jobs: list[Job] = []
        for r in allowed:
            context = contexts[r.id]
            if isinstance(context, str):
                if self._finish(r, status="failed", reason=context):
                    self._outcome_event(Outcome(r, "failed", context, at=now))
                    summary.failed += 1
                self._done += 1
                continue
            self._preload(r)
            jobs.append(Job(r, people[r.contact_id], addressed[r.id], context))
        for r in allowed:
            self._customers[r.contact_id] = people[r.contact_id].customer_id
        self._tick()
        return jobs

    def _preload(self, r: Claimed) -> None:
        """Load the copy and layouts in this thread (a broken override stops the run here,
        before any message of the batch is sent)."""
        self.renderer.variant(r.intent, r.variant, r.language)
        self.renderer.layout.html(r.variant, r.language)
        self.renderer.layout.text(r.language)

    def _people(self, ids: Sequence[int]) -> dict[int, Person]:
        found: dict[int, Person] = {}
        with self.engine.connect() as conn:
            for part in chunks(ids):
                for c in conn.execute(
                    select(
                        contacts.c.id,
                        contacts.c.customer_id,
                        contacts.c.email,
                        contacts.c.phone,
                        contacts.c.country,
                        contacts.c.first_name,
                        contacts.c.timezone,
                    ).where(contacts.c.id.in_(part))
                ):
                    found[c.id] = Person(
                        c.id, c.customer_id, c.email, c.phone, c.country, c.first_name, c.timezone
                    )
        return found

    def _addresses(self, rows: Sequence[Claimed], people: Mapping[int, Person]) -> dict[int, str]:
        """The address of each row (by outbox id), or "!" and why it cannot be sent to."""
        answer: dict[int, str] = {}
        endpoints: dict[int, str] = {}
        push = sorted({r.contact_id for r in rows if r.channel == "push"})
        if push:
            with self.engine.connect() as conn:
                for part in chunks(push):
                    for s in conn.execute(
                        select(push_subscriptions.c.contact_id, push_subscriptions.c.endpoint)
                        .where(
                            push_subscriptions.c.contact_id.in_(part),
                            push_subscriptions.c.revoked_at.is_(None),
                        )
                        .order_by(push_subscriptions.c.id.desc())
                    ):
                        endpoints.setdefault(s.contact_id, s.endpoint)
        for r in rows:
            person = people.get(r.contact_id)
            to: str | None = None
            if person is None:
                to = None
            elif r.channel == "email":
                to = (person.email or "").strip() or None
            elif r.channel == "sms":
                to = e164(person.phone, person.country) if person.phone else None
            elif r.channel == "push":
                to = str(r.payload.get("endpoint") or "") or endpoints.get(r.contact_id)
            answer[r.id] = to if to else f"!{NO_ADDRESS}"
        by_channel: dict[str, dict[str, list[int]]] = {}
        for r in rows:
            to = answer[r.id]
            if not to.startswith("!"):
                key = normalise_address(r.channel, to)
                by_channel.setdefault(r.channel, {}).setdefault(key, []).append(r.id)
        with self.engine.connect() as conn:
            for ch, owners in by_channel.items():
                for addresses in chunks(sorted(owners)):
                    for s in conn.execute(
                        select(suppressions_table.c.address, suppressions_table.c.reason).where(
                            suppressions_table.c.channel == ch,
                            suppressions_table.c.address.in_(addresses),
                        )
                    ):
                        for message_id in owners[s.address]:
                            answer[message_id] = f"!suppressed:{s.reason}"
        return answer

    # sending (in the worker threads) ---------------------------------------------------

    def _channel(self, name: str) -> Channel:
        with self._lock:
            found = self._given.get(name) or self._opened.get(name)
            if found is not None:
                return found
            if name == "email":
                from reengage.channels.email import email_channel

                found = email_channel(self.settings, self.clock)
            elif name == "sms":
                from reengage.channels.sms import TwilioSMS

                found = TwilioSMS.from_settings(self.settings)
            elif name == "push":
                from reengage.channels.push import PushChannel

                found = PushChannel.from_settings(self.settings, self.engine, self.clock)
            else:
                raise ReengageError(f"reengage cannot deliver on {name!r}")
            self._opened[name] = found
            return found

    def _deliver(self, job: Job) -> Outcome:
        row = job.row
        now = self.clock.now()
        down = self._down.get(row.channel)
        if down is not None:
            return self._put_back(row, down, now + RETRY_FIRST)
        if now - row.claimed_at > self.lease / 2:
            return self._put_back(row, "lease", now)
        try:
            channel = self._channel(row.channel)
        except ReengageError as exc:
            reason = f"{CHANNEL_UNAVAILABLE}: {_reason(exc)}"[:500]
            with self._lock:
                self._down.setdefault(row.channel, reason)
            return self._put_back(row, reason, now + RETRY_FIRST)
        try:
            message, subject = self._outgoing(job)
        except Exception as exc:  # a template that fails on this contact's data
            reason = f"render: {type(exc).__name__}"
            log.error("outbox %s could not be rendered: %s", row.id, type(exc).__name__)
            return self._end(row, "failed", reason, now)
        try:
            receipt: Receipt = channel.send(message)
        except TemporaryFailure as exc:
            return self._temporary(row, exc)
        except PermanentFailure as exc:
            return self._permanent(row, job, exc)
        except ValueError as exc:  # the channel could not build it (a bad header in the payload)
            log.error("outbox %s could not be built: %s", row.id, exc)
            return self._end(row, "failed", f"invalid message: {_reason(exc)}", now)
        with self._lock:
            self._failures[row.channel] = 0
        sent_at = self.clock.now()
        provider = (receipt.provider_id or "")[:200] or None
        if not self._mark_sent(row, sent_at, provider, (subject or "")[:500] or None):
            log.warning("outbox %s was claimed by another worker while being sent", row.id)
            return Outcome(row, "lost", at=sent_at)
        return Outcome(row, "sent", provider_id=provider, at=sent_at)

    def _outgoing(self, job: Job) -> tuple[Outgoing, str | None]:
        row, person = job.row, job.person
        settings = self.settings
        mid, cid = row.id, person.id
        track: Callable[[str], str] | None = None
        if row.channel != "sms":

            def track(url: str) -> str:
                if not self._trackable(url):
                    return url
                # what `web.links.click_url` makes, without checking the URL again
                token = sign(self.secret, "click", {"c": cid, "m": mid, "u": url})
                return f"{self._clicks}{token}"

        cta = row.payload.get("cta_url")
        links = Links(
            unsubscribe=unsubscribe_url(settings, mid, cid),
            preferences=preferences_url(settings, mid, cid),
            cta=str(cta) if cta else None,
            track=track,
        )
        rendered = self.renderer.render(row.intent, row.variant, row.language, job.context, links)
        purpose = INTENTS[row.intent].purpose
        if row.channel == "email":
            headers = {
                "Feedback-ID": ":".join(
                    (
                        _header_token(row.campaign or row.journey or "direct"),
                        row.intent,
                        "reengage",
                    )
                )
            }
            extra = row.payload.get("headers")
            if isinstance(extra, dict):
                headers.update({str(k): str(v) for k, v in extra.items()})
            html = _with_pixel(rendered, open_url(settings, mid, cid))
            return (
                Outgoing(
                    mid,
                    "email",
                    job.to,
                    subject=rendered.subject,
                    text=rendered.text,
                    html=html,
                    headers=headers,
                    data={"contact_id": cid, "purpose": purpose},
                ),
                rendered.subject,
            )
        if row.channel == "sms":
            return (
                Outgoing(
                    mid,
                    "sms",
                    job.to,
                    text=rendered.sms_with_link,
                    data={
                        "contact_id": cid,
                        "purpose": purpose,
                        "language": row.language,
                        "country": person.country,
                    },
                ),
                None,
            )
        return (
            Outgoing(
                mid,
                row.channel,
                job.to,
                subject=rendered.push_title,
                text=rendered.push_body,
                data={"contact_id": cid, "purpose": purpose, "url": rendered.url},
            ),
            rendered.push_title,
        )

    def _trackable(self, url: str) -> bool:
        """Whether a link is one to wrap for click tracking: a web address (the same URLs
        recur in every message: products, the cart, the shop), not one of our own links."""
        found = self._urls.get(url)
        if found is None:
            found = is_web_url(url) and not url.startswith(self._own_links)
            if len(self._urls) < 100_000:
                self._urls[url] = found
        return found

    def _temporary(self, row: Claimed, exc: TemporaryFailure) -> Outcome:
        reason = _reason(exc)
        with self._lock:
            self._failures[row.channel] += 1
            if reason.startswith("smtp_url") or self._failures[row.channel] >= DOWN_AFTER:
                self._down.setdefault(row.channel, f"{CHANNEL_UNAVAILABLE}: {reason}"[:500])
        now = self.clock.now()
        if row.attempts >= self.max_attempts:
            return self._end(row, "failed", f"gave up after {row.attempts} attempts: {reason}", now)
        due = now + retry_delay(row.attempts, row.id)
        if not self._finish(row, status="queued", reason=reason, due_at=due, claimed_at=None):
            return Outcome(row, "lost", at=now)
        return Outcome(row, "retry", reason, at=now)

    def _permanent(self, row: Claimed, job: Job, exc: PermanentFailure) -> Outcome:
        from reengage.suppressions import suppress

        now = self.clock.now()
        reason = _reason(exc)
        suppressed = False
        with self._writing() as conn:
            # the row first: its UPDATE takes SQLite's write lock before suppress() reads
            if not self._set(conn, row, status="failed", reason=reason):
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
        if not self._finish(row, status=status, reason=reason):
            return Outcome(row, "lost", at=now)
        return Outcome(row, status, reason, at=now)

    def _put_back(self, row: Claimed, reason: str, due: datetime) -> Outcome:
        """Not tried: back to the queue as it was (its attempt not counted)."""
        if not self._finish(
            row,
            status="queued",
            reason=reason,
            due_at=due,
            claimed_at=None,
            attempts=row.attempts - 1,
        ):
            return Outcome(row, "lost")
        return Outcome(row, "released", reason)

    # writing ----------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction. On SQLite, this process's writers take turns on a lock
        first: waiting on SQLite's own lock means sleeping in its busy handler, milliseconds
        at a time, while the lock may have been free long before."""
        with self._turns, self.engine.begin() as conn:
            yield conn

    def _claim(self, *args: Any, **kwargs: Any) -> list[Claimed]:
        with self._turns:
            return claim(*args, **kwargs)

    def _set(self, conn: Connection, row: Claimed, **values: Any) -> bool:
        """Update a claimed row, if this worker still holds it (the fence)."""
        result = conn.execute(
            messages.update()
            .where(
                messages.c.id == row.id,
                messages.c.status == "sending",
                messages.c.claimed_at == row.claimed_at,
            )
            .values(**values)
        )
        return bool(result.rowcount)

    def _mark_sent(
        self, row: Claimed, sent_at: datetime, provider: str | None, subject: str | None
    ) -> bool:
        """The hot path, on the thread's own driver connection: SQLAlchemy's statement and
        transaction machinery would cost ten times the UPDATE itself."""
        conn = self._raw()
        at: datetime | str
        fence: datetime | str
        if self.engine.dialect.name == "sqlite":
            sql = _MARK_SENT.replace("%s", "?")
            at, fence = _sqlite_time(sent_at), _sqlite_time(row.claimed_at)
        else:
            sql, at, fence = _MARK_SENT, sent_at, row.claimed_at
        with self._turns:
            cursor = conn.cursor()
            try:
                cursor.execute(sql, (at, provider, subject, row.id, fence))
                changed = cursor.rowcount
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
        return changed == 1

    def _raw(self) -> Any:
        found = getattr(self._local, "connection", None)
        if found is None:
            found = self._local.connection = self.engine.raw_connection()
            with self._lock:
                self._raws.append(found)
        return found

    def _finish(self, row: Claimed, **values: Any) -> bool:
        with self._writing() as conn:
            return self._set(conn, row, **values)

    def _release(self, rows: Sequence[Claimed], reason: str | None, due: datetime) -> None:
        if not rows:
            return
        with self._writing() as conn:
            for r in rows:
                if self._set(
                    conn,
                    r,
                    status="queued",
                    reason=reason,
                    due_at=due,
                    claimed_at=None,
                    attempts=r.attempts - 1,
                ):
                    self.summary.released += 1

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
        self._outcome_event(outcome)
        self._done += 1
        self._tick()

    def _outcome_event(self, outcome: Outcome) -> None:
        if outcome.status not in ("sent", "failed"):
            return
        row = outcome.row
        properties: dict[str, Any] = {
            "intent": row.intent,
            "variant": row.variant,
            "style": row.style,
            "language": row.language,
            "journey": row.journey,
            "step": row.step,
            "campaign": row.campaign,
            "attempt": row.attempts,
        }
        if outcome.status == "sent":
            properties["provider_id"] = outcome.provider_id
        else:
            properties["reason"] = outcome.reason
        digest = hashlib.sha256(f"{outcome.status}\x1f{row.id}".encode()).hexdigest()[:32]
        self._events.append(
            {
                "event_id": f"o-{digest}",
                "message_id": str(row.id),
                "customer_id": self._customers.get(row.contact_id),
                "channel": row.channel,
                "type": outcome.status,
                "occurred_at": outcome.at or self.clock.now(),
                "properties": json.dumps(properties, sort_keys=True),
            }
        )

    def _flush_events(self) -> None:
        """Write the buffered events; a store that refuses them is logged, not raised: the
        rows already say what happened, the events are the analytics' copy."""
        events, self._events = self._events, []
        if not events:
            return
        try:
            missing = [e for e in events if e["customer_id"] is None]
            if missing:
                self._customer_ids(missing)
            table = pa.Table.from_pylist(events, schema=_EVENT_SCHEMA)
            append(self.settings.facts_path, MESSAGE_EVENTS, table, ingested_at=self.clock.now())
        except Exception as exc:
            log.error("could not write %d message events: %r", len(events), exc)

    def _customer_ids(self, events: list[dict[str, Any]]) -> None:
        ids = sorted({int(e["message_id"]) for e in events})
        found: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for part in chunks(ids):
                for m in conn.execute(
                    select(messages.c.id, contacts.c.customer_id)
                    .join(contacts, contacts.c.id == messages.c.contact_id)
                    .where(messages.c.id.in_(part))
                ):
                    found[str(m.id)] = m.customer_id
        for e in events:
            e["customer_id"] = found.get(e["message_id"])


_MARK_SENT = (
    "UPDATE messages SET status = 'sent', reason = NULL, sent_at = %s, provider_id = %s, "
    "subject = %s WHERE id = %s AND status = 'sending' AND claimed_at = %s"
)


def _sqlite_time(moment: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect writes it (so that equality holds)."""
    return as_utc(moment).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _with_pixel(rendered: Rendered, url: str) -> str:
    """The HTML with the open pixel at the end of the body."""
    pixel = str(
        markupsafe.Markup(
            '<img src="{}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;" />'
        ).format(url)
    )
    html = rendered.html
    at = html.rfind("</body>")
    return html + pixel if at < 0 else html[:at] + pixel + html[at:]


def deliver_due(
    home: Home,
    engine: Engine,
    clock: Clock,
    *,
    limit: int | None = None,
    channel: str | None = None,
    progress: Progress | None = None,
    threads: int = THREADS,
    batch_size: int = BATCH,
    lease: timedelta = LEASE,
    max_attempts: int = MAX_ATTEMPTS,
    channels: Mapping[str, Channel] | None = None,
    facts: Any = None,
) -> DeliverySummary:
    """Deliver the outbox rows due now (at most `limit`; one `channel` only if given).

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
        progress=progress,
        threads=threads,
        batch_size=batch_size,
        lease=lease,
        max_attempts=max_attempts,
        channels=channels,
        facts=facts,
    ).run()
