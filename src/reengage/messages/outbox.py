"""The outbox: every message reengage will send, is sending or sent, one row in `messages`.

A journey step, a campaign or `reengage messages send` that decides to write to someone calls
`enqueue` (or `enqueue_many`) inside its own state transaction: the row is the durable
intent to send, written together with whatever else the decision changed. The dispatcher
(`reengage.messages.dispatch`) later claims due rows, checks the contact policy again, renders
and sends them, and marks them sent, blocked, deferred or failed.

Idempotent on `message_key`: a decision replayed (a journey step run twice, a campaign started
again) writes nothing the second time, and `enqueue` answers None.

**Style and language are chosen when the message is queued**, and written on the row:

- `style` is the contact's behavioural style in their latest scores row (`unknown` when they
  have none, or it is unknown); `variant` is the copy variant rendered — the style's own, or
  `neutral` for `unknown` — unless the caller names one (an experiment sending neutral copy
  to part of a styled audience: the row then says both what the person is and what they got);
- `language` is the contact's language when reengage ships copy for it (`fr-FR` counts as
  `fr`), else the shop's `language` setting.

Why queue time and not send time: the row is the record of what was decided (an experiment's
arm must not change while the message waits), a payload the decider formatted (cart lines,
prices, dates) is in the row's language, and `messages list` shows queued messages as they
will go. The cost: a contact rescored or who changed language between queueing and sending
(minutes for most messages, up to a few days for a deferred one) gets the earlier choice.

The payload (JSON) carries what the decider knows that state does not: any context variable
(`cart`, `cart_total`, `cart_count`, `product`, `products`, `offer`, ... as
`Context.to_payload()` writes them), and these keys:

| key | meaning |
| --- | --- |
| `product_id` | the main product, by id (its card, the button of product intents) |
| `deadline_at` | an ISO 8601 instant, written as `deadline` in the contact's zone and language |
| `cta_url` | where the button leads instead of the intent's default |
| `endpoint` | push only: the subscription to send to (default: the contact's newest) |
| `headers` | email only: extra headers, e.g. `{"Feedback-ID": "..."}` |

Everything else the message says is read from state and facts when it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from reengage.clock import Clock, as_utc
from reengage.config import Settings
from reengage.errors import InputError
from reengage.messages.context import language_for
from reengage.messages.intents import VARIANTS, intent, variant_for
from reengage.state.contacts import chunks
from reengage.state.db import among, bulk_insert_columns
from reengage.state.schema import MESSAGE_STATUSES, contacts, identities, messages, scores

# the channels the dispatcher can deliver on
DELIVERABLE = ("email", "sms", "push")
PAYLOAD_KEYS = ("product_id", "deadline_at", "cta_url", "endpoint", "headers")
KEY_LENGTH = 200
NAME_LENGTH = 100  # journey, step, campaign


@dataclass(frozen=True)
class OutboxItem:
    """One message to queue (the arguments of `enqueue`, for `enqueue_many`)."""

    message_key: str
    contact_id: int
    intent: str
    channel: str
    due_at: datetime
    journey: str | None = None
    step: str | None = None
    campaign: str | None = None
    priority: int = 0
    payload: Mapping[str, Any] | None = None
    variant: str | None = None


def enqueue(
    conn: Connection,
    *,
    message_key: str,
    contact_id: int,
    intent: str,
    channel: str,
    due_at: datetime,
    clock: Clock,
    settings: Settings,
    journey: str | None = None,
    step: str | None = None,
    campaign: str | None = None,
    priority: int = 0,
    payload: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> int | None:
    """Queue one message in the caller's transaction: its outbox id, or None when a message
    with this key exists already (nothing is written).

    `settings` gives the language of contacts whose own is not one reengage writes in.
    InputError for an unknown intent, channel, variant or contact, or a payload that is not
    JSON.
    """
    item = OutboxItem(
        message_key,
        contact_id,
        intent,
        channel,
        due_at,
        journey,
        step,
        campaign,
        priority,
        payload,
        variant,
    )
    row = _row(item, _choices(conn, [contact_id], settings), clock.now())
    statement = (
        _insert(conn)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["message_key"])
        .returning(messages.c.id)
    )
    found = conn.execute(statement).scalar_one_or_none()
    return None if found is None else int(found)


def enqueue_many(
    conn: Connection, items: Sequence[OutboxItem], *, clock: Clock, settings: Settings
) -> list[int | None]:
    """Queue many messages at once in the caller's transaction (a campaign): for each item,
    its outbox id, or None when its key was queued already (or earlier in `items`).

    Contacts and scores are read a few queries per 2,000 contacts; rows are written in one
    multi-row insert per 2,000. A key queued concurrently by another transaction between the
    check and the insert is skipped, and reported with that row's id.
    """
    if not items:
        return []
    now = clock.now()
    choices = _choices(conn, sorted({i.contact_id for i in items}), settings)
    keys = [i.message_key for i in items]
    existing: set[str] = set()
    for part in chunks(sorted(set(keys))):
        existing.update(
            conn.execute(
                select(messages.c.message_key).where(among(conn, messages.c.message_key, part))
            ).scalars()
        )
    fresh: dict[str, dict[str, Any]] = {}
    for item in items:
        row = _row(item, choices, now)  # checks every item, queued before or not
        if item.message_key not in existing and item.message_key not in fresh:
            fresh[item.message_key] = row
    rows = list(fresh.values())
    ids: dict[str, int] = {}
    if conn.dialect.name == "postgresql":
        ids = _copy_in(conn, rows) if rows else {}
    else:
        for batch in chunks(rows):
            conn.execute(
                _insert(conn).on_conflict_do_nothing(index_elements=["message_key"]),
                list(batch),
            )
    for part in chunks([k for k in fresh if k not in ids]):
        ids.update(
            (r.message_key, int(r.id))
            for r in conn.execute(
                select(messages.c.message_key, messages.c.id).where(
                    among(conn, messages.c.message_key, part)
                )
            )
        )
    answer: list[int | None] = []
    given: set[str] = set()
    for item in items:
        key = item.message_key
        answer.append(ids.get(key) if key in fresh and key not in given else None)
        given.add(key)
    return answer


LOAD_TABLE = "reengage_outbox_load"
# the temporary table COPY fills, described once for `bulk_insert_columns`
_LOAD = Table(LOAD_TABLE, MetaData(), *(c._copy() for c in messages.columns))


def _copy_in(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """PostgreSQL: COPY the rows into a temporary table of the session, then one INSERT ...
    SELECT ... ON CONFLICT DO NOTHING RETURNING: a key queued concurrently is still skipped,
    at the cost of a COPY rather than a parameter set per row. The ids of the rows written,
    by key."""
    names = [c.name for c in messages.columns if c.name in rows[0]]
    listed = ", ".join(f'"{n}"' for n in names)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {LOAD_TABLE} "
        f"(LIKE messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    conn.exec_driver_sql(f"TRUNCATE {LOAD_TABLE}")
    bulk_insert_columns(conn, _LOAD, {n: [r.get(n) for r in rows] for n in names})
    written = conn.exec_driver_sql(
        f"INSERT INTO messages ({listed}) SELECT {listed} FROM {LOAD_TABLE} "
        "ON CONFLICT (message_key) DO NOTHING RETURNING message_key, id"
    )
    return {key: int(id_) for key, id_ in written}


def _insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT for the backend (both state backends have it)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(messages)
    return sqlite.insert(messages)


def _choices(
    conn: Connection, contact_ids: Sequence[int], settings: Settings
) -> dict[int, tuple[str, str]]:
    """(style, language) of each contact: the latest scores' style (`unknown` without one)
    and the contact's language when copy ships for it, else the shop's."""
    found: dict[int, tuple[str, str]] = {}
    for part in chunks(list(contact_ids)):
        styles = {r.contact_id: r.style for r in conn.execute(latest_styles(conn, part))}
        for row in conn.execute(
            select(contacts.c.id, contacts.c.language).where(among(conn, contacts.c.id, part))
        ):
            style = styles.get(row.id) or "unknown"
            found[row.id] = (style, language_for(row.language, settings.language))
    return found


def latest_styles(conn: Connection, contact_ids: Sequence[int]) -> Any:
    """contact_id, style of each contact's latest scores row (those that have one)."""
    ranked = (
        select(
            scores.c.contact_id,
            scores.c.style,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .where(among(conn, scores.c.contact_id, contact_ids))
        .subquery()
    )
    return select(ranked.c.contact_id, ranked.c.style).where(ranked.c.rank == 1)


def _row(item: OutboxItem, choices: Mapping[int, tuple[str, str]], now: datetime) -> dict[str, Any]:
    spec = intent(item.intent)  # UnknownName (an InputError) for an unknown intent
    if item.channel not in DELIVERABLE:
        raise InputError(f"channel {item.channel!r}: reengage delivers on {', '.join(DELIVERABLE)}")
    if not item.message_key or len(item.message_key) > KEY_LENGTH:
        raise InputError(f"message_key must be 1 to {KEY_LENGTH} characters")
    for name in ("journey", "step", "campaign"):
        value = getattr(item, name)
        if value is not None and len(value) > NAME_LENGTH:
            raise InputError(f"{name} must be at most {NAME_LENGTH} characters")
    if not -32768 <= item.priority <= 32767:
        raise InputError("priority must fit in a small integer (-32768 to 32767)")
    if item.variant is not None and item.variant not in VARIANTS:
        raise InputError(f"unknown variant {item.variant!r} (known: {', '.join(VARIANTS)})")
    if item.due_at.tzinfo is None:
        raise InputError("due_at must be a timezone-aware instant")
    if item.contact_id not in choices:
        raise InputError(f"no contact with id {item.contact_id}")
    payload = dict(item.payload or {})
    try:
        json.dumps(payload)
    except (TypeError, ValueError):
        raise InputError(f"{item.message_key}: the payload is not JSON") from None
    style, language = choices[item.contact_id]
    return {
        "message_key": item.message_key,
        "contact_id": item.contact_id,
        "channel": item.channel,
        "intent": spec.id,
        "style": style,
        "language": language,
        "variant": item.variant or variant_for(style),
        "journey": item.journey,
        "step": item.step,
        "campaign": item.campaign,
        "status": "queued",
        "reason": None,
        "priority": item.priority,
        "due_at": as_utc(item.due_at),
        "created_at": now,
        "claimed_at": None,
        "sent_at": None,
        "attempts": 0,
        "provider_id": None,
        "subject": None,
        "offer_code": None,
        "payload": payload,
    }


# --- reading the outbox --------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    """One message as `messages list` shows it (no address, no content but the subject)."""

    id: int
    customer_id: str | None
    contact_id: int
    journey: str | None
    step: str | None
    campaign: str | None
    channel: str
    intent: str
    variant: str | None
    style: str
    language: str
    status: str
    reason: str | None
    priority: int
    attempts: int
    due_at: datetime
    sent_at: datetime | None
    subject: str | None

    @property
    def at(self) -> datetime:
        """When it went, else when it is (or was) due."""
        return self.sent_at or self.due_at

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at
        return data


def find_contact(conn: Connection, key: str) -> int:
    """The contact id for a customer id, email or phone; InputError when none matches."""
    found = conn.execute(select(contacts.c.id).where(contacts.c.customer_id == key)).scalar()
    if found is None:
        found = conn.execute(
            select(identities.c.contact_id)
            .where(identities.c.value == key.strip().lower())
            .limit(1)
        ).scalar()
    if found is None:
        found = conn.execute(
            select(contacts.c.id).where(func.lower(contacts.c.email) == key.strip().lower())
        ).scalar()
    if found is None:
        raise InputError(f"no contact with the id, email or phone {key!r}")
    return int(found)


def list_messages(
    engine: Engine,
    *,
    status: str | None = None,
    contact: str | None = None,
    limit: int | None = 100,
) -> list[OutboxRow]:
    """The outbox, newest first: optionally one status, one contact (customer id, email or
    phone)."""
    if status is not None and status not in MESSAGE_STATUSES:
        raise InputError(f"unknown status {status!r} (known: {', '.join(MESSAGE_STATUSES)})")
    query = (
        select(
            messages.c.id,
            contacts.c.customer_id,
            messages.c.contact_id,
            messages.c.journey,
            messages.c.step,
            messages.c.campaign,
            messages.c.channel,
            messages.c.intent,
            messages.c.variant,
            messages.c.style,
            messages.c.language,
            messages.c.status,
            messages.c.reason,
            messages.c.priority,
            messages.c.attempts,
            messages.c.due_at,
            messages.c.sent_at,
            messages.c.subject,
        )
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .order_by(messages.c.id.desc())
    )
    with engine.connect() as conn:
        if status is not None:
            query = query.where(messages.c.status == status)
        if contact is not None:
            query = query.where(messages.c.contact_id == find_contact(conn, contact))
        if limit is not None:
            query = query.limit(limit)
        rows = conn.execute(query).all()
    return [
        OutboxRow(
            id=r.id,
            customer_id=r.customer_id,
            contact_id=r.contact_id,
            journey=r.journey,
            step=r.step,
            campaign=r.campaign,
            channel=r.channel,
            intent=r.intent,
            variant=r.variant,
            style=r.style,
            language=r.language,
            status=r.status,
            reason=r.reason,
            priority=int(r.priority or 0),
            attempts=int(r.attempts or 0),
            due_at=as_utc(r.due_at),
            sent_at=None if r.sent_at is None else as_utc(r.sent_at),
            subject=r.subject,
        )
        for r in rows
    ]
