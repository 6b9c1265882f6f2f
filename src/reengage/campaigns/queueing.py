"""Writing a campaign's messages into the outbox: one row per recipient of a group (the test
share, or the rest), style and language chosen as `outbox.enqueue` chooses them, the copy
the campaign (and the recipient's test arm) overrides in the row's payload.

This is `enqueue_many` for a frozen audience, built for a million rows: the recipients,
their language and latest style come from one query; rows are written by the database's
bulk path (COPY on PostgreSQL) in chunks of `CHUNK`, each chunk its own transaction. The
chunk is the checkpoint: a crash loses at most the chunk being written, and the next run
writes only the recipients that have no row yet (keys `campaign:NAME:CONTACT`, unique in
the outbox). Each chunk first touches the campaign's row, so a pause or a cancel that
commits in between stops the queueing at that chunk (the pause's own UPDATE sets aside what
was queued before it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, null, select

from reengage.campaigns.definition import Campaign
from reengage.config import Settings
from reengage.messages.context import language_for
from reengage.messages.intents import variant_for
from reengage.state.db import bulk_insert_columns
from reengage.state.schema import campaign_recipients, campaigns, contacts, messages, scores

CHUNK = 50_000
Progress = Callable[[str, int, int], None]


def message_key(campaign: str, contact_id: int) -> str:
    return f"campaign:{campaign}:{contact_id}"


def queue_group(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    group: str,
    now: datetime,
    *,
    arm: str | None = None,
    progress: Progress | None = None,
) -> int | None:
    """Queue the messages of one group (`test` or `rest`; `arm` is the rest's, the winner);
    how many rows were written, or None when the campaign was paused or cancelled meanwhile."""
    recipients = _recipients(engine, campaign, group)
    with engine.connect() as conn:
        done = set(
            conn.execute(
                select(messages.c.contact_id).where(messages.c.campaign == campaign.name)
            ).scalars()
        )
    todo = [r for r in recipients if r[0] not in done]
    payloads: dict[tuple[str, str | None], str] = {}
    written = 0
    total = len(todo)
    for start in range(0, total, CHUNK):
        part = todo[start : start + CHUNK]
        columns = _columns(part, campaign, arm, settings, now, payloads)
        with engine.begin() as conn:
            # taken first: a pause or cancel committing meanwhile is seen, and waits for us
            live = conn.execute(
                campaigns.update()
                .where(
                    campaigns.c.name == campaign.name,
                    campaigns.c.status.in_(("testing", "sending")),
                )
                .values(updated_at=now)
            ).rowcount
            if not live:
                return None
            bulk_insert_columns(conn, messages, columns)
        written += len(part)
        if progress is not None:
            progress("queueing", written, total)
    return written


def _recipients(
    engine: Engine, campaign: Campaign, group: str
) -> list[tuple[int, str | None, datetime, str | None, str | None]]:
    """(contact id, arm, send at, language, latest style) of a group, in contact id order."""
    r = campaign_recipients
    style: Any = None
    if campaign.adapt_style:
        # the latest scores row's, found by the (contact_id, as_of) unique index
        style = (
            select(scores.c.style)
            .where(scores.c.contact_id == r.c.contact_id)
            .order_by(scores.c.as_of.desc())
            .limit(1)
            .correlate(r)
            .scalar_subquery()
        )
    wanted: list[Any] = [r.c.contact_id, r.c.arm, r.c.send_at, contacts.c.language]
    wanted.append(style.label("style") if style is not None else null().label("style"))
    query = (
        select(*wanted)
        .join(contacts, contacts.c.id == r.c.contact_id)
        .where(r.c.campaign == campaign.name, r.c.grp == group)
        .order_by(r.c.contact_id)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def _columns(
    part: list[tuple[int, str | None, datetime, str | None, str | None]],
    campaign: Campaign,
    arm: str | None,
    settings: Settings,
    now: datetime,
    payloads: dict[tuple[str, str | None], str],
) -> dict[str, list[Any]]:
    n = len(part)
    languages = [language_for(p[3], settings.language) for p in part]
    styles = [(p[4] or "unknown") for p in part]
    arms = [arm if arm is not None else p[1] for p in part]
    payload = []
    for language, chosen in zip(languages, arms, strict=True):
        key = (language, chosen)
        text = payloads.get(key)
        if text is None:
            copy = campaign.copy_for(language, chosen)
            text = payloads[key] = json.dumps({"copy": copy} if copy else {})
        payload.append(text)
    return {
        "message_key": [message_key(campaign.name, p[0]) for p in part],
        "contact_id": [p[0] for p in part],
        "channel": [campaign.channel] * n,
        "intent": [campaign.intent] * n,
        "style": styles,
        "language": languages,
        "variant": [variant_for(s) if campaign.adapt_style else "neutral" for s in styles],
        "step": arms,
        "campaign": [campaign.name] * n,
        "status": ["queued"] * n,
        "priority": [campaign.priority] * n,
        "due_at": [p[2] for p in part],
        "created_at": [now] * n,
        "attempts": [0] * n,
        "payload": payload,
    }
