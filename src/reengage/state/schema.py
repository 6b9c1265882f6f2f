"""The state tables. Migrations in `migrations/versions` create them; keep the two in step.

Why these shapes:
- a contact is a person; `identities` maps every key that points at them (the shop's customer
  id, email, phone, anonymous cookie ids) so any source can find the same person;
- `consents` is a history, never updated in place: the current permission for a channel and
  purpose is the latest row, and the older rows are the proof of what was allowed when.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from reengage.state.metadata import Id as Id
from reengage.state.metadata import metadata as metadata

# The web side's and retargeting's tables are in schema_web (this file had grown past 500
# lines); re-exported here, so every table is still found in one place.
from reengage.state.schema_web import (
    API_SCOPES as API_SCOPES,
)
from reengage.state.schema_web import (
    CONVERSATION_CHANNELS as CONVERSATION_CHANNELS,
)
from reengage.state.schema_web import (
    CONVERSATION_STATUSES as CONVERSATION_STATUSES,
)
from reengage.state.schema_web import (
    CONVERSION_PLATFORMS as CONVERSION_PLATFORMS,
)
from reengage.state.schema_web import api_keys as api_keys
from reengage.state.schema_web import conversation_messages as conversation_messages
from reengage.state.schema_web import conversations as conversations
from reengage.state.schema_web import conversion_sends as conversion_sends
from reengage.state.schema_web import erasures as erasures
from reengage.state.schema_web import referral_codes as referral_codes
from reengage.state.schema_web import users as users

IDENTITY_KINDS = ("customer_id", "email", "phone", "anonymous_id")
CHANNELS = ("email", "sms", "push", "whatsapp", "ads", "onsite")
PURPOSES = ("marketing", "profiling", "transactional")

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("customer_id", String(128), unique=True),
    Column("email", String(320), index=True),
    Column("phone", String(32)),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("language", String(8)),
    Column("country", String(2)),
    Column("city", String(200)),
    Column("timezone", String(64)),
    Column("birthday", Date),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # how the contact first reached us: "customers" (imported), "orders", "events", ...
    Column("origin", String(32), nullable=False),
    Column("attributes", JSON, nullable=False, default=dict),
)

identities = Table(
    "identities",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("kind", String(16), nullable=False),
    Column("value", String(320), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "value", name="uq_identities_kind_value"),
)

consents = Table(
    "consents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("source", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "contact_id", "channel", "purpose", "recorded_at", name="uq_consents_contact_moment"
    ),
    Index("ix_consents_contact_channel", "contact_id", "channel", "purpose"),
)

products = Table(
    "products",
    metadata,
    Column("product_id", String(128), primary_key=True),
    Column("title", String(500)),
    Column("category", String(200), index=True),
    Column("brand", String(200)),
    Column("price", Numeric(14, 2)),
    Column("currency", String(3)),
    Column("url", String(2000)),
    Column("image_url", String(2000)),
    Column("description", Text),
    Column("in_stock", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("origin", String(32), nullable=False),
)

imports = Table(
    "imports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("format", String(16), nullable=False),
    # the file's name only: a path may say whose machine it came from
    Column("file_name", String(500), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("read", Integer, nullable=False),
    Column("imported", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("created_contacts", Integer, nullable=False),
    Column("created_products", Integer, nullable=False),
    Column("rejects_file", String(1000)),
)

# One row per contact and scoring date: the history lets later steps see changes ("became at
# risk") and lets a past date be scored again without touching the others.
scores = Table(
    "scores",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("orders", Integer, nullable=False),
    Column("recency_days", Float),
    Column("frequency", Integer),
    Column("monetary", Float),
    Column("total_spent", Float, nullable=False),
    Column("tenure_days", Float),
    Column("r", SmallInteger),
    Column("f", SmallInteger),
    Column("m", SmallInteger),
    Column("rfm_segment", String(32)),
    Column("lifecycle", String(16), nullable=False),
    Column("threshold_days", Float, nullable=False),
    Column("p_alive", Float),
    Column("expected_purchases_90d", Float),
    Column("expected_next_order_at", DateTime(timezone=True)),
    Column("expected_order_value", Float),
    Column("clv", Float),
    Column("style", String(16)),
    Column("style_confidence", Float),
    Column("p_go_getter", Float),
    Column("p_promoter", Float),
    Column("p_nurturer", Float),
    Column("p_examiner", Float),
    Column("style_source", String(16)),
    # every other feature, as computed (docs/understanding.md lists them)
    Column("details", JSON, nullable=False),
    UniqueConstraint("contact_id", "as_of", name="uq_scores_contact_as_of"),
    Index("ix_scores_as_of", "as_of"),
)

# paused and cancelled: rows of a campaign paused or cancelled before they went
MESSAGE_STATUSES = (
    "queued",
    "sending",
    "sent",
    "failed",
    "blocked",
    "deferred",
    "paused",
    "cancelled",
)
SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "sunset", "stop", "erased")

# The outbox and the log of every message: a row is written (queued) in the same transaction
# that decides to send, claimed by a channel worker (sending), then marked sent or failed.
# `message_key` makes the decision idempotent (journey, enrollment and step, or campaign and
# contact); the Message-ID and provider idempotency keys derive from `id`.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_key", String(200), nullable=False, unique=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("intent", String(32), nullable=False),
    Column("style", String(16), nullable=False),
    Column("language", String(8), nullable=False),
    Column("variant", String(64)),
    Column("journey", String(100)),
    Column("step", String(100)),
    Column("campaign", String(100)),
    Column("status", String(16), nullable=False),
    # why a message was blocked, deferred or failed (never personal data)
    Column("reason", String(500)),
    Column("priority", SmallInteger, nullable=False, default=0),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("claimed_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    # set just before the channel's irreversible write (SMTP's final dot, the provider's
    # HTTP request): a row found `sending` with it after a crash is not sent again
    Column("handed_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider_id", String(200)),
    Column("subject", String(500)),
    Column("offer_code", String(64)),
    # what the template needs beyond the contact (cart lines, products), as decided
    Column("payload", JSON, nullable=False, default=dict),
    Index("ix_messages_status_due", "status", "due_at"),
    Index("ix_messages_contact", "contact_id", "created_at"),
    Index("ix_messages_campaign", "campaign", "contact_id"),
    # the sliding window of a channel's rate limit counts recent claims
    Index("ix_messages_channel_claimed", "channel", "claimed_at"),
)

# Addresses that must not be contacted again on a channel, whoever they belong to now.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),
    # normalised: lower-case email, E.164 phone, push endpoint
    Column("address", String(2000), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("reason", String(16), nullable=False),
    Column("source", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("channel", "address", name="uq_suppressions_channel_address"),
)

# Single-use discount codes: issued to one contact, redeemed by a matching imported order.
offers = Table(
    "offers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("intent", String(32), nullable=False),
    # the rung of the escalation ladder this offer stands on (0 = no incentive)
    Column("level", SmallInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # percent, amount, free_shipping
    Column("value", Numeric(14, 2), nullable=False),
    Column("max_discount", Numeric(14, 2)),
    Column("currency", String(3), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False),  # issued, redeemed, expired
    Column("redeemed_at", DateTime(timezone=True)),
    Column("order_id", String(128)),
    Index("ix_offers_contact", "contact_id", "issued_at"),
)

push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint", String(2000), nullable=False, unique=True),
    Column("p256dh", String(200), nullable=False),
    Column("auth", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# Who is in which ad audience, and what the platforms have been told: incremental add/remove.
audience_members = Table(
    "audience_members",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("audience", String(100), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("left_at", DateTime(timezone=True)),
    # when the platforms last received this membership's current state (null: pending)
    Column("synced_at", DateTime(timezone=True)),
    UniqueConstraint("audience", "contact_id", name="uq_audience_members_audience_contact"),
)

# Segments: the definition is the YAML file in <home>/segments/; `segments` remembers each
# one's last refresh, `segment_members` its current members (a refresh writes differences),
# `segment_transitions` the history of entries and exits (its increasing id lets a journey
# read "what happened since").
SEGMENT_NAME_LENGTH = 100

segments = Table(
    "segments",
    metadata,
    Column("name", String(SEGMENT_NAME_LENGTH), primary_key=True),
    Column("description", Text),
    # the rule as it was last evaluated (the YAML file may have changed since)
    Column("rule", Text, nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False),
    Column("size", Integer, nullable=False),
    Column("entered", Integer, nullable=False),
    Column("exited", Integer, nullable=False),
)

segment_members = Table(
    "segment_members",
    metadata,
    Column("segment", String(SEGMENT_NAME_LENGTH), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Index("ix_segment_members_contact_id", "contact_id"),
)

segment_transitions = Table(
    "segment_transitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("segment", String(SEGMENT_NAME_LENGTH), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),  # enter, exit
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_segment_transitions_segment_at", "segment", "at"),
    Index("ix_segment_transitions_contact_id", "contact_id"),
)

# Journeys: an enrollment is one contact's passage through one journey, from its trigger to
# its end; `step` and `due_at` are where it stands and when it moves next. The unique
# (journey, contact, trigger_key) makes entering idempotent: a trigger seen twice (a rescan, a
# replay) enters once. `enrollment_steps` is the log of every step run (the journey drawn
# with its counts, `journeys simulate`, audits); `journey_cursors` how far each journey's
# trigger has been scanned, so a restart neither misses nor repeats an entry.
ENROLLMENT_STATUSES = ("active", "done", "goal", "held_out", "ended")

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("journey", String(100), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("trigger_key", String(200), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", String(100)),
    Column("due_at", DateTime(timezone=True)),
    # the A/B variants drawn so far, "split=variant" joined by ";"
    Column("variants", String(500), nullable=False, default=""),
    Column("digest", String(64), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("reason", String(200)),
    Column("steps_run", Integer, nullable=False, default=0),
    # what the trigger knew (the product of a cart, the order): read by send steps
    Column("payload", JSON, nullable=False, default=dict),
    UniqueConstraint("journey", "contact_id", "trigger_key", name="uq_enrollments_trigger"),
    Index("ix_enrollments_status_due", "status", "due_at", "id"),
    Index("ix_enrollments_contact", "contact_id", "journey"),
)

enrollment_steps = Table(
    "enrollment_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("enrollment_id", Id, ForeignKey("enrollments.id", ondelete="CASCADE"), nullable=False),
    Column("journey", String(100), nullable=False),
    Column("step", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    # what the step did: queued, waiting, then, else, variant NAME, held_out, ...
    Column("outcome", String(200), nullable=False),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="SET NULL")),
    Index("ix_enrollment_steps_enrollment", "enrollment_id"),
    Index("ix_enrollment_steps_journey_step", "journey", "step"),
    # a message deleted (a person erased) sets its steps' message_id to null: found by index
    Index("ix_enrollment_steps_message_id", "message_id"),
)

journey_cursors = Table(
    "journey_cursors",
    metadata,
    Column("journey", String(100), primary_key=True),
    # every trigger firing at or before this instant has been considered
    Column("scanned_until", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Campaigns: the definition is the YAML file in <home>/campaigns/; the row is its run, with
# the definition as scheduled (`definition`, `digest`: editing the file later changes
# nothing already under way). `campaign_recipients` is the audience frozen at start: who,
# in which group (test, rest, holdout), which test arm, when to send, and why they are in
# (the segment they matched and since when).
CAMPAIGN_STATUSES = (
    "draft",
    "scheduled",
    "sending",
    "testing",
    "paused",
    "done",
    "cancelled",
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("status", String(16), nullable=False),
    # how far the work is (a checkpoint): null, frozen, test_queued, decided, queued
    Column("phase", String(16)),
    Column("definition", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("start_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("frozen_at", DateTime(timezone=True)),
    Column("decide_at", DateTime(timezone=True)),
    Column("decided_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # one worker at a time moves a campaign on (freezing, queueing, deciding)
    Column("lease_until", DateTime(timezone=True)),
    Column("audience", Integer),
    Column("excluded", Integer),
    Column("holdout", Integer),
    Column("winner", String(64)),
    Column("decision", JSON),
    Column("reason", String(500)),
)

campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("campaign", String(100), primary_key=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("grp", String(8), nullable=False),  # test, rest, holdout
    Column("arm", String(64)),
    Column("send_at", DateTime(timezone=True)),
    Column("segment", String(100), nullable=False),
    Column("entered_at", DateTime(timezone=True)),
    Index("ix_campaign_recipients_contact_id", "contact_id"),
)
