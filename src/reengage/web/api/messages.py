"""The outbox (every message decided, with what became of it) and the reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import func, select

from reengage.campaigns import lifecycle
from reengage.campaigns.results import progress, results
from reengage.errors import InputError
from reengage.home import status
from reengage.state.schema import messages
from reengage.web.api.common import (
    AUTH_RESPONSES,
    MAX_ID,
    NOT_FOUND,
    Context,
    Cursor,
    Limit,
    Reader,
    decode_cursor,
    encode_cursor,
    home,
    iso,
    not_found,
)

router = APIRouter(responses=AUTH_RESPONSES)

Name = Annotated[str, StringConstraints(max_length=100, pattern="^[A-Za-z0-9][A-Za-z0-9_-]*$")]

Status = Literal[
    "queued", "sending", "sent", "failed", "blocked", "deferred", "paused", "cancelled"
]
Channel = Literal["email", "sms", "push", "whatsapp", "ads", "onsite"]
COUNTS = (
    "contacts",
    "identities",
    "consents",
    "products",
    "imports",
    "orders",
    "order_lines",
    "events",
    "message_events",
)


class Message(BaseModel):
    id: int
    contact_id: int
    channel: str
    intent: str
    status: str
    reason: str | None = Field(description="Why it was blocked, deferred or failed.")
    journey: str | None
    step: str | None
    campaign: str | None
    variant: str | None
    subject: str | None
    due_at: datetime
    created_at: datetime
    sent_at: datetime | None
    attempts: int


class MessagePage(BaseModel):
    items: list[Message]
    next_cursor: str | None


class MessageCounts(BaseModel):
    by_status: dict[str, int]
    by_channel: dict[str, int]


class CampaignProgress(BaseModel):
    name: str
    status: str
    messages: dict[str, int] = Field(description="Its messages by status, `total`, `pending`.")


class Summary(BaseModel):
    counts: dict[str, int] = Field(description="What the home holds (as `reengage status`).")
    messages: MessageCounts
    campaigns: list[CampaignProgress]


@router.get("/messages", response_model=MessagePage, tags=["messages"], summary="List messages")
def list_messages(
    ctx: Context,
    _: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
    contact_id: int | None = Query(None, ge=1, le=MAX_ID, description="Only this contact's."),
    status: Status | None = Query(None, description="Only messages in this status."),
    channel: Channel | None = Query(None, description="Only messages on this channel."),
    campaign: Name | None = Query(None, description="Only this campaign's."),
    journey: Name | None = Query(None, description="Only this journey's."),
) -> dict[str, Any]:
    """Messages, newest first."""
    after = decode_cursor(cursor, "messages", (int,))
    m = messages
    query = (
        select(
            m.c.id,
            m.c.contact_id,
            m.c.channel,
            m.c.intent,
            m.c.status,
            m.c.reason,
            m.c.journey,
            m.c.step,
            m.c.campaign,
            m.c.variant,
            m.c.subject,
            m.c.due_at,
            m.c.created_at,
            m.c.sent_at,
            m.c.attempts,
        )
        .order_by(m.c.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(m.c.id < after[0])
    for column, value in (
        (m.c.contact_id, contact_id),
        (m.c.status, status),
        (m.c.channel, channel),
        (m.c.campaign, campaign),
        (m.c.journey, journey),
    ):
        if value is not None:
            query = query.where(column == value)
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    items = []
    for r in rows[:limit]:
        item = dict(r._mapping)
        for name in ("due_at", "created_at", "sent_at"):
            item[name] = iso(item[name])
        items.append(item)
    more = len(rows) > limit
    return {
        "items": items,
        "next_cursor": encode_cursor("messages", items[-1]["id"]) if more else None,
    }


@router.get("/reports/summary", response_model=Summary, tags=["reports"], summary="Summary")
def summary(ctx: Context, _: Reader) -> dict[str, Any]:
    """Counts of what the home holds, messages by status and by channel, and each
    campaign's progress."""
    held = status(home(ctx), ctx.engine)
    m = messages
    with ctx.engine.connect() as conn:
        by_status = conn.execute(select(m.c.status, func.count()).group_by(m.c.status)).all()
        by_channel = conn.execute(select(m.c.channel, func.count()).group_by(m.c.channel)).all()
    campaigns = [
        {"name": row.name, "status": row.status, "messages": progress(ctx.engine, row.name)}
        for row in lifecycle.rows(ctx.engine)
    ]
    return {
        "counts": {n: v for n in COUNTS if isinstance(v := held.get(n), int)},
        "messages": {
            "by_status": {s: int(n) for s, n in by_status},
            "by_channel": {c: int(n) for c, n in by_channel},
        },
        "campaigns": campaigns,
    }


@router.get(
    "/reports/campaigns/{name}",
    response_model=dict[str, Any],
    responses=NOT_FOUND,
    tags=["reports"],
    summary="A campaign's results",
)
def campaign_results(
    name: Annotated[Name, Path(description="The campaign's name.")],
    ctx: Context,
    _: Reader,
) -> dict[str, Any]:
    """As `reengage campaigns show --json`: progress, engagement, lift against the holdout
    and the test's decision."""
    with ctx.engine.connect() as conn:
        try:
            lifecycle.get(conn, name)
        except InputError:
            raise not_found("campaign with this name") from None
    return results(home(ctx), ctx.engine, name, ctx.clock.now())
