"""Addresses that must not be contacted again on a channel: unsubscribed, bounced, complained,
answered STOP, sunset or erased. Every channel checks here before it sends, and every
unsubscribe path (link, List-Unsubscribe, STOP reply, DSN, provider webhook) writes here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from reengage.state.db import insert_new
from reengage.state.schema import SUPPRESSION_REASONS, suppressions


def normalise_address(channel: str, address: str) -> str:
    """The form suppressions are stored and looked up in: emails lower-cased and trimmed,
    phones without spaces or punctuation (E.164 as given), other addresses trimmed."""
    value = address.strip()
    if channel == "email":
        return value.lower()
    if channel in ("sms", "whatsapp"):
        return "+" + "".join(ch for ch in value if ch.isdigit()) if value else value
    return value


def suppress(
    conn: Connection,
    channel: str,
    address: str,
    reason: str,
    *,
    source: str,
    at: datetime,
    contact_id: int | None = None,
) -> bool:
    """Record that address must not be contacted on channel. Idempotent: True when this call
    added the suppression, False when the address was suppressed already."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    value = normalise_address(channel, address)
    if is_suppressed(conn, channel, value):
        return False
    added = insert_new(
        conn,
        suppressions,
        {
            "channel": channel,
            "address": value,
            "contact_id": contact_id,
            "reason": reason,
            "source": source,
            "recorded_at": at,
        },
    )
    return added is not None  # None: a concurrent writer suppressed it first


def is_suppressed(conn: Connection, channel: str, address: str) -> bool:
    value = normalise_address(channel, address)
    found = conn.execute(
        select(suppressions.c.id).where(
            suppressions.c.channel == channel, suppressions.c.address == value
        )
    ).first()
    return found is not None


def suppression_reason(conn: Connection, channel: str, address: str) -> str | None:
    value = normalise_address(channel, address)
    return conn.execute(
        select(suppressions.c.reason).where(
            suppressions.c.channel == channel, suppressions.c.address == value
        )
    ).scalar_one_or_none()
