"""Response time on the messaging apps: how long people wait for the shop's answer.

A *turn* is the first message the person sends after the shop last wrote (or the first of the
conversation): messages they add before an answer wait together and count once. Its response
time runs from that message to the shop's next message (a reply or a template). Turns that
began in [since, until) count; an answer may come after `until`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from reengage.clock import as_utc
from reengage.state.schema import CONVERSATION_STATUSES, conversation_messages, conversations

HOUR = timedelta(hours=1)


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return values[max(0, math.ceil(share * len(values)) - 1)]


def conversation_kpis(engine: Engine, since: datetime, until: datetime) -> dict[str, Any]:
    """{"since", "until", "turns", "answered", "median_response_seconds",
    "p90_response_seconds", "answered_within_1h_share", "open", "waiting", "solved"}: the
    times over answered turns, the share within an hour over all turns (an unanswered turn
    is not answered within the hour); the status counts are the conversations' as of now."""
    since, until = as_utc(since), as_utc(until)
    m = conversation_messages
    with engine.connect() as conn:
        touched = (
            select(m.c.conversation_id)
            .where(m.c.direction == "in", m.c.at >= since, m.c.at < until)
            .distinct()
        )
        rows = conn.execute(
            select(m.c.conversation_id, m.c.direction, m.c.at)
            .where(m.c.conversation_id.in_(touched))
            .order_by(m.c.conversation_id, m.c.at, m.c.id)
        ).all()
        statuses: dict[str, int] = dict(
            conn.execute(
                select(conversations.c.status, func.count()).group_by(conversations.c.status)
            ).all()
        )
    by_conversation: dict[int, list[tuple[str, datetime]]] = defaultdict(list)
    for r in rows:
        by_conversation[r.conversation_id].append((r.direction, as_utc(r.at)))
    waits: list[float] = []
    turns = 0
    for messages in by_conversation.values():
        waiting_since: datetime | None = None
        for direction, at in messages:
            if direction == "in":
                if waiting_since is None:
                    waiting_since = at
                    if since <= at < until:
                        turns += 1
            elif waiting_since is not None:
                if since <= waiting_since < until:
                    waits.append((at - waiting_since).total_seconds())
                waiting_since = None
    waits.sort()
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "turns": turns,
        "answered": len(waits),
        "median_response_seconds": statistics.median(waits) if waits else None,
        "p90_response_seconds": _percentile(waits, 0.9) if waits else None,
        "answered_within_1h_share": (
            sum(w <= HOUR.total_seconds() for w in waits) / turns if turns else None
        ),
        **{status: int(statuses.get(status, 0)) for status in CONVERSATION_STATUSES},
    }
