"""Property tests: over random contacts, settings and streams of sends, no policy is ever broken.

The bulk runs on the pure core (`decide`, `decide_many`); a smaller number of examples goes
through the state store on both backends and must decide exactly as the core does. The
checks below are written independently of the policy's own code: wall time by `astimezone`,
windows by counting.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from test_policy import add_consent, add_contact, add_message, add_suppression

from reengage.channels.caps import Counted
from reengage.channels.policy import (
    PolicyFacts,
    SendRequest,
    check,
    decide,
    decide_many,
)
from reengage.config import Settings

ZONES = (
    "Europe/Rome",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "UTC",
)
CHANNELS = ("email", "sms", "push")
PURPOSES = ("marketing", "transactional")
# a few days before DST changes: EU spring and autumn, US spring and autumn, Lord Howe both
# ways, Santiago's skipped midnight
BASES = tuple(
    datetime(2026, month, day, 0, 0, tzinfo=UTC)
    for month, day in ((3, 26), (10, 22), (3, 5), (10, 29), (4, 2), (10, 1), (9, 3), (6, 15))
)
WEEK = timedelta(days=7)
MAX_DEFER = timedelta(days=3)
_serial = itertools.count(1)
REASONS = {"no_consent", "no_address", "quiet_hours", "purchase_cooldown"}

wall = st.builds(time, st.integers(0, 23), st.sampled_from((0, 15, 30, 45)))


@st.composite
def policy_settings(draw: st.DrawFn) -> Settings:
    caps: dict[str, dict[str, int]] = {}
    for scope in (*CHANNELS, "all"):
        # mostly small caps that a stream of sends will hit; now and then none, or zero
        limits = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "day": st.sampled_from((1, 1, 2, 2, 3, 0)),
                    "week": st.sampled_from((2, 3, 3, 4, 6, 0)),
                },
            )
        )
        if limits:
            caps[scope] = limits
    start, end = draw(wall), draw(wall)
    quiet = draw(
        st.sampled_from(
            ("off", "21:00-09:00", "22:00-02:30", "01:00-02:30", f"{start:%H:%M}-{end:%H:%M}")
        )
    )
    return Settings(
        timezone=draw(st.sampled_from(ZONES)),
        frequency_caps=caps,
        quiet_hours=quiet,
        purchase_cooldown_days=draw(st.sampled_from((0.0, 0.5, 1.0, 3.0))),
    )


@st.composite
def contact_facts(draw: st.DrawFn, base: datetime) -> PolicyFacts:
    # mostly granted: a policy that blocks everything proves little
    grant = st.sampled_from((True, True, True, True, False, None))
    consents = {(c, p): g for c in CHANNELS for p in PURPOSES if (g := draw(grant)) is not None}
    suppressed = {
        c: why
        for c in CHANNELS
        if (why := draw(st.sampled_from((None,) * 6 + ("unsubscribed", "bounced", "stop"))))
    }
    ordered = draw(st.none() | st.integers(-5 * 24 * 60, 5 * 24 * 60))
    return PolicyFacts(
        consents=consents,
        email=draw(st.sampled_from(("a@example.com",) * 5 + (None,))),
        phone=draw(st.sampled_from(("+393331234567",) * 5 + (None,))),
        customer=draw(st.booleans()),
        suppressed=suppressed,
        timezone=draw(st.sampled_from((*ZONES, None, "Not/AZone"))),
        last_order_at=None if ordered is None else base + timedelta(minutes=ordered),
    )


@st.composite
def send_requests(
    draw: st.DrawFn,
    base: datetime,
    contact_ids: tuple[int, ...] = (1,),
    edges: tuple[datetime, ...] = (),
) -> list:
    """Sends at random minutes of five days, or — when `edges` are given — often within an
    hour and a half of one of them (where rules start or stop applying)."""
    anywhere = st.integers(0, 5 * 24 * 60).map(lambda m: base + timedelta(minutes=m))
    near_edges = st.tuples(st.sampled_from(edges or (base,)), st.integers(-90, 90)).map(
        lambda e: e[0] + timedelta(minutes=e[1])
    )
    return draw(
        st.lists(
            st.builds(
                SendRequest,
                contact_id=st.sampled_from(contact_ids),
                channel=st.sampled_from(CHANNELS),
                purpose=st.sampled_from(("marketing", "marketing", "marketing", "transactional")),
                priority=st.sampled_from((10, 20, 50, 80)),
                when=anywhere | near_edges if edges else anywhere,
            ),
            min_size=1,
            max_size=30,
        )
    )


# --- an independent view of the rules ----------------------------------------------------------


def edges(facts: PolicyFacts, settings: Settings, base: datetime) -> tuple[datetime, ...]:
    """Where the rules change their mind: the end of the purchase cooldown, the local
    midnights and the quiet window's start and end on each day of the stream (whichever
    instants the wall clock shows them at)."""
    zone = zone_of(facts, settings)
    found = []
    if facts.last_order_at is not None:
        found.append(facts.last_order_at + timedelta(days=settings.purchase_cooldown_days))
    walls = [time(0)]
    if settings.quiet_hours != "off":
        walls += [time.fromisoformat(p) for p in settings.quiet_hours.split("-")]
    for day in range(-1, 7):
        date = (base + timedelta(days=day)).date()
        for wall_time in walls:
            naive = datetime.combine(date, wall_time)
            found += [naive.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)]
    return tuple(sorted(set(found)))


def zone_of(facts: PolicyFacts, settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(facts.timezone) if facts.timezone else settings.zone
    except Exception:
        return settings.zone


def in_quiet_hours(moment: datetime, zone: ZoneInfo, settings: Settings) -> bool:
    if settings.quiet_hours == "off":
        return False
    start, end = (time.fromisoformat(p) for p in settings.quiet_hours.split("-"))
    clock = moment.astimezone(zone).time()
    if start == end:
        return False
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def cooldown_end(facts: PolicyFacts, request: SendRequest, settings: Settings) -> datetime | None:
    orders = [t for t in (facts.last_order_at, request.last_order_at) if t is not None]
    if not orders or settings.purchase_cooldown_days <= 0:
        return None
    return max(orders) + timedelta(days=settings.purchase_cooldown_days)


def caps_broken(sent: list[tuple[str, datetime]], zone: ZoneInfo, settings: Settings) -> list[str]:
    """Every cap some counted message exceeds: its local day, or the 7 days up to it."""
    broken = []
    for scope, limits in settings.frequency_caps.items():
        times = sorted(at for channel, at in sent if scope in ("all", channel))
        for at in times:
            day = at.astimezone(zone).date()
            if (
                "day" in limits
                and sum(t.astimezone(zone).date() == day for t in times) > limits["day"]
            ):
                broken.append(f"cap:{scope}:day at {at}")
            if "week" in limits and sum(at - WEEK < t <= at for t in times) > limits["week"]:
                broken.append(f"cap:{scope}:week at {at}")
    return broken


def allowed_facts(facts: PolicyFacts, request: SendRequest) -> None:
    assert facts.granted(request.channel, request.purpose)
    if (request.channel, request.purpose) != ("email", "transactional"):
        assert facts.consents.get((request.channel, request.purpose)) is True
    else:  # service email: an opt-in, or a customer who never refused
        assert facts.consents.get((request.channel, request.purpose), facts.customer) is True
    if request.channel == "email":
        assert facts.email
    if request.channel == "sms":
        assert facts.phone
    assert request.channel not in facts.suppressed


# --- the pure core -----------------------------------------------------------------------------


def run_stream(facts: PolicyFacts, requests: list[SendRequest], settings: Settings) -> None:
    """Decide the requests one after the other, as a worker would: each allowed send is
    recorded as sent, each deferred one is tried again at the time it was deferred to (up to
    three times); check every decision against the rules."""
    zone = zone_of(facts, settings)
    counted: list[tuple[str, datetime]] = []
    pending = [(request, 0) for request in requests]
    while pending:
        request, retries = pending.pop(0)
        decision = decide(facts, request, settings, max_defer=MAX_DEFER)
        event(f"{decision.action} {(decision.reason or '').partition(':')[0]}")
        marketing = request.purpose == "marketing"
        end = cooldown_end(facts, request, settings) if marketing else None
        if decision.allowed:
            assert decision.bump == ()  # nothing was queued
            allowed_facts(facts, request)
            assert not in_quiet_hours(request.when, zone, settings)
            assert end is None or request.when >= end
            if marketing:
                counted.append((request.channel, request.when))
                assert not caps_broken(counted, zone, settings)
                sent = Counted(None, request.channel, request.when)
                facts = replace(facts, messages=(*facts.messages, sent))
        elif decision.action == "defer":
            allowed_facts(facts, request)
            assert decision.until is not None and decision.until > request.when
            assert not in_quiet_hours(decision.until, zone, settings)
            assert end is None or decision.until >= end
            assert decision.reason in REASONS or (decision.reason or "").startswith("cap:")
            if marketing and (decision.reason or "").startswith("cap:"):
                # the cap frees within max_defer; quiet hours may then add up to a day
                waited = decision.until - max(request.when, end or request.when)
                assert waited <= MAX_DEFER + timedelta(days=1)
            # sent when it was deferred to, with nothing else changed, it goes
            later = replace(request, when=decision.until)
            assert decide(facts, later, settings, max_defer=MAX_DEFER).allowed
            if retries < 3:
                pending.append((later, retries + 1))
        else:
            assert decision.reason is not None
            assert decision.reason in REASONS or decision.reason.startswith(("cap:", "suppressed:"))
            if decision.reason == "quiet_hours" or decision.reason == "purchase_cooldown":
                raise AssertionError("quiet hours and the cooldown defer, never block")
    assert not caps_broken(counted, zone, settings)


@hypothesis_settings(max_examples=300, deadline=None)
@given(data=st.data(), settings=policy_settings(), base=st.sampled_from(BASES))
def test_no_policy_is_ever_broken(data: st.DataObject, settings: Settings, base: datetime) -> None:
    facts = data.draw(contact_facts(base))
    run_stream(facts, data.draw(send_requests(base, edges=edges(facts, settings, base))), settings)


@hypothesis_settings(max_examples=300, deadline=None)
@given(data=st.data(), settings=policy_settings(), base=st.sampled_from(BASES))
def test_caps_quiet_hours_and_cooldown_hold_for_reachable_contacts(
    data: st.DataObject, settings: Settings, base: datetime
) -> None:
    """The same, for contacts who may be contacted on every channel: the time rules do the
    work."""
    facts = replace(
        data.draw(contact_facts(base)),
        consents={(c, p): True for c in CHANNELS for p in PURPOSES},
        email="a@example.com",
        phone="+393331234567",
        suppressed={},
    )
    run_stream(facts, data.draw(send_requests(base, edges=edges(facts, settings, base))), settings)


@hypothesis_settings(max_examples=150, deadline=None)
@given(data=st.data(), settings=policy_settings(), base=st.sampled_from(BASES))
def test_check_many_agrees_with_one_at_a_time(
    data: st.DataObject, settings: Settings, base: datetime
) -> None:
    people = {cid: data.draw(contact_facts(base)) for cid in (1, 2, 3)}
    requests = data.draw(send_requests(base, (1, 2, 3)))
    batch = decide_many(people, requests, settings, max_defer=MAX_DEFER)
    # one at a time, highest priority first, each allowed marketing send written as queued
    order = sorted(range(len(requests)), key=lambda i: (-requests[i].priority, requests[i].when, i))
    for i in order:
        request = requests[i]
        facts = people[request.contact_id]
        alone = decide(facts, request, settings, max_defer=MAX_DEFER)
        assert batch[i] == alone
        if alone.allowed and request.purpose == "marketing":
            written = Counted(None, request.channel, request.when, request.priority, "queued")
            people[request.contact_id] = replace(facts, messages=(*facts.messages, written))


@st.composite
def crowded(draw: st.DrawFn) -> tuple[PolicyFacts, SendRequest, Settings]:
    """A contact with sent and queued messages around a send of some priority."""
    settings = draw(policy_settings())
    settings = Settings(**{**settings.model_dump(), "quiet_hours": "off"})
    base = draw(st.sampled_from(BASES)) + timedelta(days=7)
    messages = draw(
        st.lists(
            st.builds(
                Counted,
                id=st.none(),
                channel=st.sampled_from(CHANNELS),
                at=st.integers(-6 * 24 * 60, 6 * 24 * 60).map(
                    lambda m: base + timedelta(minutes=m)
                ),
                priority=st.sampled_from((10, 20, 50, 80)),
                status=st.sampled_from(("sent", "queued", "queued")),
            ),
            max_size=12,
        )
    )
    numbered = tuple(replace(m, id=n) for n, m in enumerate(messages, start=1))
    facts = PolicyFacts(
        consents={(c, "marketing"): True for c in CHANNELS},
        email="a@example.com",
        phone="+393331234567",
        timezone=draw(st.sampled_from(ZONES)),
        messages=numbered,
    )
    request = SendRequest(
        1, draw(st.sampled_from(CHANNELS)), "marketing", draw(st.sampled_from((20, 50, 80))), base
    )
    return facts, request, settings


def fits(messages: list[Counted], request: SendRequest, zone: ZoneInfo, settings: Settings) -> bool:
    """Whether one more message at the request's time keeps every window holding it within
    the caps (queued messages due earlier count at the request's time)."""
    when = request.when
    times = [(m.channel, max(m.at, when) if m.status == "queued" else m.at) for m in messages]
    for scope, limits in settings.frequency_caps.items():
        mine = [t for c, t in times if scope in ("all", c)]
        if scope not in ("all", request.channel):
            continue
        day = when.astimezone(zone).date()
        if (
            "day" in limits
            and sum(t.astimezone(zone).date() == day for t in mine) + 1 > limits["day"]
        ):
            return False
        for right in (when, *(t for t in mine if when <= t < when + WEEK)):
            if (
                "week" in limits
                and sum(right - WEEK < t <= right for t in (*mine, when)) > limits["week"]
            ):
                return False
    return True


@hypothesis_settings(max_examples=300, deadline=None)
@given(case=crowded())
def test_priority_bumps_only_lower_priority_queued_and_only_when_needed(
    case: tuple[PolicyFacts, SendRequest, Settings],
) -> None:
    facts, request, settings = case
    zone = zone_of(facts, settings)
    decision = decide(facts, request, settings, max_defer=MAX_DEFER)
    event(f"{decision.action}{' bumping' if decision.bump else ''}")
    movable = [m for m in facts.messages if m.status == "queued" and m.priority < request.priority]
    if decision.allowed:
        by_id = {m.id: m for m in facts.messages}
        assert all(by_id[i] in movable for i in decision.bump)
        kept = [m for m in facts.messages if m.id not in decision.bump]
        assert fits(kept, request, zone, settings)
        if decision.bump:
            assert not fits(list(facts.messages), request, zone, settings)
    else:
        assert (decision.reason or "").startswith("cap:")
        assert not fits([m for m in facts.messages if m not in movable], request, zone, settings)


# --- through the state store -------------------------------------------------------------------


@dataclass
class Person:
    timezone: str | None
    email: str | None
    grants: dict[tuple[str, str], bool]
    suppressed_email: str | None


people_strategy = st.builds(
    Person,
    timezone=st.sampled_from((*ZONES, None)),
    email=st.sampled_from(("p@example.com", "p@example.com", None)),
    grants=st.fixed_dictionaries(
        {
            (c, p): st.sampled_from((True, True, True, False, None))
            for c in ("email", "push")
            for p in PURPOSES
        }
    ).map(lambda grants: {key: g for key, g in grants.items() if g is not None}),
    suppressed_email=st.sampled_from((None, None, "bounced")),
)


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    person=people_strategy,
    settings=policy_settings(),
    base=st.sampled_from(BASES),
    offsets=st.lists(
        st.tuples(
            st.sampled_from(("email", "push")),
            st.sampled_from(PURPOSES),
            st.integers(0, 9 * 24 * 60),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_the_state_store_decides_as_the_core_does(
    engine: Engine,
    person: Person,
    settings: Settings,
    base: datetime,
    offsets: list[tuple[str, str, int]],
) -> None:
    with engine.begin() as conn:
        email = f"p{next(_serial)}@example.com" if person.email else None
        cid = add_contact(conn, email=email, timezone=person.timezone)
        for (channel, purpose), granted in person.grants.items():
            add_consent(
                conn, cid, channel, purpose, granted=not granted, at=base - timedelta(days=60)
            )
            add_consent(conn, cid, channel, purpose, granted=granted, at=base - timedelta(days=30))
        if email and person.suppressed_email:
            add_suppression(conn, "email", email, person.suppressed_email)
        facts = PolicyFacts(
            consents=person.grants,
            email=email,
            suppressed={"email": person.suppressed_email}
            if email and person.suppressed_email
            else {},
            timezone=person.timezone,
            customer=True,  # add_contact gives every contact a customer id
        )
        zone = zone_of(facts, settings)
        counted: list[tuple[str, datetime]] = []
        for channel, purpose, minutes in offsets:
            when = base + timedelta(minutes=minutes)
            request = SendRequest(cid, channel, purpose, 20, when)
            stored = check(conn, cid, channel, purpose, 20, when, settings, max_defer=MAX_DEFER)
            assert stored == decide(facts, request, settings, max_defer=MAX_DEFER)
            event(f"{stored.action} {(stored.reason or '').partition(':')[0]}")
            if stored.allowed:
                allowed_facts(facts, request)
                assert not in_quiet_hours(when, zone, settings)
                intent = "cross_sell" if purpose == "marketing" else "thank_you"
                add_message(conn, cid, when, channel=channel, intent=intent)
                if purpose == "marketing":
                    counted.append((channel, when))
                    facts = replace(facts, messages=(*facts.messages, Counted(None, channel, when)))
        assert not caps_broken(counted, zone, settings)
