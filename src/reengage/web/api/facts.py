"""A contact's events and orders (read from the facts), and new ones sent in (validated,
deduplicated and stored as an import stores them)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import duckdb
import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select

from reengage.config import Settings
from reengage.facts import reader
from reengage.ingest.csvfile import LINE_COLUMN, columns_table
from reengage.ingest.fields import ParseOptions, validate
from reengage.ingest.formats import format_for
from reengage.ingest.stores import Stored, store_events, store_orders
from reengage.state.schema import contacts, identities
from reengage.web.api.common import (
    AUTH_RESPONSES,
    NOT_FOUND,
    Clean,
    ContactId,
    Context,
    Cursor,
    Id128,
    Limit,
    Reader,
    Text64,
    Text200,
    Writer,
    decode_cursor,
    encode_cursor,
    not_found,
)

router = APIRouter(responses=AUTH_RESPONSES)

MAX_BATCH = 1000
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Event(BaseModel):
    event_id: str
    customer_id: str | None
    anonymous_id: str | None
    type: str
    occurred_at: datetime
    product_id: str | None
    session_id: str | None
    source: str | None
    device: str | None
    duration_s: float | None
    properties: dict[str, Any] | None


class EventPage(BaseModel):
    items: list[Event]
    next_cursor: str | None


class OrderLine(BaseModel):
    line_id: str
    order_id: str
    ordered_at: datetime
    product_id: str
    quantity: int
    unit_price: float
    currency: str
    discount: float
    coupon_code: str | None
    status: str


class OrderPage(BaseModel):
    items: list[OrderLine]
    next_cursor: str | None


class EventIn(BaseModel):
    """An event as the generic events import takes it (docs/formats.md)."""

    event_id: Id128 | None = Field(None, description="Stable id; derived when absent.")
    customer_id: Id128 | None = None
    anonymous_id: Id128 | None = None
    type: Text64 = Field(description="A type of the event vocabulary (docs/formats.md).")
    occurred_at: Text64 = Field(description="ISO 8601; without an offset, shop time.")
    product_id: Id128 | None = None
    session_id: Id128 | None = None
    source: Text64 | None = None
    device: Text64 | None = None
    duration_s: Finite | None = None
    properties: dict[str, Any] | None = None


class OrderLineIn(BaseModel):
    """An order line as the generic orders import takes it (docs/formats.md)."""

    order_id: Id128
    customer_id: Id128
    ordered_at: Text64 = Field(description="ISO 8601; without an offset, shop time.")
    product_id: Id128
    quantity: int = Field(ge=1, le=999_999_999)
    unit_price: Finite = Field(ge=0)
    currency: Annotated[Clean, Field(pattern="^[A-Za-z]{3}$")] | None = None
    discount: Finite | None = Field(None, ge=0)
    coupon_code: Text200 | None = None
    status: Text64 | None = Field(None, description="paid (default), pending, fulfilled, ...")


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class OrdersIn(BaseModel):
    orders: list[OrderLineIn] = Field(min_length=1, max_length=MAX_BATCH)


class Rejection(BaseModel):
    index: int = Field(description="The item's position in the list sent, from 0.")
    reason: str = Field(description="The field and what was expected (never the value).")


class Accepted(BaseModel):
    accepted: int = Field(description="Items that passed validation (stored or duplicates).")
    imported: int = Field(description="Items stored now.")
    duplicates: int = Field(description="Items stored already (the same id sent before).")
    rejected: list[Rejection]


def _person(engine: Engine, contact_id: int) -> tuple[str | None, list[str]]:
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.customer_id).where(contacts.c.id == contact_id)
        ).first()
        if row is None:
            raise not_found("contact with this id")
        anonymous = conn.execute(
            select(identities.c.value).where(
                identities.c.contact_id == contact_id, identities.c.kind == "anonymous_id"
            )
        ).scalars()
        return row.customer_id, sorted(anonymous)


def _page(
    settings: Settings,
    kind: str,
    where: str,
    params: dict[str, Any],
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of one kind of facts, newest first, keyed by (time, id)."""
    time_column, id_column = {
        "events": ("occurred_at", "event_id"),
        "orders": ("ordered_at", "line_id"),
    }[kind]
    after = decode_cursor(cursor, kind, (int, str))
    if after is not None:
        where = (
            f"({where}) AND (epoch_us({time_column}) < $t OR "
            f"(epoch_us({time_column}) = $t AND {id_column} < $i))"
        )
        params = params | {"t": after[0], "i": after[1]}
    con = reader.connect(settings.facts_path)
    try:
        table = con.sql(
            f"""SELECT * EXCLUDE (ingested_at), epoch_us({time_column}) AS __t FROM {kind}
                WHERE {where} ORDER BY {time_column} DESC, {id_column} DESC LIMIT $limit""",
            params=params | {"limit": limit + 1},
        ).to_arrow_table()
    finally:
        con.close()
    rows = table.to_pylist()
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(kind, items[-1]["__t"], items[-1][id_column])
    for item in items:
        del item["__t"]
    return items, next_cursor


