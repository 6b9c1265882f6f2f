"""The contact policy, rule by rule: through the state store on SQLite and PostgreSQL, and the
wall-time arithmetic (quiet hours, local days) across DST on the pure core."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, event, select

from reengage.channels.caps import Counted
from reengage.channels.policy import (
    Decision,
    PolicyFacts,
    SendRequest,
    apply_bumps,
    check,
    check_many,
    decide,
    describe,
)
from reengage.channels.quiet_hours import QuietHours, day_start, wall_instants
from reengage.config import Settings
from reengage.state.schema import consents, contacts, messages, scores, suppressions

# Monday 2 November 2026, 11:00 in Rome (CET, UTC+1)
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
ROME = ZoneInfo("Europe/Rome")
_keys = itertools.count(1)


# --- state helpers (the property tests use them too) ------------------------------------------


def add_contact(
    conn: Connection,
    *,
    email: str | None = "ada@example.com",
    phone: str | None = None,
    country: str | None = None,
    timezone: str | None = "Europe/Rome",
) -> int:
    key = next(_keys)
    result = conn.execute(
        contacts.insert().values(
            customer_id=f"P{key}",
            email=email,
            phone=phone,
            country=country,
            timezone=timezone,
            created_at=T0 - timedelta(days=400),
            updated_at=T0 - timedelta(days=400),
            origin="customers",
            attributes={},
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def add_consent(
    conn: Connection,
    contact_id: int,
    channel: str = "email",
    purpose: str = "marketing",
    granted: bool = True,
    at: datetime = T0 - timedelta(days=30),
) -> None:
    conn.execute(
        consents.insert().values(
            contact_id=contact_id,
            channel=channel,
            purpose=purpose,
            granted=granted,
            source="test",
            recorded_at=at,
        )
    )


def add_message(
    conn: Connection,
    contact_id: int,
    at: datetime,
    *,
    channel: str = "email",
    intent: str = "cross_sell",
    status: str = "sent",
    priority: int = 20,
) -> int:
    result = conn.execute(
        messages.insert().values(
            message_key=f"test:{next(_keys)}",
            contact_id=contact_id,
            channel=channel,
            intent=intent,
            style="neutral",
            language="en",
            status=status,
            priority=priority,
            due_at=at,
            created_at=at - timedelta(minutes=5),
            claimed_at=at if status in ("sending", "sent") else None,
            sent_at=at if status == "sent" else None,
            attempts=0,
            payload={},
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def add_suppression(conn: Connection, channel: str, address: str, reason: str) -> None:
    conn.execute(
        suppressions.insert().values(
            channel=channel, address=address, reason=reason, source="test", recorded_at=T0
        )
    )


def add_score(conn: Connection, contact_id: int, as_of: datetime, recency_days: float) -> None:
    conn.execute(
        scores.insert().values(
            contact_id=contact_id,
            as_of=as_of,
            computed_at=as_of,
            orders=1,
            recency_days=recency_days,
            total_spent=10.0,
            lifecycle="active",
            threshold_days=60.0,
            details={},
        )
    )


def shaped(settings: Settings, **changes: Any) -> Settings:
    """The fixture's settings with policy settings changed (validated like the real ones)."""
    return Settings(**{**settings.model_dump(), **changes})


def consenting(conn: Connection, **kwargs: Any) -> int:
    """A contact with every channel allowed for every purpose."""
    contact_id = add_contact(conn, **kwargs)
    for channel in ("email", "sms", "push"):
        for purpose in ("marketing", "transactional"):
            add_consent(conn, contact_id, channel, purpose)
    return contact_id


# --- consent -----------------------------------------------------------------------------------


