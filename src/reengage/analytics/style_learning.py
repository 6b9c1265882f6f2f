"""Learning each contact's behavioural style from how they answer style-adapted messages.

Behaviour alone leaves many contacts' styles unclear (probabilities near a quarter each, style
"unknown"). Every message sent in a style's variant is a small experiment on its recipient:
by `styles.update_with_response`, a response (a human click, an order attributed to the
message, an answer to a survey it carried) multiplies the odds of that style by
(1 + strength); silence lowers them slightly. A neutral message teaches nothing.

Where the learned probabilities go: **the contact's latest scores row, updated in place**
(p_*, style_confidence, style, and style_source = "responses"). A new row dated `until`
would make that date the "latest scores" of a few contacts only, while the export, the
dashboard and the journey engine read the latest date as the shop's latest scoring. The row
keeps what it learned from in `details`:

- `behaviour_probs`: the four probabilities as scoring computed them, from behaviour alone;
- `style_responses`: per message id, the variant sent and whether it was answered.

The probabilities are always recomputed from `behaviour_probs` and every recorded message,
so learning over the same window twice changes nothing, a click that arrived after a first
run turns that message's silence into a response, and a contact rescored later (a fresh row,
behaviour only) gets every earlier response back by running the learning again.

Explicit styles keep precedence: a row whose style came from the CRM or the style survey
(style_source "crm" or "survey") is never changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, bindparam, func, select

from reengage.analytics.styles import DEFAULT_THRESHOLD, STYLES, UNKNOWN, update_with_response
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.measure.attribution import attribute
from reengage.state.contacts import chunks
from reengage.state.db import among
from reengage.state.schema import contacts, messages, scores

__all__ = [
    "DEFAULT_BASE_RATE",
    "DEFAULT_STRENGTH",
    "EXPLICIT_SOURCES",
    "SOURCE",
    "LearnSummary",
    "learn_from_responses",
    "responses_in",
]

#: style_source of a row the learning changed
SOURCE = "responses"
#: style sources that are explicit answers: the learning never touches their rows
EXPLICIT_SOURCES = ("crm", "survey", "override")
#: an answer to a style's variant doubles the odds of that style (update_with_response)
DEFAULT_STRENGTH = 1.0
#: the share of people answering a message whatever their style: sets how little silence says
DEFAULT_BASE_RATE = 0.05
_P = tuple(f"p_{s}" for s in STYLES)


@dataclass
class LearnSummary:
    since: str | None
    until: str
    messages: int  # style-variant messages sent in the window
    responses: int  # of which answered
    contacts: int  # contacts who received one
    updated: int  # scores rows rewritten
    explicit_kept: int  # contacts left alone: their style is a CRM or survey answer
    unscored: int  # contacts without scores to learn into
    styled_before: int  # of the updated contacts, those with a style before
    styled_after: int  # ... and after
    changed: int  # of the updated contacts, those whose style changed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sent(engine: Engine, since: datetime | None, until: datetime) -> list[Any]:
    """Sent messages in a style's variant in (since, until]."""
    m = messages
    query = (
        select(m.c.id, m.c.contact_id, m.c.variant, m.c.sent_at, contacts.c.customer_id)
        .join(contacts, contacts.c.id == m.c.contact_id)
        .where(
            m.c.status == "sent",
            m.c.sent_at.is_not(None),
            m.c.sent_at <= until,
            m.c.variant.in_(STYLES),
        )
        .order_by(m.c.id)
    )
    if since is not None:
        query = query.where(m.c.sent_at > since)
    with engine.connect() as conn:
        return list(conn.execute(query))


def responses_in(settings: Settings, engine: Engine, low: datetime, until: datetime) -> set[int]:
    """Ids of the messages answered in (low, until]: a human click, an order attributed to
    the message (`measure.attribution`), or a survey_answer event naming the message in
    properties.message_id."""
    answered: set[int] = set()
    root = settings.facts_path
    con = reader.connect(root)
    try:
        clicks = reader.between(root, "message_events", low, until, con)
        answered.update(
            int(r[0])
            for r in con.sql(
                f"""SELECT DISTINCT message_id FROM {clicks} AS e
                    WHERE type = 'click' AND occurred_at > $low AND occurred_at <= $high
                      AND coalesce(json_extract_string(properties, '$.machine'), 'false')
                          <> 'true'
                      AND TRY_CAST(message_id AS BIGINT) IS NOT NULL""",
                params={"low": low, "high": until},
            ).fetchall()
        )
        events = reader.between(root, "events", low, until, con)
        answered.update(
            int(r[0])
            for r in con.sql(
                f"""SELECT DISTINCT TRY_CAST(json_extract_string(properties, '$.message_id')
                                             AS BIGINT) AS message_id
                    FROM {events} AS e
                    WHERE type = 'survey_answer' AND occurred_at > $low AND occurred_at <= $high
                      AND message_id IS NOT NULL""",
                params={"low": low, "high": until},
            ).fetchall()
            if r[0] is not None
        )
        orders = attribute(settings, engine, low, until, facts=con)
    finally:
        con.close()
    answered.update(int(v) for v in orders.column("message_id").to_pylist() if v is not None)
    return answered


