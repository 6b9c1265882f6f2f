"""Property test: over random contacts, journeys and clocks, no message the engine delivers
ever breaks the contact policy — consent, suppression, frequency caps, quiet hours.

Each example builds a small shop (contacts with random zones, consents and suppressions;
product views at random times), one or two random journeys (sends of promotional and service
intents, waits of random lengths, some until a time of day, random priorities), random policy
settings, and replays the engine over a week at a random resolution, delivering into a channel
that accepts everything. The messages marked sent are then checked against the rules,
written independently of the policy's code (tests/channels/test_policy_properties.py holds
the same checks for the policy alone). The purchase cooldown is out of scope here: these
shops have no orders.
"""

from __future__ import annotations

import itertools
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from reengage.channels.delivery import Outgoing, Receipt
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts.kinds import EVENTS
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.journeys.definition import parse_journey
from reengage.journeys.runner import run_until
from reengage.state.db import engine_for
from reengage.state.schema import consents, contacts, messages
from reengage.suppressions import suppress

sys.path.insert(0, str(Path(__file__).parents[1] / "channels"))
from test_policy_properties import (
    ZONES,
    caps_broken,
    in_quiet_hours,
    policy_settings,
    zone_of,
)

from reengage.channels.policy import PolicyFacts

T0 = datetime(2026, 10, 19, 0, 0, tzinfo=UTC)  # a week that holds the EU's autumn DST change
PROMOTIONAL = ("browse_reminder", "winback_reminder", "cross_sell", "vip_thanks")
SERVICE = ("thank_you", "check_in")
_serial = itertools.count(1)


class Accepting:
    """An email channel that takes every message."""

    name = "email"

    def send(self, message: Outgoing) -> Receipt:
        return Receipt(provider_id=f"ok-{message.message_id}")

    def close(self) -> None:
        pass


@st.composite
def journey_text(draw: st.DrawFn, name: str) -> str:
    steps = []
    for i in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            intent = draw(st.sampled_from(PROMOTIONAL + SERVICE))
            steps.append(f"  - {{id: s{i}, type: send, intent: {intent}, channel: email}}")
        else:
            minutes = draw(st.sampled_from((10, 90, 600, 1440, 2880)))
            until = draw(st.sampled_from(("", ', until: "10:00"', ', until: "23:30"')))
            steps.append(f"  - {{id: w{i}, type: wait, duration: {minutes}min{until}}}")
    priority = draw(st.integers(10, 90))
    return "\n".join(
        [
            f"name: {name}",
            f"priority: {priority}",
            "trigger: {event: product_view}",
            "goals: []",
            "reentry: always",
            "steps:",
            *steps,
        ]
    )


@st.composite
def people(draw: st.DrawFn) -> list[dict[str, Any]]:
    found = []
    for i in range(draw(st.integers(2, 5))):
        found.append(
            {
                "customer_id": f"P{i}",
                "email": draw(st.sampled_from((f"p{i}@example.com",) * 4 + (None,))),
                "timezone": draw(st.sampled_from((*ZONES, None))),
                "marketing": draw(st.sampled_from((True, True, False, None))),
                "service_refused": draw(st.sampled_from((False, False, False, True))),
                "suppressed": draw(st.sampled_from((None, None, None, "unsubscribed"))),
                "views": draw(st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=4)),
            }
        )
    return found


