"""The contact policy again at send time, for a claimed batch: consents, suppressions and
counts may have changed since the rows were queued. Blocked rows are marked `blocked`,
deferred ones go back to the queue at their new time (their attempt not counted)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import Engine

from reengage.channels.policy import SendRequest, apply_bumps, decide_many, read_facts
from reengage.config import Settings
from reengage.messages.claims import Claimed
from reengage.messages.intents import INTENTS
from reengage.messages.marks import Marks


def screen(
    engine: Engine, settings: Settings, marks: Marks, rows: list[Claimed], now: datetime
) -> tuple[list[Claimed], list[tuple[str, str | None]]]:
    """The rows the policy allows, and (`blocked` or `deferred`, reason) of each row it held
    back and this worker marked so."""
    requests = [
        SendRequest(r.contact_id, r.channel, INTENTS[r.intent].purpose, r.priority, now, r.id)
        for r in rows
    ]
    with engine.connect() as conn:
        facts = read_facts(conn, requests, settings)
    # the batch's own rows are being decided, not yet committed to: each counts once allowed
    # (decide_many goes by priority), so a higher priority row of the batch can take the
    # place of a lower one
    ours = {r.id for r in rows}
    facts = {
        contact: replace(f, messages=tuple(m for m in f.messages if m.id not in ours))
        for contact, f in facts.items()
    }
    decisions = decide_many(facts, requests, settings)
    allowed: list[Claimed] = []
    held: list[tuple[str, str | None]] = []
    with marks.writing() as conn:
        for r, d in zip(rows, decisions, strict=True):
            if d.action == "block":
                if marks.set(conn, r, status="blocked", reason=d.reason, attempts=r.attempts - 1):
                    held.append(("blocked", d.reason))
            elif d.action == "defer":
                assert d.until is not None
                if marks.set(
                    conn,
                    r,
                    status="queued",
                    reason=d.reason,
                    due_at=d.until,
                    claimed_at=None,
                    attempts=r.attempts - 1,
                ):
                    held.append(("deferred", d.reason))
            else:
                allowed.append(r)
                apply_bumps(conn, d)
    return allowed, held
