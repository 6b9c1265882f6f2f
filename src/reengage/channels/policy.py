"""The contact policy, applied to every send: consent, suppression, frequency caps, quiet
hours, the cooldown after a purchase, and priority when caps collide.

Journeys and campaigns call `check` (one send) or `check_many` (a batch) right before they
write or claim an outbox row, and record the decision's reason when it blocks or defers one.
This module reads what the decision needs from the state store — for a whole batch in a
handful of queries, never one per contact — and hands it to the pure core in
`reengage.channels.rules`. docs/policy.md explains the rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, func, select

from reengage.channels.caps import COUNTED_STATUSES, Counted
from reengage.channels.rules import (
    ADDRESS_FIELD,
    DEFAULT_MAX_DEFER,
    LOWER_PRIORITY,
    NO_ADDRESS,
    NO_CONSENT,
    PAUSED_AFTER_FEEDBACK,
    PURCHASE_COOLDOWN,
    QUIET_HOURS,
    Decision,
    PolicyFacts,
    Purpose,
    SendRequest,
    decide,
    decide_many,
    describe,
    max_defer_of,
)
from reengage.channels.sms import e164
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.messages.intents import INTENTS
from reengage.state.contacts import chunks
from reengage.state.db import among
from reengage.state.schema import consents, contacts, messages, scores, suppressions
from reengage.suppressions import normalise_address
from reengage.surveys import paused_until

__all__ = [
    "DEFAULT_MAX_DEFER",
    "LOWER_PRIORITY",
    "NO_ADDRESS",
    "NO_CONSENT",
    "PAUSED_AFTER_FEEDBACK",
    "PURCHASE_COOLDOWN",
    "QUIET_HOURS",
    "Decision",
    "PolicyFacts",
    "SendRequest",
    "apply_bumps",
    "check",
    "check_many",
    "decide",
    "decide_many",
    "describe",
    "read_facts",
]

# service intents: their messages neither count toward caps nor are capped
SERVICE_INTENTS = tuple(sorted(i.id for i in INTENTS.values() if i.purpose == "transactional"))
# how far around a decision counted messages matter: a local day or a 7-day window, both ways
MARGIN = timedelta(days=8)


def check(
    conn: Connection,
    contact: int,
    channel: str,
    purpose: Purpose,
    priority: int,
    when: datetime,
    settings: Settings,
    *,
    message_id: int | None = None,
    last_order_at: datetime | None = None,
    max_defer: timedelta | None = None,
) -> Decision:
    """Whether a message on `channel` for `purpose` may go to contact id `contact` at `when`.

    `message_id` names the outbox row being claimed (it does not count against itself);
    `last_order_at` adds the caller's knowledge of the latest order to the scores'.
    """
    request = SendRequest(contact, channel, purpose, priority, when, message_id, last_order_at)
    return check_many(conn, [request], settings, max_defer=max_defer)[0]


def check_many(
    conn: Connection,
    requests: Sequence[SendRequest],
    settings: Settings,
    *,
    max_defer: timedelta | None = None,
) -> list[Decision]:
    """The decision for each request, in order: the facts of all their contacts are read in
    a few queries, then `decide_many` decides (priority first, each decision taken as carried
    out before the next for the same contact)."""
    if not requests:
        return []
    facts = read_facts(conn, requests, settings, max_defer=max_defer)
    return decide_many(facts, requests, settings, max_defer=max_defer)


def apply_bumps(conn: Connection, decision: Decision) -> int:
    """Set the queued messages a decision bumps to `deferred` (reason `lower_priority`), in
    the caller's transaction; how many were still queued and so were bumped."""
    if not decision.bump:
        return 0
    result = conn.execute(
        messages.update()
        .where(messages.c.id.in_(decision.bump), messages.c.status == "queued")
        .values(status="deferred", reason=LOWER_PRIORITY)
    )
    return int(result.rowcount or 0)