@hypothesis_settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=policy_settings(),
    shop=people(),
    texts=st.lists(st.sampled_from(("a", "b")), min_size=1, max_size=2, unique=True).flatmap(
        lambda names: st.tuples(*(journey_text(f"j_{n}") for n in names))
    ),
    step=st.sampled_from((timedelta(minutes=30), timedelta(hours=1), timedelta(hours=3))),
)
def test_delivered_journey_messages_never_break_the_policy(
    tmp_path_factory: pytest.TempPathFactory,
    policy: Settings,
    shop: list[dict[str, Any]],
    texts: tuple[str, ...],
    step: timedelta,
) -> None:
    folder = tmp_path_factory.mktemp(f"shop{next(_serial)}")
    settings = Settings(
        home=folder / "home",
        secret_key="property-secret-" + "x" * 32,
        timezone=policy.timezone,
        frequency_caps=policy.frequency_caps,
        quiet_hours=policy.quiet_hours,
        purchase_cooldown_days=policy.purchase_cooldown_days,
    )
    home = init_home(settings).home
    for text in texts:
        name = text.split("\n", 1)[0].removeprefix("name: ")
        parse_journey(text, name=name, shown=name)  # a valid journey, or the test is wrong
        (home.path / "journeys").mkdir(exist_ok=True)
        (home.path / "journeys" / f"{name}.yaml").write_text(text)
    engine = engine_for(settings.state_url)
    ids: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            for person in shop:
                key = conn.execute(
                    insert(contacts).values(
                        customer_id=person["customer_id"],
                        email=person["email"],
                        timezone=person["timezone"],
                        created_at=T0 - timedelta(days=90),
                        updated_at=T0 - timedelta(days=90),
                        origin="test",
                        attributes={},
                    )
                ).inserted_primary_key
                assert key is not None
                ids[person["customer_id"]] = int(key[0])
                grants = []
                if person["marketing"] is not None:
                    grants.append(("marketing", person["marketing"]))
                if person["service_refused"]:
                    grants.append(("transactional", False))
                for purpose, granted in grants:
                    conn.execute(
                        insert(consents).values(
                            contact_id=key[0],
                            channel="email",
                            purpose=purpose,
                            granted=granted,
                            source="test",
                            recorded_at=T0 - timedelta(days=30),
                        )
                    )
                if person["suppressed"] and person["email"]:
                    suppress(
                        conn,
                        "email",
                        person["email"],
                        person["suppressed"],
                        source="test",
                        at=T0 - timedelta(days=10),
                        contact_id=int(key[0]),
                    )
        rows = [
            (person["customer_id"], T0 + timedelta(minutes=m))
            for person in shop
            for m in person["views"]
        ]
        append(
            settings.facts_path,
            EVENTS,
            pa.Table.from_pylist(
                [
                    {"event_id": f"v{i}", "customer_id": c, "type": "product_view"}
                    | {"occurred_at": t, "product_id": "P1"}
                    for i, (c, t) in enumerate(rows)
                ],
                schema=pa.schema([f for f in EVENTS.schema if f.name != "ingested_at"]),
            ),
            ingested_at=T0,
        )
        run_until(
            home,
            engine,
            T0 + timedelta(days=6),
            start=T0,
            step=step,
            score_every=None,
            channels={"email": Accepting()},
        )
        with engine.connect() as conn:
            sent = conn.execute(
                select(messages.c.contact_id, messages.c.intent, messages.c.sent_at).where(
                    messages.c.status == "sent"
                )
            ).all()
            planned = conn.execute(select(messages.c.id)).all()
    finally:
        engine.dispose()
    by_contact = {ids[p["customer_id"]]: p for p in shop}
    promotional: dict[int, list[tuple[str, datetime]]] = {}
    for contact_id, intent, sent_at in sent:
        person = by_contact[contact_id]
        at = as_utc(sent_at)
        zone = zone_of(PolicyFacts(timezone=person["timezone"]), settings)
        assert person["email"] is not None, "sent to a contact without an address"
        assert not person["suppressed"], "sent to a suppressed address"
        if intent in SERVICE:
            assert not person["service_refused"], "service email to someone who refused it"
        else:
            assert person["marketing"] is True, "a promotion without marketing consent"
            promotional.setdefault(contact_id, []).append(("email", at))
        assert not in_quiet_hours(at, zone, settings), f"sent at {at} inside quiet hours"
    for contact_id, times in promotional.items():
        zone = zone_of(PolicyFacts(timezone=by_contact[contact_id]["timezone"]), settings)
        assert caps_broken(times, zone, settings) == []
    assert len(planned) >= len(sent)
    event("messages sent" if sent else "nothing sent")
    event("some held back" if len(planned) > len(sent) else "none held back")
