"""Contacts, their consents and their timeline."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Connection, select

from reengage.state.contacts import ConsentChange, record_consents, upsert_customers
from reengage.state.schema import consents, contacts, identities, scores
from reengage.web.api.common import (
    AUTH_RESPONSES,
    NOT_FOUND,
    ContactId,
    Context,
    Cursor,
    Id128,
    Instant,
    Limit,
    Problem,
    Reader,
    Text8,
    Text32,
    Text64,
    Text200,
    Text320,
    Writer,
    decode_cursor,
    encode_cursor,
    iso,
    not_found,
)

router = APIRouter(tags=["contacts"], responses=AUTH_RESPONSES)

EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")
Channel = Literal["email", "sms", "push", "whatsapp", "ads", "onsite"]
Purpose = Literal["marketing", "profiling", "transactional"]


class Contact(BaseModel):
    id: int
    customer_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    language: str | None
    country: str | None
    city: str | None
    timezone: str | None
    birthday: date | None
    origin: str
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any]


class Identity(BaseModel):
    kind: str
    value: str
    first_seen: datetime


class Consent(BaseModel):
    channel: Channel
    purpose: Purpose
    granted: bool
    source: str
    recorded_at: datetime


class Scores(BaseModel):
    """The contact's latest scores (`reengage score`); every feature is in `details`."""

    as_of: datetime
    lifecycle: str
    orders: int
    total_spent: float
    recency_days: float | None
    rfm_segment: str | None
    p_alive: float | None
    expected_purchases_90d: float | None
    clv: float | None
    style: str | None
    style_confidence: float | None


class ContactDetail(Contact):
    identities: list[Identity]
    consents: list[Consent] = Field(description="The current consent of each channel and purpose.")
    scores: Scores | None


class ContactPage(BaseModel):
    items: list[Contact]
    next_cursor: str | None


