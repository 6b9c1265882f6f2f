"""Privacy (admin keys only): export everything held on a person, or erase them everywhere
(`reengage.privacy`)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from reengage.channels.ad_platforms import AudienceSyncError
from reengage.privacy import erase_person, erasure_log, export_person
from reengage.web.api.common import (
    AUTH_RESPONSES,
    NOT_FOUND,
    Admin,
    ContactId,
    Context,
    Problem,
    not_found,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["privacy"], responses=AUTH_RESPONSES)

Rows = list[dict[str, Any]]


class Facts(BaseModel):
    events: Rows
    orders: Rows
    message_events: Rows


class Rejected(BaseModel):
    file: str = Field(description="The rejects file of an import (its name).")
    row: dict[str, str] = Field(description="The rejected row, column by column.")


class Export(BaseModel):
    """Every row held on the person, table by table."""

    contact: dict[str, Any]
    identities: Rows
    consents: Rows
    scores: Rows
    messages: Rows
    enrollments: Rows
    enrollment_steps: Rows
    offers: Rows
    push_subscriptions: Rows
    audience_members: Rows
    segment_members: Rows
    segment_transitions: Rows
    campaign_recipients: Rows
    suppressions: Rows
    facts: Facts
    rejects: list[Rejected]


class Erased(BaseModel):
    contact_id: int
    removed: dict[str, int] = Field(description="What went, counted by place (as logged).")


class Erasure(BaseModel):
    id: int
    contact_id: int
    requested_by: str
    erased_at: datetime
    removed: dict[str, int]


class Erasures(BaseModel):
    items: list[Erasure]


@router.get(
    "/privacy/contacts/{contact_id}/export",
    response_model=Export,
    responses=NOT_FOUND,
    summary="Export a person's data",
)
def export(contact_id: ContactId, ctx: Context, _: Admin) -> dict[str, Any]:
    """Everything held on the person: their state rows, the facts that name them, the
    rejected import rows that carry them."""
    found = export_person(ctx.settings, ctx.engine, contact_id)
    if found is None:
        raise not_found("contact with this id")
    return found


@router.post(
    "/privacy/contacts/{contact_id}/erase",
    response_model=Erased,
    responses={
        **NOT_FOUND,
        502: {"model": Problem, "description": "An ad platform refused: nothing was erased."},
    },
    summary="Erase a person everywhere",
)
def erase(
    contact_id: ContactId,
    ctx: Context,
    holder: Admin,
    suppress: bool = Query(
        True,
        description="Keep their email and phone as `erased` suppressions (attached to nobody) "
        "so a later import of them is never messaged; false removes those too.",
    ),
) -> dict[str, Any]:
    """Remove the person from state, facts, rejects files and ad audiences, and log the
    erasure with counts only. A contact erased already (or never known) is a 404."""
    try:
        removed = erase_person(
            ctx.settings,
            ctx.engine,
            ctx.clock,
            contact_id,
            requested_by=f"api:{holder.prefix}",
            suppress_addresses=suppress,
        )
    except AudienceSyncError as exc:
        log.warning("erasure of contact %d stopped: an ad platform refused", contact_id)
        raise HTTPException(502, f"an ad platform refused, nothing was erased: {exc}") from None
    if removed is None:
        raise not_found("contact with this id (erased already?)")
    return {"contact_id": contact_id, "removed": removed}


@router.get("/privacy/erasures", response_model=Erasures, summary="The erasure log")
def erasures(
    ctx: Context,
    _: Admin,
    limit: int = Query(100, ge=1, le=1000, description="How many, newest first."),
) -> dict[str, Any]:
    """The latest erasures: which contact id, who asked, when, and what went (counts)."""
    return {"items": erasure_log(ctx.engine, limit)}