def _properties(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


@router.get(
    "/contacts/{contact_id}/events",
    response_model=EventPage,
    responses=NOT_FOUND,
    tags=["events"],
    summary="A contact's events",
)
def contact_events(
    contact_id: ContactId, ctx: Context, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """Events with the contact's customer id, or with one of their stitched anonymous ids
    and no customer id; newest first."""
    customer_id, anonymous = _person(ctx.engine, contact_id)
    where = "customer_id = $cid OR (customer_id IS NULL AND list_contains($anon, anonymous_id))"
    params = {"cid": customer_id or "", "anon": anonymous or [""]}
    items, next_cursor = _page(ctx.settings, "events", where, params, cursor, limit)
    for item in items:
        item["properties"] = _properties(item["properties"])
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/contacts/{contact_id}/orders",
    response_model=OrderPage,
    responses=NOT_FOUND,
    tags=["orders"],
    summary="A contact's order lines",
)
def contact_orders(
    contact_id: ContactId, ctx: Context, _: Reader, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """The contact's order lines, newest first."""
    customer_id, _anonymous = _person(ctx.engine, contact_id)
    params = {"cid": customer_id or ""}
    items, next_cursor = _page(ctx.settings, "orders", "customer_id = $cid", params, cursor, limit)
    for item in items:
        item.pop("customer_id", None)
    return {"items": items, "next_cursor": next_cursor}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        return str(np.format_float_positional(value, trim="-"))
    return str(value)


def _store(ctx: Context, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Validate and store items as the generic import of `kind` does a file's rows."""
    fmt = format_for("generic", kind)
    header = [f.name for f in fmt.fields(kind)]
    raw = columns_table(
        header, [[_text(item.get(n)) for n in header] for item in items], list(range(len(items)))
    )
    settings = ctx.settings
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        opts = fmt.options(ParseOptions(zone=settings.timezone))
        good, bad = validate(con, raw, fmt.fields(kind), opts, fmt.row_checks(kind))
        con.register("__typed", good)
        canonical = con.sql(fmt.canonical_sql(kind, settings.currency)).to_arrow_table()
        con.unregister("__typed")
        now = ctx.clock.now()
        stored = Stored()
        if canonical.num_rows:
            with ctx.engine.begin() as conn:
                if kind == "orders":
                    stored = store_orders(conn, con, canonical, settings.facts_path, now)
                else:
                    stored = store_events(conn, con, canonical, settings.facts_path, now)
    finally:
        con.close()
    reasons = dict(zip(bad.column(LINE_COLUMN).to_pylist(), bad.column(1).to_pylist(), strict=True))
    reasons.update(dict(stored.rejected))
    return {
        "accepted": canonical.num_rows - len(stored.rejected),
        "imported": stored.imported,
        "duplicates": stored.duplicates,
        "rejected": [{"index": i, "reason": reasons[i]} for i in sorted(reasons)],
    }


@router.post("/events", response_model=Accepted, tags=["events"], summary="Send events")
def post_events(body: EventsIn, ctx: Context, _: Writer) -> dict[str, Any]:
    """Store events as `reengage import events` does: each is validated (the rejected ones
    are listed with their index and reason), and an event sent twice is stored once."""
    return _store(ctx, "events", [e.model_dump() for e in body.events])


@router.post("/orders", response_model=Accepted, tags=["orders"], summary="Send order lines")
def post_orders(body: OrdersIn, ctx: Context, _: Writer) -> dict[str, Any]:
    """Store order lines as `reengage import orders` does: validated, deduplicated (the same
    line sent twice is stored once), with the contacts and products they name created."""
    return _store(ctx, "orders", [o.model_dump() for o in body.orders])
