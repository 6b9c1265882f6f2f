"""A contact's timeline: what they did on the site, what they bought and what reengage sent
them, newest first, in one list.

Site events count as the contact's when they carry the contact's customer id or one of the
anonymous ids stitched to the contact (`identities`), so a visitor's browsing before they
logged in shows up once they are known. Orders are grouped by order, messages come from the
outbox with what happened to them (message events).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.state.schema import (
    contacts,
    conversation_messages,
    conversations,
    identities,
    messages,
)

Item = dict[str, Any]


def _properties(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def _known(engine: Engine, contact_id: int) -> tuple[str | None, list[str]] | None:
    """The contact's customer id and stitched anonymous ids; None for an unknown contact."""
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.customer_id).where(contacts.c.id == contact_id)
        ).first()
        if row is None:
            return None
        anonymous = conn.execute(
            select(identities.c.value).where(
                identities.c.contact_id == contact_id, identities.c.kind == "anonymous_id"
            )
        ).scalars()
        return row.customer_id, sorted(anonymous)


def _message_items(engine: Engine, contact_id: int, limit: int) -> list[Item]:
    m = messages
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                m.c.id,
                m.c.channel,
                m.c.intent,
                m.c.style,
                m.c.language,
                m.c.variant,
                m.c.journey,
                m.c.campaign,
                m.c.status,
                m.c.reason,
                m.c.subject,
                m.c.created_at,
                m.c.sent_at,
            )
            .where(m.c.contact_id == contact_id)
            .order_by(m.c.created_at.desc(), m.c.id.desc())
            .limit(limit)
        ).all()
    items = []
    for r in rows:
        at: datetime = as_utc(r.sent_at or r.created_at)
        items.append(
            {
                "at": at,
                "kind": "message",
                "type": f"{r.channel}:{r.status}",
                "detail": {
                    "message_id": r.id,
                    "channel": r.channel,
                    "intent": r.intent,
                    "style": r.style,
                    "language": r.language,
                    "variant": r.variant,
                    "journey": r.journey,
                    "campaign": r.campaign,
                    "status": r.status,
                    "reason": r.reason,
                    "subject": r.subject,
                },
            }
        )
    return items


def _conversation_items(engine: Engine, contact_id: int, limit: int) -> list[Item]:
    """Messages on WhatsApp, Messenger and Instagram, both ways (`social.conversations`)."""
    m, c = conversation_messages, conversations
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                m.c.id,
                m.c.conversation_id,
                c.c.channel,
                m.c.direction,
                m.c.kind,
                m.c.body,
                m.c.template,
                m.c.status,
                m.c.at,
            )
            .join(c, c.c.id == m.c.conversation_id)
            .where(c.c.contact_id == contact_id)
            .order_by(m.c.at.desc(), m.c.id.desc())
            .limit(limit)
        ).all()
    return [
        {
            "at": as_utc(r.at),
            "kind": "conversation",
            "type": f"{r.channel}:{r.direction}",
            "detail": {
                "conversation_id": r.conversation_id,
                "message_id": r.id,
                "channel": r.channel,
                "direction": r.direction,
                "kind": r.kind,
                "body": r.body,
                "template": r.template,
                "status": r.status,
            },
        }
        for r in rows
    ]


def _fact_items(
    settings: Settings, customer_id: str | None, anonymous: list[str], limit: int
) -> list[Item]:
    if customer_id is None and not anonymous:
        return []
    con = reader.connect(settings.facts_path)
    try:
        params: dict[str, Any] = {"cid": customer_id or "", "anon": anonymous or [""]}
        events = con.execute(
            """SELECT type, occurred_at, product_id, session_id, source, device, properties,
                      anonymous_id, customer_id
               FROM events
               WHERE customer_id = $cid OR list_contains($anon, anonymous_id)
               ORDER BY occurred_at DESC LIMIT $limit""",
            {**params, "limit": limit},
        ).fetchall()
        orders = con.execute(
            """SELECT order_id, min(ordered_at), sum(quantity * unit_price) - sum(discount),
                      any_value(currency), any_value(status), count(*),
                      list(product_id ORDER BY line_id)
               FROM orders WHERE customer_id = $cid
               GROUP BY order_id ORDER BY 2 DESC LIMIT $limit""",
            {"cid": customer_id or "", "limit": limit},
        ).fetchall()
        message_events = con.execute(
            """SELECT type, occurred_at, channel, message_id, properties
               FROM message_events WHERE customer_id = $cid
               ORDER BY occurred_at DESC LIMIT $limit""",
            {"cid": customer_id or "", "limit": limit},
        ).fetchall()
    finally:
        con.close()
    items: list[Item] = []
    for type_, at, product, session, source, device, props, anon, cid in events:
        items.append(
            {
                "at": as_utc(at),
                "kind": "event",
                "type": type_,
                "detail": {
                    "product_id": product,
                    "session_id": session,
                    "source": source,
                    "device": device,
                    "properties": _properties(props),
                    # before the visitor was known, the event carried only the cookie id
                    "anonymous": cid is None and anon is not None,
                },
            }
        )
    for order_id, at, total, currency, status, lines, products in orders:
        items.append(
            {
                "at": as_utc(at),
                "kind": "order",
                "type": f"order:{status}",
                "detail": {
                    "order_id": order_id,
                    "total": round(float(total or 0), 2),
                    "currency": currency,
                    "status": status,
                    "lines": lines,
                    "products": list(products),
                },
            }
        )
    for type_, at, channel, message_id, props in message_events:
        items.append(
            {
                "at": as_utc(at),
                "kind": "message_event",
                "type": f"{channel}:{type_}",
                "detail": {"message_id": message_id, "properties": _properties(props)},
            }
        )
    return items


def timeline(
    settings: Settings, engine: Engine, contact_id: int, *, limit: int = 200
) -> list[Item]:
    """The contact's latest `limit` items, newest first: each {"at", "kind", "type", "detail"}
    with kind one of event, order, message, message_event, conversation. Empty for an
    unknown contact."""
    known = _known(engine, contact_id)
    if known is None:
        return []
    customer_id, anonymous = known
    items = _fact_items(settings, customer_id, anonymous, limit)
    items += _message_items(engine, contact_id, limit)
    items += _conversation_items(engine, contact_id, limit)
    items.sort(key=lambda item: item["at"], reverse=True)
    return items[:limit]
