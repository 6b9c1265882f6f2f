"""Contact search and a contact's page: profile, scores (the latest run), the style and its
probabilities, consents (current and history), messages and the timeline (`timeline`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Engine, func, or_, select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from reengage.config import Settings
from reengage.messages.intents import STYLES
from reengage.retarget.referrals import contact_block
from reengage.state.contacts import PROFILE
from reengage.state.schema import CHANNELS, PURPOSES, consents, contacts, messages, scores
from reengage.timeline import timeline
from reengage.web.app import web_context
from reengage.web.dashboard.auth import login_required
from reengage.web.dashboard.templating import page

LIMIT = 50
SCORE_FIELDS = (
    "orders",
    "recency_days",
    "frequency",
    "monetary",
    "total_spent",
    "tenure_days",
    "r",
    "f",
    "m",
    "rfm_segment",
    "lifecycle",
    "threshold_days",
    "p_alive",
    "expected_purchases_90d",
    "expected_next_order_at",
    "expected_order_value",
    "clv",
    "style",
    "style_confidence",
    "style_source",
)


def search(engine: Engine, query: str) -> list[Any]:
    """Contacts whose email, customer id or name contains the words typed (or whose id it is)."""
    c = contacts
    text = query.strip()
    statement = select(c.c.id, c.c.customer_id, c.c.email, c.c.first_name, c.c.last_name)
    if text:
        like = f"%{text.lower()}%"
        conditions: list[ColumnElement[bool]] = [
            func.lower(c.c.email).like(like),
            func.lower(c.c.customer_id).like(like),
            func.lower(
                func.coalesce(c.c.first_name, "") + " " + func.coalesce(c.c.last_name, "")
            ).like(like),
        ]
        if text.isdigit():
            conditions.append(c.c.id == int(text))
        statement = statement.where(or_(*conditions))
    with engine.connect() as conn:
        return list(conn.execute(statement.order_by(c.c.id).limit(LIMIT)).all())


def _summary(item: dict[str, Any]) -> str:
    """One line for a timeline item."""
    d = item["detail"]
    if item["kind"] == "order":
        return (
            f"order {d['order_id']}: {d['lines']} line(s), {d['total']:,.2f} {d['currency'] or ''}"
        )
    if item["kind"] == "message":
        where = d.get("journey") or d.get("campaign") or ""
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"{d['intent']} in {d['language']}, {d['style']}{why} {where}".strip()
    if item["kind"] == "message_event":
        machine = " (machine)" if d.get("properties", {}).get("machine") else ""
        return f"message {d['message_id']}{machine}"
    parts = [d.get("product_id"), d.get("device"), "before login" if d.get("anonymous") else None]
    return ", ".join(str(p) for p in parts if p)


def details(settings: Settings, engine: Engine, contact_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        profile = conn.execute(select(contacts).where(contacts.c.id == contact_id)).first()
        if profile is None:
            return None
        score = conn.execute(
            select(scores)
            .where(scores.c.contact_id == contact_id)
            .order_by(scores.c.as_of.desc())
            .limit(1)
        ).first()
        history = conn.execute(
            select(consents)
            .where(consents.c.contact_id == contact_id)
            .order_by(consents.c.recorded_at.desc(), consents.c.id.desc())
        ).all()
        sent = conn.execute(
            select(messages)
            .where(messages.c.contact_id == contact_id)
            .order_by(messages.c.created_at.desc(), messages.c.id.desc())
            .limit(LIMIT)
        ).all()
    current: dict[tuple[str, str], Any] = {}
    for row in history:  # newest first: the first one seen is the current one
        current.setdefault((row.channel, row.purpose), row)
    style_chart = None
    if score is not None and score.p_go_getter is not None:
        style_chart = {
            "type": "bar",
            "labels": [s.replace("_", "-") for s in STYLES],
            "datasets": [
                {
                    "label": "probability",
                    "data": [round(float(getattr(score, f"p_{s}") or 0), 4) for s in STYLES],
                }
            ],
            "max": 1,
        }
    items = timeline(settings, engine, contact_id, limit=200)
    for item in items:
        item["summary"] = _summary(item)
    return {
        "profile": profile,
        "profile_fields": PROFILE,
        "score": score,
        "score_fields": SCORE_FIELDS if score is not None else (),
        "style_chart": style_chart,
        "consents": [
            {"channel": ch, "purpose": p, "row": current.get((ch, p))}
            for ch in CHANNELS
            for p in PURPOSES
            if (ch, p) in current
        ],
        "consent_history": history,
        "messages": sent,
        "timeline": items,
        "referrals": contact_block(settings, engine, contact_id),
    }


@login_required
def contact_search(request: Request) -> Response:
    query = request.query_params.get("q", "")
    found = search(web_context(request).engine, query)
    return page(request, "contacts.html", "contacts", query=query, found=found, limit=LIMIT)


@login_required
def contact_page(request: Request) -> Response:
    context = web_context(request)
    found = details(context.settings, context.engine, int(request.path_params["contact_id"]))
    if found is None:
        raise HTTPException(404, "no such contact")
    return page(request, "contact.html", "contacts", **found)