def test_absent_consent_blocks(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = add_contact(conn)
        decision = check(conn, cid, "email", "marketing", 20, T0, settings)
    assert decision == Decision.block("no_consent")
    assert decision.text == "blocked: no current consent for this channel and purpose"


def test_latest_consent_row_wins(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        withdrawn = add_contact(conn, email="a@example.com")
        add_consent(conn, withdrawn, at=T0 - timedelta(days=9))
        add_consent(conn, withdrawn, granted=False, at=T0 - timedelta(days=2))
        regranted = add_contact(conn, email="b@example.com")
        add_consent(conn, regranted, granted=False, at=T0 - timedelta(days=9))
        add_consent(conn, regranted, at=T0 - timedelta(days=2))
        assert check(conn, withdrawn, "email", "marketing", 20, T0, settings).reason == "no_consent"
        assert check(conn, regranted, "email", "marketing", 20, T0, settings).allowed


def test_consent_is_per_channel_and_purpose(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = add_contact(conn, phone="+39 333 123 4567")
        add_consent(conn, cid, "email", "marketing")
        assert check(conn, cid, "email", "marketing", 20, T0, settings).allowed
        assert check(conn, cid, "sms", "marketing", 20, T0, settings).reason == "no_consent"
        assert check(conn, cid, "sms", "transactional", 20, T0, settings).reason == "no_consent"
        add_consent(conn, cid, "sms", "transactional")
        assert check(conn, cid, "sms", "transactional", 20, T0, settings).allowed


def test_service_email_to_a_customer_needs_no_opt_in_but_a_refusal_blocks_it(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        customer = add_contact(conn)
        assert check(conn, customer, "email", "transactional", 20, T0, settings).allowed
        assert not check(conn, customer, "email", "marketing", 20, T0, settings).allowed
        add_consent(conn, customer, "email", "transactional", granted=False)
        refused = check(conn, customer, "email", "transactional", 20, T0, settings)
        assert refused.reason == "no_consent"
        visitor = conn.execute(
            contacts.insert().values(
                email="visitor@example.com",
                created_at=T0,
                updated_at=T0,
                origin="test",
                attributes={},
            )
        ).inserted_primary_key[0]
        visit = check(conn, visitor, "email", "transactional", 20, T0, settings)
        assert visit.reason == "no_consent"


def test_unknown_contact_is_never_contacted(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        assert check(conn, 999_999, "email", "marketing", 20, T0, settings).reason == "no_consent"


# --- address and suppression -------------------------------------------------------------------


def test_no_address_on_the_channel_blocks(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn, email=None, phone=None)
        assert check(conn, cid, "email", "marketing", 20, T0, settings).reason == "no_address"
        assert check(conn, cid, "sms", "marketing", 20, T0, settings).reason == "no_address"
        # push endpoints are the push channel's business
        assert check(conn, cid, "push", "marketing", 20, T0, settings).allowed
        invalid = consenting(conn, email="x@example.com", phone="12")
        assert check(conn, invalid, "sms", "marketing", 20, T0, settings).reason == "no_address"


def test_suppressed_address_blocks_with_its_reason(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn, email=" Ada@Example.COM", phone="333 123 4567", country="IT")
        other = consenting(conn, email="bob@example.com", phone="+39 333 765 4321")
        add_suppression(conn, "email", "ada@example.com", "unsubscribed")
        add_suppression(conn, "sms", "+393331234567", "stop")
        email = check(conn, cid, "email", "marketing", 20, T0, settings)
        assert email == Decision.block("suppressed:unsubscribed")
        assert "ada" not in email.text.lower()
        sms = check(conn, cid, "sms", "transactional", 20, T0, settings)
        assert sms.reason == "suppressed:stop"
        assert check(conn, other, "email", "marketing", 20, T0, settings).allowed
        assert check(conn, other, "sms", "marketing", 20, T0, settings).allowed


# --- frequency caps ----------------------------------------------------------------------------


def test_day_cap_defers_to_the_next_local_midnight(engine: Engine, settings: Settings) -> None:
    quiet_off = shaped(settings, quiet_hours="off")
    with engine.begin() as conn:
        cid = consenting(conn)
        add_message(conn, cid, T0 - timedelta(hours=2))  # 09:00 Rome, today
        add_message(conn, cid, T0 - timedelta(hours=11))  # 00:00 Rome: today too
        decision = check(conn, cid, "email", "marketing", 20, T0, quiet_off)
    assert decision.action == "defer" and decision.reason == "cap:email:day"
    assert decision.until == datetime(2026, 11, 2, 23, 0, tzinfo=UTC)  # midnight in Rome


def test_day_cap_deferral_waits_for_quiet_hours_to_end(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        add_message(conn, cid, T0 - timedelta(hours=1))
        decision = check(conn, cid, "email", "marketing", 20, T0, settings)
    assert decision.reason == "cap:email:day"
    assert decision.until == datetime(2026, 11, 3, 8, 0, tzinfo=UTC)  # 09:00 Rome, next day


def test_day_is_the_contacts_calendar_day(engine: Engine, settings: Settings) -> None:
    quiet_off = shaped(settings, quiet_hours="off")
    with engine.begin() as conn:
        # 23:30 UTC yesterday is 00:30 today in Rome but still yesterday in New York
        rome = consenting(conn, email="r@example.com")
        york = consenting(conn, email="n@example.com", timezone="America/New_York")
        for cid in (rome, york):
            add_message(conn, cid, datetime(2026, 11, 1, 23, 30, tzinfo=UTC))
        assert check(conn, rome, "email", "marketing", 20, T0, quiet_off).reason == "cap:email:day"
        assert check(conn, york, "email", "marketing", 20, T0, quiet_off).allowed


def test_what_counts_toward_caps(engine: Engine, settings: Settings) -> None:
    quiet_off = shaped(settings, quiet_hours="off")
    with engine.begin() as conn:
        cid = consenting(conn)
        for status in ("failed", "blocked", "deferred"):
            add_message(conn, cid, T0 - timedelta(hours=1), status=status)
        add_message(conn, cid, T0 - timedelta(hours=1), intent="thank_you")  # a service message
        add_message(conn, cid, T0 - timedelta(hours=1), channel="push")  # another channel
        assert check(conn, cid, "email", "marketing", 20, T0, quiet_off).allowed
        for status in ("queued", "sending"):
            counted = consenting(conn, email=f"{status}@example.com")
            add_message(conn, counted, T0 - timedelta(hours=1), status=status)
            decision = check(conn, counted, "email", "marketing", 20, T0, quiet_off)
            assert decision.reason == "cap:email:day", status


def test_service_messages_are_never_capped(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        for hours in (1, 2, 3):
            add_message(conn, cid, T0 - timedelta(hours=hours))
        assert check(conn, cid, "email", "transactional", 0, T0, settings).allowed


def test_all_channels_cap(engine: Engine, settings: Settings) -> None:
    quiet_off = shaped(settings, quiet_hours="off")
    with engine.begin() as conn:
        cid = consenting(conn, phone="+393331234567")
        add_message(conn, cid, T0 - timedelta(hours=2), channel="email")
        add_message(conn, cid, T0 - timedelta(hours=1), channel="sms")
        decision = check(conn, cid, "push", "marketing", 20, T0, quiet_off)
    assert decision.reason == "cap:all:day"


def test_week_cap_frees_when_the_oldest_leaves_the_window(
    engine: Engine, settings: Settings
) -> None:
    quiet_off = shaped(settings, quiet_hours="off")
    with engine.begin() as conn:
        cid = consenting(conn)
        oldest = T0 - timedelta(days=6, hours=3)
        for at in (oldest, T0 - timedelta(days=4), T0 - timedelta(days=2)):
            add_message(conn, cid, at)
        decision = check(conn, cid, "email", "marketing", 20, T0, quiet_off)
    assert decision == Decision.defer(oldest + timedelta(days=7), "cap:email:week")


def test_week_cap_blocks_past_max_defer(engine: Engine, settings: Settings) -> None:
    tight = shaped(settings, quiet_hours="off", frequency_caps={"email": {"week": 2}})
    with engine.begin() as conn:
        cid = consenting(conn)
        add_message(conn, cid, T0 - timedelta(days=1))
        add_message(conn, cid, T0 - timedelta(hours=1))
        decision = check(conn, cid, "email", "marketing", 20, T0, tight)
        assert decision == Decision.block("cap:email:week")
        longer = check(conn, cid, "email", "marketing", 20, T0, tight, max_defer=timedelta(days=7))
        assert longer == Decision.defer(T0 + timedelta(days=6), "cap:email:week")


def test_a_zero_cap_blocks(engine: Engine, settings: Settings) -> None:
    none = shaped(settings, frequency_caps={"sms": {"day": 0}})
    with engine.begin() as conn:
        cid = consenting(conn, phone="+393331234567")
        assert check(conn, cid, "sms", "marketing", 20, T0, none) == Decision.block("cap:sms:day")
        assert check(conn, cid, "email", "marketing", 20, T0, none).allowed


# --- priority ----------------------------------------------------------------------------------


def test_higher_priority_bumps_queued_lower_priority(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        promo = add_message(conn, cid, T0 + timedelta(hours=1), status="queued", priority=20)
        cart = check(conn, cid, "email", "marketing", 80, T0, settings)
        assert cart == Decision.allow([promo])
        equal = check(conn, cid, "email", "marketing", 20, T0, settings)
        assert equal.action == "defer" and equal.reason == "cap:email:day"
        assert apply_bumps(conn, cart) == 1
        assert apply_bumps(conn, cart) == 0  # no longer queued
        row = conn.execute(select(messages).where(messages.c.id == promo)).one()
        assert (row.status, row.reason) == ("deferred", "lower_priority")
        assert check(conn, cid, "email", "marketing", 20, T0, settings).allowed


def test_sent_lower_priority_messages_are_not_bumped(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        add_message(conn, cid, T0 - timedelta(hours=1), status="sent", priority=20)
        decision = check(conn, cid, "email", "marketing", 80, T0, settings)
    assert decision.reason == "cap:email:day" and decision.bump == ()


def test_a_claimed_row_does_not_count_against_itself(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        mine = add_message(conn, cid, T0, status="queued")
        assert check(conn, cid, "email", "marketing", 20, T0, settings, message_id=mine).allowed
        assert not check(conn, cid, "email", "marketing", 20, T0, settings).allowed


# --- purchase cooldown -------------------------------------------------------------------------


def test_cooldown_from_the_latest_scores(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        add_score(conn, cid, T0 - timedelta(days=30), recency_days=10.0)
        # ordered 2 days 21 hours ago: the 3-day cooldown ends in 3 hours (14:00 in Rome)
        add_score(conn, cid, T0 - timedelta(days=1), recency_days=1.875)
        add_score(conn, cid, T0 + timedelta(days=5), recency_days=0.0)  # not yet: ignored
        decision = check(conn, cid, "email", "marketing", 20, T0, settings)
        assert decision == Decision.defer(T0 + timedelta(hours=3), "purchase_cooldown")
        assert check(conn, cid, "email", "transactional", 20, T0, settings).allowed


def test_cooldown_from_the_caller(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        ordered = T0 - timedelta(days=1)
        decision = check(conn, cid, "push", "marketing", 20, T0, settings, last_order_at=ordered)
        # three days after the order is 10:00 UTC, 11:00 in Rome: outside quiet hours
        assert decision == Decision.defer(ordered + timedelta(days=3), "purchase_cooldown")
        off = shaped(settings, purchase_cooldown_days=0)
        assert check(conn, cid, "push", "marketing", 20, T0, off, last_order_at=ordered).allowed


def test_cooldown_ending_in_quiet_hours_waits_for_morning(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        ordered = datetime(2026, 10, 30, 22, 0, tzinfo=UTC)  # 23:00 Rome
        decision = check(conn, cid, "email", "marketing", 20, T0, settings, last_order_at=ordered)
    assert decision.reason == "purchase_cooldown"
    assert decision.until == datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


# --- quiet hours -------------------------------------------------------------------------------


def test_quiet_hours_in_the_contacts_zone(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        york = consenting(conn, email="n@example.com", timezone="America/New_York")
        shop = consenting(conn, email="s@example.com", timezone=None)
        late = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)  # 23:00 in New York, 04:00 UTC
        decision = check(conn, york, "email", "transactional", 90, late, settings)
        assert decision == Decision.defer(datetime(2026, 11, 3, 14, 0, tzinfo=UTC), "quiet_hours")
        assert check(conn, shop, "email", "marketing", 20, late, settings).reason == "quiet_hours"
        kathmandu_shop = shaped(settings, timezone="Asia/Kathmandu")  # 09:45 there: awake
        assert check(conn, shop, "email", "marketing", 20, late, kathmandu_shop).allowed


# --- batches -----------------------------------------------------------------------------------


def test_check_many_agrees_with_check_in_few_queries(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        requests = []
        for n in range(40):
            cid = add_contact(
                conn, email=f"c{n}@example.com", timezone=("Asia/Kathmandu", None)[n % 2]
            )
            if n % 3:
                add_consent(conn, cid)
            if n % 5 == 0:
                add_suppression(conn, "email", f"c{n}@example.com", "bounced")
            if n % 4 == 0:
                add_message(conn, cid, T0 - timedelta(hours=n % 7))
            if n % 7 == 0:
                add_score(conn, cid, T0 - timedelta(days=1), recency_days=1.0)
            requests.append(SendRequest(cid, "email", "marketing", 20, T0 + timedelta(hours=n)))
        one_by_one = [
            check(conn, r.contact_id, r.channel, r.purpose, r.priority, r.when, settings)
            for r in requests
        ]
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        event.listen(conn, "before_cursor_execute", count)
        try:
            batch = check_many(conn, requests, settings)
        finally:
            event.remove(conn, "before_cursor_execute", count)
    assert batch == one_by_one
    assert {d.action for d in batch} == {"allow", "block", "defer"}
    assert len(statements) <= 6


def test_check_many_decides_one_contacts_sends_in_priority_order(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        cid = consenting(conn)
        promo = SendRequest(cid, "email", "marketing", 20, T0)
        cart = SendRequest(cid, "email", "marketing", 80, T0 + timedelta(minutes=5))
        thanks = SendRequest(cid, "email", "transactional", 50, T0)
        decisions = check_many(conn, [promo, cart, thanks], settings)
        assert decisions[1].allowed and decisions[2].allowed
        assert decisions[0].reason == "cap:email:day"
        # the same as one at a time, highest priority first, each allowed send written
        add_message(conn, cid, cart.when, status="queued", priority=80)
        add_message(conn, cid, thanks.when, intent="thank_you", status="queued", priority=50)
        assert check(conn, cid, "email", "marketing", 20, T0, settings) == decisions[0]


# --- the pure core: wall time across DST -------------------------------------------------------


def facts(timezone: str) -> PolicyFacts:
    return PolicyFacts(
        consents={("email", "marketing"): True, ("email", "transactional"): True},
        email="x@example.com",
        timezone=timezone,
    )


def plain_settings(**changes: Any) -> Settings:
    return Settings(**changes)


def test_wall_instants_across_dst() -> None:
    # spring forward in Rome: 02:00 -> 03:00; 02:30 resolves to the change, 01:00 UTC
    assert wall_instants(date(2026, 3, 29), time(2, 30), ROME) == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    ]
    # fall back: 02:30 happens twice
    assert wall_instants(date(2026, 10, 25), time(2, 30), ROME) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]
    # Lord Howe moves by half an hour: 02:00 -> 02:30 on 4 October 2026
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert wall_instants(date(2026, 10, 4), time(2, 10), lord_howe) == [
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC)
    ]
    # Santiago skips midnight: the day starts at 01:00
    santiago = ZoneInfo("America/Santiago")
    start = day_start(date(2026, 9, 6), santiago)
    assert start.astimezone(santiago).replace(tzinfo=None) == datetime(2026, 9, 6, 1, 0)


def test_quiet_hours_ending_in_a_skipped_hour() -> None:
    settings = plain_settings(quiet_hours="22:00-02:30")
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # 23:00 in Rome
    decision = decide(
        facts("Europe/Rome"), SendRequest(1, "email", "marketing", 20, evening), settings
    )
    assert decision == Decision.defer(datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "quiet_hours")
    assert decision.until is not None
    assert decision.until.astimezone(ROME).time() == time(3, 0)


def test_quiet_hours_on_the_repeated_hour() -> None:
    window = QuietHours.parse("21:00-02:30")
    assert window is not None
    second_0210 = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, the second time
    assert window.inside(second_0210, ROME)
    assert window.end_after(second_0210, ROME) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    first_0240 = datetime(2026, 10, 25, 0, 40, tzinfo=UTC)  # 02:40 CEST: out, for now
    assert not window.inside(first_0240, ROME)


def test_a_window_end_skipped_into_the_window_waits_a_day() -> None:
    # 02:45-02:30 leaves only 02:30-02:45 free; on 29 March in Rome 02:30 resolves to 03:00,
    # which is inside again: the first free instant is 02:30 on the 30th
    window = QuietHours.parse("02:45-02:30")
    assert window is not None
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    assert window.end_after(evening, ROME) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_morning_after_spring_forward_in_new_york() -> None:
    settings = plain_settings(quiet_hours="21:00-09:00")
    night = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST; clocks go forward at 02:00
    decision = decide(
        facts("America/New_York"), SendRequest(1, "email", "marketing", 20, night), settings
    )
    assert decision.until == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_day_cap_in_a_zone_that_skips_midnight() -> None:
    settings = plain_settings(quiet_hours="off")
    santiago = facts("America/Santiago")
    at = datetime(2026, 9, 5, 20, 0, tzinfo=UTC)  # 16:00 on the 5th in Santiago
    sent = replace(santiago, messages=(Counted(1, "email", at - timedelta(hours=1)),))
    decision = decide(sent, SendRequest(1, "email", "marketing", 20, at), settings)
    assert decision == Decision.defer(datetime(2026, 9, 6, 4, 0, tzinfo=UTC), "cap:email:day")


def test_kathmandu_quarter_hour_offset() -> None:
    settings = plain_settings(quiet_hours="21:00-09:00")
    at = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)  # 08:45 in Kathmandu
    decision = decide(
        facts("Asia/Kathmandu"), SendRequest(1, "email", "marketing", 20, at), settings
    )
    assert decision == Decision.defer(datetime(2026, 11, 2, 3, 15, tzinfo=UTC), "quiet_hours")


def test_an_unknown_zone_falls_back_to_the_shops() -> None:
    settings = plain_settings(timezone="America/New_York")
    at = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # 07:00 in New York, 13:00 in Rome
    assert (
        decide(facts("Mars/Olympus"), SendRequest(1, "email", "marketing", 20, at), settings).reason
        == "quiet_hours"
    )
    assert decide(
        facts("Europe/Rome"), SendRequest(1, "email", "marketing", 20, at), settings
    ).allowed


def test_requests_are_checked() -> None:
    with pytest.raises(ValueError, match="channel"):
        SendRequest(1, "fax", "marketing", 20, T0)
    with pytest.raises(ValueError, match="purpose"):
        SendRequest(1, "email", "profiling", 20, T0)  # type: ignore[arg-type]


def test_reason_texts() -> None:
    assert (
        describe("cap:all:week") == "frequency cap reached: all channels together, the last 7 days"
    )
    assert describe("cap:email:day") == "frequency cap reached: email, this calendar day"
    assert describe("suppressed:bounced") == "the address is suppressed on this channel (bounced)"
    assert describe("lower_priority") == "made way for a message of higher priority"
    deferred = Decision.defer(datetime(2026, 11, 3, 8, 0, tzinfo=UTC), "quiet_hours")
    assert deferred.text == (
        "deferred to 2026-11-03T08:00:00+00:00: inside quiet hours in the contact's time zone"
    )
    assert Decision.allow([3, 4]).text == "allowed, bumping 2"


def test_the_examples_in_docs_policy(engine: Engine, settings: Settings) -> None:
    rome = ROME
    monday_11 = datetime(2026, 11, 2, 11, 0, tzinfo=rome)
    tuesday_9 = datetime(2026, 11, 3, 9, 0, tzinfo=rome)
    with engine.begin() as conn:

        def contact() -> int:
            cid = add_contact(conn, email=f"doc{next(_keys)}@example.com")
            add_consent(conn, cid, "email", "marketing")
            add_consent(conn, cid, "email", "transactional")
            return cid

        def promo(cid: int, at: datetime = monday_11, **kwargs: Any) -> Decision:
            return check(conn, cid, "email", "marketing", 20, at, settings, **kwargs)

        assert promo(contact()).allowed
        today = contact()
        add_message(conn, today, datetime(2026, 11, 2, 9, 0, tzinfo=rome))
        assert promo(today) == Decision.defer(tuesday_9, "cap:email:day")
        week = contact()
        for day in (27, 29, 31):
            add_message(conn, week, datetime(2026, 10, day, 8, 0, tzinfo=rome))
        assert promo(week) == Decision.defer(tuesday_9, "cap:email:week")
        busy = contact()
        queued = add_message(
            conn, busy, datetime(2026, 11, 2, 15, 0, tzinfo=rome), status="queued", priority=20
        )
        cart = check(conn, busy, "email", "marketing", 80, monday_11, settings)
        assert cart == Decision.allow([queued])
        thanks = check(
            conn, contact(), "email", "transactional", 50, monday_11.replace(hour=23), settings
        )
        assert thanks == Decision.defer(tuesday_9, "quiet_hours")
        ordered = datetime(2026, 10, 31, 23, 0, tzinfo=rome)
        wednesday_9 = datetime(2026, 11, 4, 9, 0, tzinfo=rome)
        assert promo(contact(), last_order_at=ordered) == Decision.defer(
            wednesday_9, "purchase_cooldown"
        )
        bounced = add_contact(conn, email="bounced@example.com")
        add_consent(conn, bounced, "email", "marketing")
        add_suppression(conn, "email", "bounced@example.com", "bounced")
        assert promo(bounced) == Decision.block("suppressed:bounced")
        withdrawn = contact()
        add_consent(conn, withdrawn, granted=False, at=monday_11 - timedelta(days=7))
        assert promo(withdrawn) == Decision.block("no_consent")
