"""The tables of the web side (API keys, dashboard users, the erasure log) and of retargeting
and social (conversion events sent, messaging-app conversations, referral codes), in the one
`metadata` of `schema`, which imports them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from reengage.state.metadata import Id, metadata

# --- web: API keys, dashboard users, the erasure log ------------------------------------------

API_SCOPES = ("read", "write", "admin")

# Only a hash of each key is kept: the key itself is printed once, when it is created.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("prefix", String(16), nullable=False, unique=True),  # shown in listings
    Column("key_hash", String(64), nullable=False),
    Column("scope", String(8), nullable=False),
    Column("note", String(200)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),  # argon2id
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_login_at", DateTime(timezone=True)),
    Column("disabled_at", DateTime(timezone=True)),
)

# What an erasure removed, by count, and who asked; never the person's data itself.
erasures = Table(
    "erasures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, nullable=False),  # the id the person had; it points at nothing now
    Column("requested_by", String(64), nullable=False),  # "api:<key prefix>", "cli"
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("removed", JSON, nullable=False),  # {"contacts": 1, "events": 12, ...}
)

# --- retargeting and social: conversion events sent, conversations, referral codes -----------

CONVERSION_PLATFORMS = ("meta", "google")
CONVERSATION_CHANNELS = ("whatsapp", "messenger", "instagram")
CONVERSATION_STATUSES = ("open", "waiting", "solved")

# Every server-side conversion event reengage sent (or decided not to send), once per
# platform and event id: the same id the browser's pixel used, so the platform deduplicates.
conversion_sends = Table(
    "conversion_sends",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(16), nullable=False),
    Column("event_name", String(64), nullable=False),  # Purchase, AddToCart, Lead, ...
    Column("event_id", String(200), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),  # queued, sent, failed, skipped
    Column("reason", String(500)),  # why skipped or failed (never personal data)
    Column("attempts", Integer, nullable=False, default=0),
    Column("payload", JSON, nullable=False, default=dict),  # what was sent (hashed ids only)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("platform", "event_id", name="uq_conversion_sends_platform_event"),
    Index("ix_conversion_sends_status", "status", "platform"),
)

# A thread with a person in a messaging app, routed to the shop's support.
conversations = Table(
    "conversations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("channel", String(16), nullable=False),
    Column("external_id", String(200), nullable=False),  # the WhatsApp number, the page-scoped id
    Column("status", String(16), nullable=False),  # open, waiting, solved
    Column("assignee", String(320)),
    Column("last_inbound_at", DateTime(timezone=True)),  # opens the 24-hour window
    Column("last_outbound_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("channel", "external_id", name="uq_conversations_channel_external"),
)

conversation_messages = Table(
    "conversation_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        Id,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("direction", String(3), nullable=False),  # in, out
    Column("kind", String(16), nullable=False),  # text, template, ...
    Column("body", Text),
    Column("template", String(200)),
    Column("provider_id", String(200), unique=True),  # the platform's message id (dedup)
    Column("status", String(16), nullable=False),  # received, sent, delivered, read, failed
    Column("at", DateTime(timezone=True), nullable=False),
)

# One referral code per customer: orders that redeem it are the referrals they brought.
referral_codes = Table(
    "referral_codes",
    metadata,
    Column("code", String(64), primary_key=True),
    Column(
        "contact_id",
        Id,
        ForeignKey("contacts.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