def read_facts(
    conn: Connection,
    requests: Sequence[SendRequest],
    settings: Settings,
    *,
    max_defer: timedelta | None = None,
) -> dict[int, PolicyFacts]:
    """What the policy needs about the requests' contacts, by contact id: five queries per
    2,000 contacts (contacts, current consents, suppressions, counted messages, scores).

    The latest order comes from each contact's latest scores row dated no later than the
    batch's latest request (for `check`, the request itself)."""
    ids = sorted({r.contact_id for r in requests})
    whens = [as_utc(r.when) for r in requests]
    marketing = any(r.purpose == "marketing" for r in requests)
    wanted_consents: set[tuple[str, str]] = {(r.channel, r.purpose) for r in requests}
    people: dict[int, dict[str, str | None]] = {}
    paused: dict[int, datetime] = {}
    granted: dict[int, dict[tuple[str, str], bool]] = defaultdict(dict)
    counted: dict[int, list[Counted]] = defaultdict(list)
    last_order: dict[int, datetime] = {}
    # messages that can matter: around the earliest request, up to the latest possible deferral
    cooldown = timedelta(days=settings.purchase_cooldown_days)
    low = min(whens) - MARGIN
    high = max(whens) + cooldown + max_defer_of(settings, max_defer) + MARGIN
    for part in chunks(ids):
        for row in conn.execute(
            select(
                contacts.c.id,
                contacts.c.email,
                contacts.c.phone,
                contacts.c.country,
                contacts.c.timezone,
                contacts.c.customer_id,
                contacts.c.attributes,
            ).where(among(conn, contacts.c.id, part))
        ):
            until = paused_until(row.attributes)
            if until is not None:
                paused[row.id] = until
            people[row.id] = {
                "customer": row.customer_id,
                "email": normalise_address("email", row.email) if row.email else None,
                "phone": e164(row.phone, row.country) if row.phone else None,
                "timezone": row.timezone,
            }
        for grant in conn.execute(_latest_consents(conn, part, wanted_consents)):
            granted[grant.contact_id][(grant.channel, grant.purpose)] = bool(grant.granted)
        if marketing:
            for sent in conn.execute(_counted_messages(conn, part, low, high)):
                counted[sent.contact_id].append(
                    Counted(
                        sent.id, sent.channel, as_utc(sent.at), int(sent.priority or 0), sent.status
                    )
                )
        if marketing and settings.purchase_cooldown_days > 0:
            # the latest order, as the latest scores saw it: as_of less the recency
            for score in conn.execute(_latest_scores(conn, part, max(whens))):
                if score.recency_days is not None:
                    ago = timedelta(days=float(score.recency_days))
                    last_order[score.contact_id] = as_utc(score.as_of) - ago
    blocked = _suppressed(conn, people, {r.channel for r in requests})
    return {
        contact_id: PolicyFacts(
            consents=granted.get(contact_id, {}),
            email=person["email"],
            phone=person["phone"],
            suppressed=blocked.get(contact_id, {}),
            timezone=person["timezone"],
            last_order_at=last_order.get(contact_id),
            messages=tuple(counted.get(contact_id, ())),
            customer=person["customer"] is not None,
            paused_until=paused.get(contact_id),
        )
        for contact_id, person in people.items()
    }


def _latest_consents(
    conn: Connection, part: Sequence[int], wanted: set[tuple[str, str]]
) -> Select[Any]:
    """The latest consent row of each contact, channel and purpose asked about."""
    ranked = (
        select(
            consents.c.contact_id,
            consents.c.channel,
            consents.c.purpose,
            consents.c.granted,
            func.row_number()
            .over(
                partition_by=(consents.c.contact_id, consents.c.channel, consents.c.purpose),
                order_by=(consents.c.recorded_at.desc(), consents.c.id.desc()),
            )
            .label("rank"),
        )
        .where(
            among(conn, consents.c.contact_id, part),
            consents.c.channel.in_(sorted({c for c, _ in wanted})),
            consents.c.purpose.in_(sorted({p for _, p in wanted})),
        )
        .subquery()
    )
    return select(ranked.c.contact_id, ranked.c.channel, ranked.c.purpose, ranked.c.granted).where(
        ranked.c.rank == 1
    )


def _counted_messages(
    conn: Connection, part: Sequence[int], low: datetime, high: datetime
) -> Select[Any]:
    """Marketing messages sent, being sent or queued between low and high, at the instant
    each counts: sent, else claimed, else due."""
    at = func.coalesce(messages.c.sent_at, messages.c.claimed_at, messages.c.due_at)
    return select(
        messages.c.id,
        messages.c.contact_id,
        messages.c.channel,
        messages.c.status,
        messages.c.priority,
        at.label("at"),
    ).where(
        among(conn, messages.c.contact_id, part),
        # an expression, not the bare column: SQLite's planner would otherwise walk the
        # (status, due_at) index, every sent message of everyone, instead of the contacts'
        (messages.c.status + "").in_(COUNTED_STATUSES),
        messages.c.intent.not_in(SERVICE_INTENTS),
        and_(at >= low, at < high),
    )


def _latest_scores(conn: Connection, part: Sequence[int], until: datetime) -> Select[Any]:
    """Each contact's latest scores row as of `until`: when it was scored, how long ago
    the latest order was then."""
    ranked = (
        select(
            scores.c.contact_id,
            scores.c.as_of,
            scores.c.recency_days,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .where(among(conn, scores.c.contact_id, part), scores.c.as_of <= until)
        .subquery()
    )
    return select(ranked.c.contact_id, ranked.c.as_of, ranked.c.recency_days).where(
        ranked.c.rank == 1
    )


def _suppressed(
    conn: Connection, people: dict[int, dict[str, str | None]], channels: set[str]
) -> dict[int, dict[str, str]]:
    """For each contact, the channels on which their address is suppressed, and why."""
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for channel in sorted(channels):
        field = ADDRESS_FIELD.get(channel)
        if field is None:
            continue  # push endpoints and the like are checked by their channel
        owners: dict[str, list[int]] = defaultdict(list)
        for contact_id, person in people.items():
            address = person[field]
            if address:
                owners[normalise_address(channel, address)].append(contact_id)
        for part in chunks(sorted(owners)):
            rows = conn.execute(
                select(suppressions.c.address, suppressions.c.reason).where(
                    suppressions.c.channel == channel, suppressions.c.address.in_(part)
                )
            )
            for row in rows:
                for contact_id in owners[row.address]:
                    found[contact_id][channel] = row.reason
    return found