class ContactIn(BaseModel):
    """A customer of the shop, created or updated by customer id (as an import does): the
    fields given replace what is stored, the fields left out are kept."""

    customer_id: Id128
    email: Text320 | None = None
    phone: Text32 | None = None
    first_name: Text200 | None = None
    last_name: Text200 | None = None
    language: Text8 | None = None
    country: Text8 | None = Field(None, description="ISO 3166-1 alpha-2, such as IT.")
    city: Text200 | None = None
    timezone: Text64 | None = None
    birthday: date | None = None

    @field_validator("customer_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not EMAIL.fullmatch(value.strip()):
            raise ValueError("not an email address")
        return value.strip().lower()

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("an ISO 3166-1 alpha-2 code such as IT")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError("an IANA time zone such as Europe/Rome") from None
        return value

    @field_validator("birthday")
    @classmethod
    def _born(cls, value: date | None) -> date | None:
        if value is not None and not 1900 <= value.year <= 2100:
            raise ValueError("must be between 1900 and 2100")
        return value


class ConsentIn(BaseModel):
    channel: Channel
    purpose: Purpose = "marketing"
    granted: bool
    source: Text64 = "api"
    recorded_at: Instant | None = Field(None, description="When it was given; default now.")


class ConsentHistory(BaseModel):
    items: list[Consent] = Field(description="Every recorded change, oldest first.")


class ConsentResult(BaseModel):
    recorded: bool = Field(description="False when it changed nothing (not news).")
    current: list[Consent]


class TimelineItem(BaseModel):
    at: datetime
    kind: Literal["event", "order", "message", "message_event"]
    type: str
    detail: dict[str, Any]


class Timeline(BaseModel):
    items: list[TimelineItem]


def _contact(row: Any) -> dict[str, Any]:
    found = dict(row._mapping)
    found["created_at"] = iso(found["created_at"])
    found["updated_at"] = iso(found["updated_at"])
    found["attributes"] = found["attributes"] if isinstance(found["attributes"], dict) else {}
    return found


def _current_consents(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(consents)
        .where(consents.c.contact_id == contact_id)
        .order_by(consents.c.recorded_at, consents.c.id)
    ).all()
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        latest[(r.channel, r.purpose)] = _consent(r)
    return [latest[k] for k in sorted(latest)]


def _consent(r: Any) -> dict[str, Any]:
    return {
        "channel": r.channel,
        "purpose": r.purpose,
        "granted": bool(r.granted),
        "source": r.source,
        "recorded_at": iso(r.recorded_at),
    }


def _detail(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
    if row is None:
        return None
    found = _contact(row)
    found["identities"] = [
        {"kind": r.kind, "value": r.value, "first_seen": iso(r.first_seen)}
        for r in conn.execute(
            select(identities)
            .where(identities.c.contact_id == contact_id)
            .order_by(identities.c.id)
        )
    ]
    found["consents"] = _current_consents(conn, contact_id)
    latest = conn.execute(
        select(scores)
        .where(scores.c.contact_id == contact_id)
        .order_by(scores.c.as_of.desc())
        .limit(1)
    ).first()
    found["scores"] = None
    if latest is not None:
        found["scores"] = {name: getattr(latest, name) for name in Scores.model_fields}
        found["scores"]["as_of"] = iso(latest.as_of)
    return found


@router.get("/contacts", response_model=ContactPage, summary="List contacts")
def list_contacts(
    ctx: Context,
    _: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
    email: Text320 | None = Query(None, description="Only the contact with this email."),
    customer_id: Id128 | None = Query(None, description="Only this customer."),
) -> dict[str, Any]:
    """Contacts by id, a page at a time."""
    after = decode_cursor(cursor, "contacts", (int,))
    query = select(contacts).order_by(contacts.c.id).limit(limit + 1)
    if after is not None:
        query = query.where(contacts.c.id > after[0])
    if email is not None:
        owner = select(identities.c.contact_id).where(
            identities.c.kind == "email", identities.c.value == email.strip().lower()
        )
        query = query.where(contacts.c.id.in_(owner))
    if customer_id is not None:
        query = query.where(contacts.c.customer_id == customer_id)
    with ctx.engine.connect() as conn:
        rows = conn.execute(query).all()
    items = [_contact(r) for r in rows[:limit]]
    more = len(rows) > limit
    return {
        "items": items,
        "next_cursor": encode_cursor("contacts", items[-1]["id"]) if more else None,
    }


@router.get(
    "/contacts/{contact_id}",
    response_model=ContactDetail,
    responses=NOT_FOUND,
    summary="One contact",
)
def get_contact(contact_id: ContactId, ctx: Context, _: Reader) -> dict[str, Any]:
    """The contact with their identities, current consents and latest scores."""
    with ctx.engine.connect() as conn:
        found = _detail(conn, contact_id)
    if found is None:
        raise not_found("contact with this id")
    return found


@router.post(
    "/contacts",
    response_model=ContactDetail,
    status_code=200,
    responses={
        201: {"model": ContactDetail, "description": "Created."},
        409: {"model": Problem, "description": "The email belongs to another contact."},
    },
    summary="Create or update a customer",
)
def put_contact(body: ContactIn, response: Response, ctx: Context, _: Writer) -> dict[str, Any]:
    """Create the customer, or update the one with this customer id (200)."""
    row = body.model_dump(exclude_unset=True) | {"__line": 0}
    now = ctx.clock.now()
    with ctx.engine.begin() as conn:
        done = upsert_customers(conn, [row], origin="api", now=now)
        if done.rejected:
            raise HTTPException(409, done.rejected[0][1])
        contact_id = done.contact_ids[body.customer_id]
        found = _detail(conn, contact_id)
    assert found is not None
    if done.inserted:
        response.status_code = 201
    return found


def _known(conn: Connection, contact_id: int) -> None:
    if conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).first() is None:
        raise not_found("contact with this id")


@router.get(
    "/contacts/{contact_id}/consents",
    response_model=ConsentHistory,
    responses=NOT_FOUND,
    tags=["consents"],
    summary="A contact's consent history",
)
def consent_history(contact_id: ContactId, ctx: Context, _: Reader) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        _known(conn, contact_id)
        rows = conn.execute(
            select(consents)
            .where(consents.c.contact_id == contact_id)
            .order_by(consents.c.recorded_at, consents.c.id)
        ).all()
    return {"items": [_consent(r) for r in rows]}


@router.post(
    "/contacts/{contact_id}/consents",
    response_model=ConsentResult,
    responses=NOT_FOUND,
    tags=["consents"],
    summary="Record a consent change",
)
def consent_change(
    contact_id: ContactId, body: ConsentIn, ctx: Context, _: Writer
) -> dict[str, Any]:
    """Append a change to the history when it is news: later than the latest recorded for
    the channel and purpose, and different from it."""
    at = body.recorded_at or ctx.clock.now()
    with ctx.engine.begin() as conn:
        _known(conn, contact_id)
        change = ConsentChange(
            contact_id, body.channel, body.purpose, body.granted, body.source, at
        )
        added = record_consents(conn, [change])
        current = _current_consents(conn, contact_id)
    return {"recorded": bool(added), "current": current}


@router.get(
    "/contacts/{contact_id}/timeline",
    response_model=Timeline,
    responses=NOT_FOUND,
    summary="A contact's timeline",
)
def contact_timeline(
    contact_id: ContactId,
    ctx: Context,
    _: Reader,
    limit: int = Query(200, ge=1, le=1000, description="How many items, newest first."),
) -> dict[str, Any]:
    """Site events (their stitched anonymous ids included), orders and messages, newest
    first."""
    from reengage.timeline import timeline

    with ctx.engine.connect() as conn:
        _known(conn, contact_id)
    return {"items": timeline(ctx.settings, ctx.engine, contact_id, limit=limit)}
