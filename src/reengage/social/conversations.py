"""Conversations on the messaging apps, and the rules for writing into them.

One conversation per (channel, external id): the WhatsApp number (`wa_id`, digits without the
plus), or the page-scoped (Messenger) or Instagram-scoped id. Each belongs to a contact:

- WhatsApp: the contact whose phone is that number (however the import spelled it, as for
  SMS replies: `sms_replies.contacts_with_phone`; the lowest id when several share it), or a
  new contact with that phone (origin `whatsapp`) when nobody has it.
- Messenger / Instagram: the scoped id says nothing about who the person is, so a new contact
  (origin `messenger` / `instagram`) is made for it.

Support routing: every conversation has an assignee (an email, or nobody) and a status.
Anything the person writes makes it `open` (a new one, a `waiting` one, a `solved` one); an
answer from the shop makes it `waiting`; `solved` is set by hand.

The 24-hour customer service window: a free-form message (WhatsApp text, a Messenger
`RESPONSE`) may be sent only within 24 hours of the person's last message, by the clock
(`last_inbound_at`, the platform's time of that message, never later than when it arrived).
Outside it `reply` refuses with `WindowClosed` and sends nothing; on WhatsApp an approved
template can still be sent.

Opt-in: WhatsApp requires it before a business writes first. A template goes out only to a
contact whose latest `whatsapp`/`marketing` consent is granted; a template sent as
`purpose="transactional"` (an order or delivery update, Meta's utility templates) also
accepts a granted `whatsapp`/`transactional` consent. A reply inside the window needs no
consent: the person wrote first.

Idempotency: messages are stored once per platform message id (`provider_id`), so a webhook
Meta delivers twice changes nothing the second time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from reengage.channels.sms import e164
from reengage.clock import Clock, as_utc
from reengage.config import Settings
from reengage.errors import InputError, ReengageError
from reengage.state.contacts import current_consent
from reengage.state.schema import (
    contacts,
    conversation_messages,
    conversations,
    identities,
)

WINDOW = timedelta(hours=24)
# a status report never moves a message back (a late "delivered" after "read")
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}


class WindowClosed(ReengageError):
    """A free-form message outside the 24-hour customer service window."""


class NoOptIn(ReengageError):
    """A business-initiated WhatsApp message to a contact who has not opted in."""


@dataclass(frozen=True)
class Inbound:
    """A message the person sent."""

    channel: str
    external_id: str
    provider_id: str
    at: datetime | None
    kind: str = "text"
    body: str | None = None


@dataclass(frozen=True)
class StatusChange:
    """What the platform says became of a message the shop sent."""

    channel: str
    provider_id: str
    status: str
    at: datetime | None = None


@dataclass(frozen=True)
class ReadUpTo:
    """The person read everything sent to them up to `at` (Messenger's read watermark)."""

    channel: str
    external_id: str
    at: datetime


# ---- contacts and conversations ------------------------------------------------------------


def _new_contact(conn: Connection, origin: str, key: str, phone: str | None, now: datetime) -> int:
    customer_id = f"{origin}-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    found = conn.execute(select(contacts.c.id).where(contacts.c.customer_id == customer_id)).first()
    if found is not None:
        return int(found.id)
    key_row = conn.execute(
        contacts.insert().values(
            customer_id=customer_id,
            phone=phone,
            created_at=now,
            updated_at=now,
            origin=origin,
            attributes={},
        )
    ).inserted_primary_key
    assert key_row is not None
    contact_id = int(key_row[0])
    rows = [{"kind": "customer_id", "value": customer_id}]
    if phone:
        rows.append({"kind": "phone", "value": phone})
    conn.execute(
        identities.insert(),
        [{"contact_id": contact_id, "first_seen": now, **r} for r in rows],
    )
    return contact_id


def contact_for(conn: Connection, channel: str, external_id: str, now: datetime) -> int:
    """The contact a new conversation belongs to (see the module's notes); made if needed."""
    if channel == "whatsapp":
        from reengage.channels.sms_replies import contacts_with_phone

        number = e164("+" + external_id.lstrip("+"))
        if number is not None:
            owners = contacts_with_phone(conn, number)
            if owners:
                return owners[0]
        return _new_contact(conn, "whatsapp", external_id, number, now)
    return _new_contact(conn, channel, external_id, None, now)


def _conversation(conn: Connection, channel: str, external_id: str) -> Any:
    return conn.execute(
        select(conversations).where(
            conversations.c.channel == channel, conversations.c.external_id == external_id
        )
    ).first()


def open_conversation(
    conn: Connection,
    channel: str,
    external_id: str,
    now: datetime,
    *,
    contact_id: int | None = None,
    status: str = "open",
) -> Any:
    """The conversation for (channel, external id), made (with status) when there is none."""
    found = _conversation(conn, channel, external_id)
    if found is not None:
        return found
    owner = contact_id if contact_id is not None else contact_for(conn, channel, external_id, now)
    try:
        with conn.begin_nested():
            conn.execute(
                conversations.insert().values(
                    contact_id=owner,
                    channel=channel,
                    external_id=external_id,
                    status=status,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:  # made by a concurrent delivery of the same webhook
        pass
    return _conversation(conn, channel, external_id)


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Whether a free-form message may be sent now: the person wrote within 24 hours."""
    return last_inbound_at is not None and now - as_utc(last_inbound_at) < WINDOW


def _insert_message(conn: Connection, values: dict[str, Any]) -> bool:
    try:
        with conn.begin_nested():
            conn.execute(conversation_messages.insert().values(**values))
    except IntegrityError:  # the same provider id: stored already
        return False
    return True


# ---- what comes in -------------------------------------------------------------------------


def record_inbound(conn: Connection, message: Inbound, now: datetime) -> bool:
    """Store a message the person sent and (re)open its conversation; False when it was
    stored already (a repeated webhook)."""
    known = conn.execute(
        select(conversation_messages.c.id).where(
            conversation_messages.c.provider_id == message.provider_id
        )
    ).first()
    if known is not None:
        return False
    conv = open_conversation(conn, message.channel, message.external_id, now)
    at = min(as_utc(message.at), now) if message.at is not None else now
    stored = _insert_message(
        conn,
        {
            "conversation_id": conv.id,
            "direction": "in",
            "kind": message.kind[:16],
            "body": message.body,
            "provider_id": message.provider_id,
            "status": "received",
            "at": at,
        },
    )
    if not stored:
        return False
    last = as_utc(conv.last_inbound_at) if conv.last_inbound_at is not None else None
    conn.execute(
        conversations.update()
        .where(conversations.c.id == conv.id)
        .values(
            status="open",
            last_inbound_at=at if last is None or at > last else last,
            updated_at=now,
        )
    )
    return True


def record_status(conn: Connection, change: StatusChange) -> bool:
    """Apply a status report to the shop's message it names; False when it names none or
    would move it backwards."""
    row = conn.execute(
        select(conversation_messages.c.id, conversation_messages.c.status).where(
            conversation_messages.c.provider_id == change.provider_id,
            conversation_messages.c.direction == "out",
        )
    ).first()
    if row is None or STATUS_RANK.get(change.status, 0) <= STATUS_RANK.get(row.status, 0):
        return False
    conn.execute(
        conversation_messages.update()
        .where(conversation_messages.c.id == row.id)
        .values(status=change.status)
    )
    return True


def record_read(conn: Connection, read: ReadUpTo) -> int:
    """Mark the shop's messages up to the watermark read; how many changed."""
    conv = _conversation(conn, read.channel, read.external_id)
    if conv is None:
        return 0
    m = conversation_messages
    result = conn.execute(
        m.update()
        .where(
            m.c.conversation_id == conv.id,
            m.c.direction == "out",
            m.c.at <= read.at,
            m.c.status.in_(("sent", "delivered")),
        )
        .values(status="read")
    )
    return int(result.rowcount or 0)


def receive(
    engine: Engine, items: list[Inbound | StatusChange | ReadUpTo], now: datetime
) -> dict[str, int]:
    """Store what a webhook brought, in one transaction: {"messages": new messages stored,
    "statuses": status changes applied}."""
    counts = {"messages": 0, "statuses": 0}
    with engine.begin() as conn:
        for item in items:
            if isinstance(item, Inbound):
                counts["messages"] += record_inbound(conn, item, now)
            elif isinstance(item, StatusChange):
                counts["statuses"] += record_status(conn, item)
            else:
                counts["statuses"] += record_read(conn, item)
    return counts


# ---- what goes out -------------------------------------------------------------------------


def _record_outbound(
    engine: Engine,
    conversation_id: int,
    now: datetime,
    *,
    kind: str,
    body: str | None,
    template: str | None,
    provider_id: str,
    status: str,
) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            conversation_messages.insert().values(
                conversation_id=conversation_id,
                direction="out",
                kind=kind,
                body=body,
                template=template,
                provider_id=provider_id,
                status="sent",
                at=now,
            )
        ).inserted_primary_key
        conn.execute(
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(status=status, last_outbound_at=now, updated_at=now)
        )
    assert key is not None
    return int(key[0])


def send_template(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    contact_id: int,
    name: str,
    *,
    language: str = "en",
    components: list[dict[str, Any]] | None = None,
    purpose: str = "marketing",
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Send an approved WhatsApp template to an opted-in contact: {"conversation_id",
    "message_id", "provider_id"}. Raises NoOptIn (nothing sent) without the consent."""
    from reengage.social.whatsapp import WhatsAppCloud

    if purpose not in ("marketing", "transactional"):
        raise InputError(f"purpose {purpose!r}: marketing or transactional")
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.phone, contacts.c.country).where(contacts.c.id == contact_id)
        ).first()
        if row is None:
            raise InputError(f"contact {contact_id}: no such contact")
        granted = current_consent(conn, contact_id, "whatsapp", "marketing") is True
        if purpose == "transactional" and not granted:
            granted = current_consent(conn, contact_id, "whatsapp", "transactional") is True
    if not granted:
        raise NoOptIn(
            f"contact {contact_id} has not opted in to WhatsApp ({purpose}): "
            "no template is sent without it"
        )
    number = e164(row.phone or "", row.country)
    if number is None:
        raise InputError(f"contact {contact_id}: no valid phone number for WhatsApp")
    cloud = WhatsAppCloud.from_settings(settings, client)
    try:
        wamid = cloud.send(cloud.template_payload(number, name, language, components))
    finally:
        cloud.close()
    now = clock.now()
    with engine.begin() as conn:
        conv = open_conversation(
            conn, "whatsapp", number.lstrip("+"), now, contact_id=contact_id, status="waiting"
        )
    status = "solved" if conv.status == "solved" else "waiting"
    message_id = _record_outbound(
        engine,
        conv.id,
        now,
        kind="template",
        body=None,
        template=f"{name}:{language}",
        provider_id=wamid,
        status=status,
    )
    return {"conversation_id": conv.id, "message_id": message_id, "provider_id": wamid}


def reply(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    conversation_id: int,
    text: str,
    *,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Answer a conversation with free-form text: {"conversation_id", "message_id",
    "provider_id"}. Raises WindowClosed (nothing sent) outside the 24-hour window."""
    from reengage.social.messenger import MessengerSend
    from reengage.social.whatsapp import WhatsAppCloud

    if not text.strip():
        raise InputError("the reply is empty")
    conv = get_conversation(engine, conversation_id)
    now = clock.now()
    if not window_open(conv.last_inbound_at, now):
        since = (
            f"the person last wrote at {as_utc(conv.last_inbound_at).isoformat()}"
            if conv.last_inbound_at is not None
            else "the person has not written yet"
        )
        hint = (
            "; send an approved template instead (reengage conversations template)"
            if conv.channel == "whatsapp"
            else ""
        )
        raise WindowClosed(
            f"conversation {conversation_id}: the 24-hour customer service window is closed "
            f"({since}), a free-form {conv.channel} message is not allowed{hint}"
        )
    sender: WhatsAppCloud | MessengerSend
    if conv.channel == "whatsapp":
        sender = WhatsAppCloud.from_settings(settings, client)
        payload = sender.text_payload("+" + conv.external_id, text)
    else:
        sender = MessengerSend.from_settings(settings, client)
        payload = sender.text_payload(conv.external_id, text)
    try:
        provider_id = sender.send(payload)
    finally:
        sender.close()
    message_id = _record_outbound(
        engine,
        conversation_id,
        now,
        kind="text",
        body=text,
        template=None,
        provider_id=provider_id,
        status="waiting",
    )
    return {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "provider_id": provider_id,
    }


# ---- support -------------------------------------------------------------------------------


def get_conversation(engine: Engine, conversation_id: int) -> Any:
    with engine.connect() as conn:
        row = conn.execute(
            select(conversations).where(conversations.c.id == conversation_id)
        ).first()
    if row is None:
        raise InputError(f"conversation {conversation_id}: no such conversation")
    return row