def _latest_rows(engine: Engine, contact_ids: list[int], until: datetime) -> dict[int, Any]:
    """Each contact's latest scores row as of `until`."""
    found: dict[int, Any] = {}
    with engine.connect() as conn:
        for part in chunks(contact_ids):
            ranked = (
                select(
                    scores.c.id,
                    scores.c.contact_id,
                    scores.c.style,
                    scores.c.style_source,
                    scores.c.details,
                    *(scores.c[name] for name in _P),
                    func.row_number()
                    .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
                    .label("rank"),
                )
                .where(among(conn, scores.c.contact_id, part), scores.c.as_of <= until)
                .subquery()
            )
            for row in conn.execute(select(ranked).where(ranked.c.rank == 1)):
                found[row.contact_id] = row
    return found


def _details(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return dict(value) if isinstance(value, Mapping) else {}


def learn_from_responses(
    settings: Settings,
    engine: Engine,
    since: datetime | None,
    until: datetime,
    *,
    strength: float = DEFAULT_STRENGTH,
    base_rate: float = DEFAULT_BASE_RATE,
    threshold: float = DEFAULT_THRESHOLD,
) -> LearnSummary:
    """Update the style estimate of every contact who got a style-variant message sent in
    (since, until] (since None: all history) from whether they answered it, and store it in
    their latest scores row (see the module's docstring). Idempotent for the same window."""
    until = as_utc(until)
    since = None if since is None else as_utc(since)
    sent = _sent(engine, since, until)
    summary = LearnSummary(
        since=None if since is None else since.isoformat(),
        until=until.isoformat(),
        messages=len(sent),
        responses=0,
        contacts=len({r.contact_id for r in sent}),
        updated=0,
        explicit_kept=0,
        unscored=0,
        styled_before=0,
        styled_after=0,
        changed=0,
    )
    if not sent:
        return summary
    low = min(as_utc(r.sent_at) for r in sent)
    answered = responses_in(settings, engine, low, until)
    summary.responses = sum(1 for r in sent if r.id in answered)
    by_contact: dict[int, list[Any]] = {}
    for r in sent:
        by_contact.setdefault(r.contact_id, []).append(r)
    latest = _latest_rows(engine, sorted(by_contact), until)

    updates: list[dict[str, Any]] = []
    for contact_id, got in by_contact.items():
        row = latest.get(contact_id)
        if row is None or any(row._mapping[name] is None for name in _P):
            summary.unscored += 1
            continue
        if row.style_source in EXPLICIT_SOURCES:
            summary.explicit_kept += 1
            continue
        details = _details(row.details)
        base = details.get("behaviour_probs")
        if not (isinstance(base, list) and len(base) == len(STYLES)):
            base = [float(row._mapping[name]) for name in _P]
        seen: dict[str, list[Any]] = dict(details.get("style_responses") or {})
        for r in got:
            seen[str(r.id)] = [r.variant, r.id in answered]
        order = sorted(seen, key=int)
        probs = np.asarray([base], dtype=np.float64)
        for key in order:  # Bayes updates commute: the order only fixes the rounding
            variant, responded = seen[key]
            probs = update_with_response(
                probs, [variant], [bool(responded)], strength, base_rate=base_rate
            )
        p = probs[0]
        confidence = float(p.max())
        style = STYLES[int(p.argmax())] if confidence >= threshold else UNKNOWN
        summary.styled_before += row.style not in (None, UNKNOWN)
        summary.styled_after += style != UNKNOWN
        summary.changed += style != (row.style or UNKNOWN)
        details["behaviour_probs"] = [float(v) for v in base]
        details["style_responses"] = {k: seen[k] for k in order}
        updates.append(
            {
                "row_id": row.id,
                **{name: float(p[k]) for k, name in enumerate(_P)},
                "style_confidence": confidence,
                "style": style,
                "style_source": SOURCE,
                "details": details,
            }
        )
    if updates:
        statement = (
            scores.update()
            .where(scores.c.id == bindparam("row_id"))
            .values(
                {
                    **{name: bindparam(name) for name in _P},
                    "style_confidence": bindparam("style_confidence"),
                    "style": bindparam("style"),
                    "style_source": bindparam("style_source"),
                    "details": bindparam("details", type_=scores.c.details.type),
                }
            )
        )
        with engine.begin() as conn:
            for part in chunks(updates):
                conn.execute(statement, list(part))
    summary.updated = len(updates)
    return summary


def learned_styles(engine: Engine) -> pa.Table:
    """customer_id and style of every contact's latest scores row (for reports)."""
    ranked = (
        select(
            contacts.c.customer_id,
            scores.c.style,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .join(contacts, contacts.c.id == scores.c.contact_id)
        .where(contacts.c.customer_id.is_not(None))
        .subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(ranked.c.customer_id, ranked.c.style).where(ranked.c.rank == 1)
        ).all()
    return pa.table(
        {
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "style": pa.array([r.style or UNKNOWN for r in rows], pa.string()),
        }
    )
