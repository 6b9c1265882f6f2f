"""Survey answers kept on the contact are usable in segment rules (both backends), and the
advocacy journey enrolls promoters (NPS 9 or 10) and nobody else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from reengage.audience import fields, parse
from reengage.audience.segments import evaluate, refresh_segments
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.facts import reader
from reengage.journeys import enable_journey, enabled_journeys
from reengage.journeys.entries import firings
from reengage.state.schema import contacts
from reengage.surveys import SURVEYS, store_answer


def _contacts(
    engine: Engine, clock: FixedClock, answers: dict[str, list[tuple[str, str]]]
) -> dict[str, int]:
    """A contact per name, each answering its (survey, answer) pairs in order."""
    now = clock.now()
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for n, (name, given) in enumerate(answers.items()):
            attributes: dict[str, Any] = {"nps": 10} if name == "imported" else {}
            key = conn.execute(
                contacts.insert().values(
                    customer_id=f"C{n}",
                    email=f"{name}@example.com",
                    created_at=now - timedelta(days=30),
                    updated_at=now - timedelta(days=30),
                    origin="customers",
                    attributes=attributes,
                )
            ).inserted_primary_key
            assert key is not None
            ids[name] = int(key[0])
            for i, (survey, answer) in enumerate(given):
                store_answer(conn, ids[name], SURVEYS[survey], answer, 100 + i, now)
    return ids


def test_the_segment_fields_copy_the_survey_answers() -> None:
    assert SURVEYS["checkin"].answers == fields.CHECKIN_ANSWERS
    assert SURVEYS["winback"].answers == fields.LEFT_BECAUSE
    for survey in SURVEYS.values():
        field = fields.FIELDS[survey.field]
        assert field.path == ("surveys", survey.id, "answer")


def test_segment_rules_select_by_the_latest_answers(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    ids = _contacts(
        engine,
        clock,
        {
            "ten": [("nps", "10")],
            "nine": [("nps", "9")],
            "seven": [("nps", "7")],
            "six": [("nps", "6")],
            "zero": [("nps", "0")],
            "changed": [("nps", "2"), ("nps", "9")],  # the latest answer counts
            "unhappy": [("checkin", "problem"), ("winback", "quality")],
            "fine": [("checkin", "good"), ("winback", "price")],
            "never": [],
            "imported": [],  # a top-level attributes.nps is another thing
        },
    )
    rules = {
        "promoters": "nps >= 9",
        "detractors": "nps <= 6",
        "passives": "nps > 6 and nps < 9",
        "not_promoters": "not nps >= 9",
        "asked": "nps is not null",
        "problem": 'checkin = "problem"',
        "left": 'left_because in ("quality", "delivery")',
        "left_not_price": 'left_because != "price"',
        "paused": "attributes.promotions_paused_until is not null",
    }
    found = evaluate(home, engine, {k: parse(v) for k, v in rules.items()}, clock.now())
    named = {k: {n for n, i in ids.items() if i in v} for k, v in found.items()}
    assert named["promoters"] == {"ten", "nine", "changed"}
    assert named["detractors"] == {"six", "zero"}
    assert named["passives"] == {"seven"}
    assert named["not_promoters"] == set(ids) - named["promoters"]
    assert named["asked"] == {"ten", "nine", "seven", "six", "zero", "changed"}
    assert named["problem"] == {"unhappy"}
    assert named["left"] == {"unhappy"}
    assert named["left_not_price"] == {"unhappy"}
    # detractors and complaints paused their promotions ("changed" answered 2 first)
    assert named["paused"] == {"six", "zero", "unhappy", "changed"}


def test_the_advocacy_journey_enrolls_promoters_only(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    done = enable_journey(home, "advocacy")
    assert done.segments == ("promoters",)
    journey = enabled_journeys(home)["advocacy"]
    before = clock.now()
    refresh_segments(home, engine, clock)  # nobody yet
    clock.advance(timedelta(hours=1))
    ids = _contacts(
        engine, clock, {"ten": [("nps", "10")], "nine": [("nps", "9")], "seven": [("nps", "7")]}
    )
    clock.advance(timedelta(hours=1))
    refresh_segments(home, engine, clock)
    facts = reader.connect(home.settings.facts_path)
    try:
        with engine.connect() as conn:
            fired = firings(
                journey,
                before,
                clock.now(),
                conn=conn,
                facts=facts,
                root=home.settings.facts_path,
                zone=home.settings.zone,
            )
            stored = conn.execute(select(contacts.c.id, contacts.c.attributes)).all()
    finally:
        facts.close()
    assert {f.contact_id for f in fired} == {ids["ten"], ids["nine"]}
    assert all("promotions_paused_until" not in r.attributes for r in stored)
