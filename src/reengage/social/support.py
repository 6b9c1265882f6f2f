"""Support's side of the conversations: who handles each (an assignee), where it stands
(open, waiting, solved), and the listings the CLI and the dashboard show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from reengage.clock import Clock, as_utc
from reengage.errors import InputError
from reengage.social.conversations import get_conversation, window_open
from reengage.state.schema import CONVERSATION_STATUSES, conversation_messages, conversations


def _as_dict(row: Any) -> dict[str, Any]:
    found = dict(row._mapping)
    for key, value in found.items():
        if isinstance(value, datetime):
            found[key] = as_utc(value).isoformat()
    return found


def assign(engine: Engine, clock: Clock, conversation_id: int, assignee: str | None) -> None:
    """Give the conversation to someone in support (an email), or to nobody (None)."""
    if assignee is not None and ("@" not in assignee or len(assignee) > 320):
        raise InputError("the assignee must be an email address")
    get_conversation(engine, conversation_id)
    with engine.begin() as conn:
        conn.execute(
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(assignee=assignee, updated_at=clock.now())
        )


def set_status(engine: Engine, clock: Clock, conversation_id: int, status: str) -> None:
    if status not in CONVERSATION_STATUSES:
        raise InputError(f"status {status!r}: one of {', '.join(CONVERSATION_STATUSES)}")
    get_conversation(engine, conversation_id)
    with engine.begin() as conn:
        conn.execute(
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(status=status, updated_at=clock.now())
        )


def list_conversations(engine: Engine, status: str | None = None) -> list[dict[str, Any]]:
    """Every conversation (of a status), most recently active first, with its message count."""
    counted = (
        select(
            conversation_messages.c.conversation_id,
            func.count().label("messages"),
        )
        .group_by(conversation_messages.c.conversation_id)
        .subquery()
    )
    query = (
        select(conversations, func.coalesce(counted.c.messages, 0).label("messages"))
        .outerjoin(counted, counted.c.conversation_id == conversations.c.id)
        .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
    )
    if status is not None:
        query = query.where(conversations.c.status == status)
    with engine.connect() as conn:
        return [_as_dict(r) for r in conn.execute(query)]


def show(engine: Engine, conversation_id: int, clock: Clock) -> dict[str, Any]:
    """The conversation, whether the window is open now, and its messages, oldest first."""
    conv = get_conversation(engine, conversation_id)
    with engine.connect() as conn:
        rows = conn.execute(
            select(conversation_messages)
            .where(conversation_messages.c.conversation_id == conversation_id)
            .order_by(conversation_messages.c.at, conversation_messages.c.id)
        ).all()
    found = _as_dict(conv)
    found["window_open"] = window_open(conv.last_inbound_at, clock.now())
    found["messages"] = [_as_dict(r) for r in rows]
    return found
