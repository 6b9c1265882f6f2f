"""Segments (with their sizes and members) and journeys (with where their contacts are)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from reengage.audience.segments import list_segments
from reengage.journeys import catalogue
from reengage.state.schema import contacts, enrollments, segment_members, segments
from reengage.web.api.common import (
    AUTH_RESPONSES,
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

SegmentName = Annotated[
    str,
    Path(max_length=100, pattern="^[A-Za-z0-9][A-Za-z0-9_-]*$", description="The segment's name."),
]


class Segment(BaseModel):
    name: str
    description: str | None
    rule: str | None
    file: str | None = Field(description="Its file in the home; null when only in state.")
    size: int | None = Field(description="Members at the last refresh; null if never run.")
    refreshed_at: datetime | None
    error: str | None = Field(None, description="Why its file cannot be used, if it cannot.")


class Segments(BaseModel):
    items: list[Segment]


class Member(BaseModel):
    contact_id: int
    customer_id: str | None
    entered_at: datetime


class MemberPage(BaseModel):
    items: list[Member]
    next_cursor: str | None


class Journey(BaseModel):
    name: str
    enabled: bool
    source: str = Field(description="home (a file in the home) or builtin.")
    description: str | None
    steps: int | None
    error: str | None = Field(description="Why its file cannot be used, if it cannot.")
    enrollments: dict[str, int] = Field(description="Enrollments by status.")
    at_step: dict[str, int] = Field(description="Active enrollments by the step they are at.")


class Journeys(BaseModel):
    items: list[Journey]


@router.get("/segments", response_model=Segments, tags=["segments"], summary="List segments")
def get_segments(ctx: Context, _: Reader) -> dict[str, Any]:
    """Every segment, defined in a file of the home or refreshed in state, with its size."""
    return {"items": list_segments(home(ctx), ctx.engine)}


@router.get(
    "/segments/{name}/members",
    response_model=MemberPage,
    responses=NOT_FOUND,
    tags=["segments"],
    summary="A segment's members",
)
def segment_members_page(
    name: SegmentName, ctx: Context, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """The members as of the segment's last refresh, by contact id."""
    after = decode_cursor(cursor, "members", (int,))
    m = segment_members
    with ctx.engine.connect() as conn:
        stored = conn.execute(select(segments.c.name).where(segments.c.name == name)).first()
        if stored is None and name not in {s["name"] for s in list_segments(home(ctx), ctx.engine)}:
            raise not_found("segment with this name")
        query = (
            select(m.c.contact_id, m.c.entered_at, contacts.c.customer_id)
            .join(contacts, contacts.c.id == m.c.contact_id)
            .where(m.c.segment == name)
            .order_by(m.c.contact_id)
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(m.c.contact_id > after[0])
        rows = conn.execute(query).all()
    items = [
        {"contact_id": r.contact_id, "customer_id": r.customer_id, "entered_at": iso(r.entered_at)}
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return {
        "items": items,
        "next_cursor": encode_cursor("members", items[-1]["contact_id"]) if more else None,
    }


@router.get("/journeys", response_model=Journeys, tags=["journeys"], summary="List journeys")
def get_journeys(ctx: Context, _: Reader) -> dict[str, Any]:
    """Every journey (the home's and the built-ins) with its enrollments by status and its
    active contacts by step."""
    e = enrollments
    with ctx.engine.connect() as conn:
        by_status = conn.execute(
            select(e.c.journey, e.c.status, func.count()).group_by(e.c.journey, e.c.status)
        ).all()
        by_step = conn.execute(
            select(e.c.journey, e.c.step, func.count())
            .where(e.c.status == "active", e.c.step.is_not(None))
            .group_by(e.c.journey, e.c.step)
        ).all()
    statuses: dict[str, dict[str, int]] = {}
    for journey, status, count in by_status:
        statuses.setdefault(journey, {})[status] = int(count)
    steps: dict[str, dict[str, int]] = {}
    for journey, step, count in by_step:
        steps.setdefault(journey, {})[step] = int(count)
    items = []
    for entry in catalogue(home(ctx)):
        journey = entry.journey
        items.append(
            {
                "name": entry.name,
                "enabled": entry.enabled,
                "source": entry.source,
                "description": journey.description if journey else None,
                "steps": sum(1 for _ in journey.walk()) if journey else None,
                "error": str(entry.error) if entry.error else None,
                "enrollments": statuses.get(entry.name, {}),
                "at_step": steps.get(entry.name, {}),
            }
        )
    return {"items": items}
