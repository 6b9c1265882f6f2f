"""Journey definitions: durations, the YAML schema, its errors (file, line, field), the model
the engine navigates, and the draws of holdouts and splits."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reengage.errors import InputError
from reengage.journeys import (
    Abandonment,
    Audience,
    Branch,
    DateTrigger,
    Duration,
    End,
    EventTrigger,
    Holdout,
    InactivityTrigger,
    Journey,
    JourneyError,
    Reentry,
    SegmentTrigger,
    Send,
    Split,
    Update,
    Wait,
    Webhook,
    load_journey,
    parse_journey,
)
from reengage.journeys.definition import parse_time_of_day
from reengage.journeys.steps import local_instant

ROME = ZoneInfo("Europe/Rome")


def journey(text: str, name: str = "cart", segments: Path | None = None) -> Journey:
    return parse_journey(
        textwrap.dedent(text), name=name, shown=f"journeys/{name}.yaml", segments=segments
    )


def problems(text: str, name: str = "cart", segments: Path | None = None) -> list[str]:
    with pytest.raises(JourneyError) as caught:
        journey(text, name, segments)
    return [str(p) for p in caught.value.problems]


MINIMAL = """\
trigger:
  event: order_placed
reentry: never
steps:
  - {id: thanks, type: send, intent: thank_you, channel: email}
"""


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("1h", 3600, "1h"),
        ("24h", 86400, "1d"),
        ("30min", 1800, "30min"),
        ("90s", 90, "90s"),
        ("3d", 3 * 86400, "3d"),
        ("2w", 14 * 86400, "14d"),
        ("1.5d", 36 * 3600, "36h"),
        ("-3d", -3 * 86400, "-3d"),
        (" 12 h ", 12 * 3600, "12h"),
        ("0d", 0, "0d"),
    ],
)
def test_durations_parse_and_print(text: str, seconds: int, canonical: str) -> None:
    duration = Duration.parse(text)
    assert duration.seconds == seconds
    assert str(duration) == canonical
    assert duration.timedelta == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("6m", "ambiguous"),
        ("30", "has no unit"),
        ("soon", "is not a duration"),
        ("3 days", "is not a duration"),
        ("0.0001h", "whole number of seconds"),
    ],
)
def test_bad_durations_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Duration.parse(text)


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_duration_print_then_parse_gives_it_back(seconds: int) -> None:
    duration = Duration(seconds)
    assert Duration.parse(str(duration)) == duration


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["s", "min", "h", "d", "w"]),
    st.booleans(),
)
def test_duration_parse_then_print_is_stable(number: int, unit: str, negative: bool) -> None:
    text = f"{'-' if negative else ''}{number}{unit}"
    duration = Duration.parse(text)
    assert Duration.parse(str(duration)) == duration
    assert str(Duration.parse(str(duration))) == str(duration)


def test_time_of_day() -> None:
    assert parse_time_of_day("10:00") == time(10, 0)
    assert parse_time_of_day("9:05") == time(9, 5)
    for bad in ("24:00", "10:60", "10", "ten"):
        with pytest.raises(ValueError):
            parse_time_of_day(bad)


# --- the schema ---------------------------------------------------------------------------


def test_a_minimal_journey_and_its_defaults() -> None:
    j = journey(MINIMAL)
    assert j.name == "cart"
    assert j.description == ""
    assert j.trigger == EventTrigger("order_placed")
    assert j.goals == ()
    assert j.reentry == Reentry("never")
    assert j.priority == 50 and j.holdout == 0.0
    assert j.steps == (Send("thanks", intent="thank_you", channel="email"),)
    assert j.steps[0].line == 5
    assert len(j.digest) == 64


def test_every_step_type() -> None:
    j = journey(
        """\
        name: cart
        description: every step
        priority: 80
        holdout: 10%
        trigger:
          event: {type: add_to_cart, abandoned: {within: 1h}}
        goals: [order_placed, clicked, unsubscribed]
        reentry: {after: 30d}
        steps:
          - {id: wait_hour, type: wait, duration: 1h}
          - {id: morning, type: wait, until: 10:00}
          - {id: later, type: wait, duration: 2d, until: "9:30"}
          - {id: remind, type: send, intent: cart_reminder}
          - {id: offer, type: send, intent: cart_incentive, channel: sms, offer: {level: 2}}
          - id: rich
            type: branch
            if: clv > 200
            then:
              - {id: vip_ads, type: audience, add: big-spenders}
            else:
              - {id: drop_ads, type: audience, remove: big-spenders}
          - id: test
            type: split
            variants:
              - {name: a, weight: 3, steps: [{id: a_send, type: send, intent: cart_help}]}
              - {name: control, steps: []}
          - {id: measure, type: holdout, share: 0.2}
          - {id: mark, type: update, set: {cart_series: done, tries: 3, vip: false, x: null}}
          - {id: crm, type: webhook, endpoint: crm}
          - {id: done, type: end}
        """
    )
    assert j.priority == 80 and j.holdout == pytest.approx(0.1)
    assert j.goals == ("order_placed", "clicked", "unsubscribed")
    assert j.reentry == Reentry("after", Duration.parse("30d"))
    by_id = {s.id: s for s in j.walk()}
    assert by_id["wait_hour"] == Wait("wait_hour", duration=Duration(3600))
    assert by_id["morning"] == Wait("morning", until=time(10, 0))  # YAML 1.1's 600, read as 10:00
    assert by_id["later"] == Wait("later", duration=Duration(2 * 86400), until=time(9, 30))
    assert by_id["remind"] == Send("remind", intent="cart_reminder", channel="best")
    assert by_id["offer"] == Send("offer", intent="cart_incentive", channel="sms", offer=2)
    rich = by_id["rich"]
    assert isinstance(rich, Branch) and rich.condition.text == "clv > 200"
    assert rich.then == (Audience("vip_ads", audience="big-spenders", action="add"),)
    assert rich.otherwise == (Audience("drop_ads", audience="big-spenders", action="remove"),)
    test = by_id["test"]
    assert isinstance(test, Split)
    assert [(v.name, v.weight, len(v.steps)) for v in test.variants] == [
        ("a", 3.0, 1),
        ("control", 1.0, 0),
    ]
    assert by_id["measure"] == Holdout("measure", share=0.2)
    assert by_id["mark"] == Update(
        "mark", attributes=(("cart_series", "done"), ("tries", 3), ("vip", False), ("x", None))
    )
    assert by_id["crm"] == Webhook("crm", endpoint="crm")
    assert by_id["done"] == End("done")
    assert list(by_id) == [
        "wait_hour", "morning", "later", "remind", "offer", "rich", "vip_ads", "drop_ads",
        "test", "a_send", "measure", "mark", "crm", "done",
    ]  # fmt: skip


def test_send_knows_its_purpose_and_channels() -> None:
    assert Send("s", intent="thank_you").purpose == "transactional"
    assert Send("s", intent="cart_reminder").purpose == "marketing"
    assert Send("s", intent="cart_reminder").channels == ("email", "push", "sms")
    assert Send("s", intent="cart_reminder", channel="sms").channels == ("sms",)


DAY = 86400


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("event: product_view", EventTrigger("product_view")),
        (
            "event: {type: add_to_cart, abandoned: {within: 1h}}",
            EventTrigger(
                "add_to_cart", Abandonment(Duration(3600), ("checkout_start", "order_placed"))
            ),
        ),
        (
            "event: {type: product_view, abandoned: {within: 4h}}",
            EventTrigger(
                "product_view", Abandonment(Duration(4 * 3600), ("add_to_cart", "order_placed"))
            ),
        ),
        (
            "event: {type: search, abandoned: {within: 2h, unless: [product_view, share]}}",
            EventTrigger("search", Abandonment(Duration(7200), ("product_view", "share"))),
        ),
        ("segment_entered: lapsed", SegmentTrigger("lapsed")),
        ("inactivity: {days: 90}", InactivityTrigger(days=90)),
        ("inactivity: {threshold: lifecycle}", InactivityTrigger(threshold="lifecycle")),
        ("date: birthday", DateTrigger("birthday", Duration(0))),
        (
            "date: {of: order_anniversary, offset: 2d}",
            DateTrigger("order_anniversary", Duration(2 * DAY)),
        ),
        (
            "date: {of: expected_replenishment, offset: -3d, intervals: {coffee: 30d}}",
            DateTrigger(
                "expected_replenishment", Duration(-3 * DAY), (("coffee", Duration(30 * DAY)),)
            ),
        ),
    ],
)
def test_triggers(trigger: str, expected: Any) -> None:
    assert journey(MINIMAL.replace("  event: order_placed", "  " + trigger)).trigger == expected


def test_a_segment_defined_in_the_journey() -> None:
    j = journey(
        MINIMAL.replace(
            "  event: order_placed",
            "  segment_entered:\n    name: slipping\n    rule: p_alive < 0.4\n",
        )
    )
    assert isinstance(j.trigger, SegmentTrigger)
    assert j.trigger.segment == "slipping" and j.trigger.rule is not None
    assert j.trigger.rule.text == "p_alive < 0.4"


def test_a_named_segment_must_exist_in_the_home(tmp_path: Path) -> None:
    text = MINIMAL.replace("  event: order_placed", "  segment_entered: lapsed")
    segments = tmp_path / "segments"
    assert problems(text, segments=segments) == [
        "journeys/cart.yaml line 2 (trigger.segment_entered): no segment named 'lapsed' in "
        "segments/ (known: none); create it, or define it here with name and rule"
    ]
    segments.mkdir()
    (segments / "lapsed.yaml").write_text("rule: clv > 1\n")
    assert journey(text, segments=segments).trigger == SegmentTrigger("lapsed")
    assert journey(text).trigger == SegmentTrigger("lapsed")  # without a home: not checked


# --- errors -------------------------------------------------------------------------------


def test_the_error_names_file_line_and_field() -> None:
    text = """\
        name: cart
        trigger:
          event:
            type: add_to_cart
            abandoned:
              within: 1h
        goals: [order_placed]
        reentry: never
        steps:
          - id: first
            type: send
            intent: cart_reminder
          - {id: wait, type: wait, duration: 1d}
          - {id: again, type: send, intent: cart_remindr}
        """
    assert problems(text) == [
        "journeys/cart.yaml line 14 (steps[2].intent): unknown intent 'cart_remindr' "
        "(did you mean 'cart_reminder'?)"
    ]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    found = problems(
        """\
        name: kart
        priority: 120
        holdout: 1.5
        trigger:
          event: {type: add_to_cartt, abandoned: {within: 6m}}
        goals: [order_placed, clickd, order_placed]
        reentry: {after: 30}
        stepz: []
        """
    )
    assert found == [
        "journeys/cart.yaml line 8 (stepz): unknown key 'stepz' (did you mean 'steps'?)",
        "journeys/cart.yaml line 1 (name): 'kart' differs from the file name 'cart'",
        "journeys/cart.yaml line 2 (priority): must be from 0 to 100 (found 120)",
        "journeys/cart.yaml line 3 (holdout): must be a share from 0 to less than 1 (0.1 or 10%)",
        "journeys/cart.yaml line 5 (trigger.event.type): unknown event type 'add_to_cartt' "
        "(did you mean 'add_to_cart'?)",
        "journeys/cart.yaml line 5 (trigger.event.abandoned.within): '6m': 'm' is ambiguous: "
        "write minutes as 30min, months as days (90d)",
        "journeys/cart.yaml line 6 (goals[1]): unknown goal 'clickd' (did you mean 'clicked'?)",
        "journeys/cart.yaml line 6 (goals[2]): order_placed is listed twice",
        "journeys/cart.yaml line 7 (reentry.after): '30' has no unit: write e.g. 30d or 30h",
        "journeys/cart.yaml line 1 (steps): steps is missing",
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "- {id: a, type: sned}",
            "line 5 (steps[0].type): unknown step type 'sned' (did you mean 'send'?)",
        ),
        ("- {id: a}", "line 5 (steps[0].type): type is missing: one of wait, branch, send"),
        ("- {type: end}", "line 5 (steps[0].id): id is missing"),
        ("- {id: 'a b', type: end}", "line 5 (steps[0].id): step id 'a b': use letters"),
        ("- {id: a, type: wait}", "line 5 (steps[0]): a wait needs a duration, an until time"),
        ("- {id: a, type: wait, duration: 0h}", "(steps[0].duration): must be longer than zero"),
        ("- {id: a, type: wait, until: 25:00}", "(steps[0].until): '25:00' is not a time of day"),
        ("- {id: a, type: wait, until: 1d}", "(steps[0].until): '1d' is not a time of day"),
        ("- {id: a, type: send}", "line 5 (steps[0].intent): intent is missing"),
        (
            "- {id: a, type: send, intent: cart_help, channel: sms}",
            "(steps[0].channel): cart_help is not sent by sms (its channels: email; or best)",
        ),
        (
            "- {id: a, type: send, intent: cart_reminder, channel: fax}",
            "(steps[0].channel): unknown channel 'fax' (known: best, email, sms, push)",
        ),
        (
            "- {id: a, type: send, intent: thank_you, offer: {level: 1}}",
            "(steps[0].offer): thank_you carries no offer (those that do: cart_incentive,",
        ),
        (
            "- {id: a, type: send, intent: cart_incentive, offer: {level: 3}}",
            "(steps[0].offer.level): must be from 0 to 2 (found 3)",
        ),
        (
            "- {id: a, type: send, intent: cart_incentive, offer: 1}",
            "(steps[0].offer): expected {level: N}",
        ),
        ("- {id: a, type: branch, then: []}", "line 5 (steps[0].if): if is missing"),
        (
            "- {id: a, type: split, variants: [{name: x, steps: []}]}",
            "(steps[0].variants): a split needs at least two variants",
        ),
        (
            "- {id: a, type: split, variants: [{name: x, steps: []}, {name: x, steps: []}]}",
            "(steps[0].variants[1].name): variant 'x' is named twice",
        ),
        (
            "- {id: a, type: split, variants: [{name: x, weight: 0, steps: []}, {name: y, steps: []}]}",
            "(steps[0].variants[0].weight): must be a number greater than 0",
        ),
        (
            "- {id: a, type: holdout, share: 0}",
            "(steps[0].share): must be a share from more than 0",
        ),
        ("- {id: a, type: audience}", "(steps[0]): give either add: AUDIENCE or remove: AUDIENCE"),
        ("- {id: a, type: update}", "(steps[0]): an update needs set: {attribute: value}"),
        (
            "- {id: a, type: update, suppress: bounced}",
            "(steps[0].suppress): unknown suppression reason 'bounced' (known: sunset)",
        ),
        (
            "- {id: a, type: update, set: {tags: [a, b]}}",
            "(steps[0].set.tags): must be text, a number, true, false or null",
        ),
        (
            "- {id: a, type: webhook, endpoint: 'https://x'}",
            "(steps[0].endpoint): webhook endpoint",
        ),
        (
            "- {id: a, type: end, until: 10:00}",
            "(steps[0].until): unknown key 'until' (known: id, type)",
        ),
        ("- {id: a, type: end}\n  - {id: b, type: end}", "line 6 (steps[1]): never reached"),
        ("[]", "line 5 (steps): a journey needs at least one step"),
        ("- just text", "line 5 (steps[0]): expected a step: a mapping with id and type"),
    ],
)
def test_step_errors(steps: str, expected: str) -> None:
    text = f"trigger:\n  event: order_placed\nreentry: never\nsteps:\n  {steps}\n"
    found = problems(text)
    assert any(expected in p for p in found), found


def test_step_ids_are_unique_across_nested_lists() -> None:
    found = problems(
        """\
        trigger: {event: order_placed}
        reentry: never
        steps:
          - id: check
            type: branch
            if: clv > 1
            then:
              - {id: send_it, type: send, intent: cross_sell}
          - {id: send_it, type: end}
        """
    )
    assert found == [
        "journeys/cart.yaml line 9 (steps[1].id): id 'send_it' is already used by steps[0].then[0]"
    ]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("{}", "(trigger): give exactly one of event, segment_entered, inactivity, date"),
        (
            "{event: order_placed, date: birthday}",
            "(trigger): give exactly one of event, segment_entered, inactivity, date (found event, date)",
        ),
        ("{evnt: order_placed}", "(trigger.evnt): unknown key 'evnt' (did you mean 'event'?)"),
        (
            "{event: {type: order_placed, abandoned: {within: 1h}}}",
            "(trigger.event.abandoned): an order is not abandoned",
        ),
        (
            "{event: {type: add_to_cart, abandoned: {}}}",
            "(trigger.event.abandoned.within): within is missing",
        ),
        (
            "{event: {type: add_to_cart, abandoned: {within: 1h, unless: [add_to_cart]}}}",
            "(trigger.event.abandoned.unless[0]): add_to_cart is the trigger's own event",
        ),
        ("{inactivity: {}}", "(trigger.inactivity): give either days: N or threshold: lifecycle"),
        ("{inactivity: {days: 0}}", "(trigger.inactivity.days): must be at least 1 (found 0)"),
        (
            "{inactivity: {threshold: rfm}}",
            "(trigger.inactivity.threshold): unknown threshold 'rfm' (known: lifecycle)",
        ),
        ("{date: birthdy}", "(trigger.date): unknown date 'birthdy' (did you mean 'birthday'?)"),
        (
            "{date: {of: birthday, intervals: {coffee: 30d}}}",
            "(trigger.date.intervals): intervals are for expected_replenishment",
        ),
        ("{segment_entered: 'no spaces'}", "(trigger.segment_entered): segment 'no spaces'"),
        ("{segment_entered: {name: x}}", "(trigger.segment_entered.rule): rule is missing"),
    ],
)
def test_trigger_errors(trigger: str, expected: str) -> None:
    found = problems(f"trigger: {trigger}\nreentry: never\nsteps:\n  - {{id: a, type: end}}\n")
    assert any(expected in p for p in found), found


def test_a_rule_error_points_at_its_column() -> None:
    found = problems(
        """\
        trigger: {event: order_placed}
        reentry: never
        steps:
          - id: check
            type: branch
            if: lifecycle = "at_risk" and clvv > 200
            then: []
        """
    )
    assert found == [
        "journeys/cart.yaml line 6, column 35 (steps[0].if): unknown field 'clvv' "
        "(did you mean 'clv'?)\n"
        '      if: lifecycle = "at_risk" and clvv > 200\n'
        "                                    ^"
    ]


def test_a_rule_in_a_block_is_located_inside_the_block() -> None:
    found = problems(
        """\
        trigger:
          segment_entered:
            name: slipping
            rule: |
              p_alive < 0.4
              and lifecycle in ("repeat", "lyal")
        reentry: never
        steps: [{id: a, type: end}]
        """
    )
    assert len(found) == 1
    assert found[0].startswith("journeys/cart.yaml line 6, column ")
    assert "(trigger.segment_entered.rule): lifecycle is never 'lyal'" in found[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "journeys/cart.yaml line 1: the file is empty: a journey is a mapping"),
        ("- a\n- b\n", "journeys/cart.yaml line 1: expected a journey: a mapping with name,"),
        ("steps: [\n", "journeys/cart.yaml line 2: not valid YAML: expected the node content"),
        ("reentry: never\nreentry: always\n", "line 2 (reentry): reentry is given twice"),
        ("steps: [{id: a, type: end}]\n", "line 1 (trigger): trigger is missing"),
        (MINIMAL.replace("reentry: never", "reentry: sometimes"), "(reentry): unknown re-entry"),
        (MINIMAL.replace("reentry: never", "reentry: {after: -1d}"), "must be longer than zero"),
    ],
)
def test_file_errors(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_journey_errors_are_input_errors_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_journey(tmp_path / "missing.yaml", shown="journeys/missing.yaml")
    assert str(caught.value) == "journeys/missing.yaml: no such file"
    assert caught.value.exit_code == 2


def test_load_reads_the_name_from_the_file_and_keeps_the_path(tmp_path: Path) -> None:
    path = tmp_path / "thanks.yaml.disabled"
    path.write_text(MINIMAL)
    j = load_journey(path)
    assert j.name == "thanks" and j.path == path


# --- navigating, as the engine will -------------------------------------------------------


def test_navigation_through_nested_lists() -> None:
    j = journey(
        """\
        trigger: {event: order_placed}
        reentry: always
        steps:
          - {id: one, type: send, intent: thank_you}
          - id: check
            type: branch
            if: clv > 100
            then:
              - {id: big, type: send, intent: vip_thanks}
              - {id: stop, type: end}
            else:
              - id: ab
                type: split
                variants:
                  - {name: a, steps: [{id: a1, type: wait, duration: 1d}]}
                  - {name: b, steps: []}
          - {id: last, type: send, intent: cross_sell}
        """
    )
    assert j.first == "one"
    assert j.after("one") == "check"
    assert j.after("big") == "stop"
    assert j.after("stop") is None  # an end ends
    assert j.after("a1") == "last"  # out of the variant, out of the branch
    assert j.after("ab") == "last"
    assert j.after("last") is None
    check = j.step("check")
    assert isinstance(check, Branch)
    assert j.into(check, check.then) == "big"
    ab = j.step("ab")
    assert isinstance(ab, Split)
    assert j.into(ab, ab.variants[0].steps) == "a1"
    assert j.into(ab, ab.variants[1].steps) == "last"  # an empty arm goes straight on
    with pytest.raises(KeyError):
        j.step("gone")


def test_as_dict_loads_back_into_the_same_journey() -> None:
    original = journey(
        """\
        name: cart
        description: all of it
        priority: 70
        holdout: 0.05
        trigger:
          event: {type: add_to_cart, abandoned: {within: 90min}}
        goals: [order_placed]
        reentry: {after: 7d}
        steps:
          - {id: w, type: wait, duration: 1.5d, until: "08:15"}
          - {id: b, type: branch, if: 'not purchased within 3d', then: [{id: e, type: end}]}
          - {id: s, type: split, variants: [{name: x, weight: 0.5, steps: []}, {name: y, steps: []}]}
          - {id: u, type: update, set: {n: 1.5, t: "yes"}, suppress: sunset}
          - {id: o, type: send, intent: winback_incentive, channel: email, offer: {level: 1}}
        """
    )
    again = journey(yaml.safe_dump(original.as_dict(), sort_keys=False))
    assert again == original


# --- waiting in the contact's time zone ---------------------------------------------------


def test_waits_in_the_contacts_time_zone() -> None:
    morning = Wait("m", until=time(10, 0))
    rome_9 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # 09:00 in Rome
    assert morning.due_at(rome_9, ROME) == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    at_10 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # 10:00 in Rome: now
    assert morning.due_at(at_10, ROME) == at_10
    after_10 = datetime(2026, 11, 2, 9, 1, tzinfo=UTC)
    assert morning.due_at(after_10, ROME) == datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    later = Wait("l", duration=Duration.parse("5d"), until=time(10, 0))
    assert later.due_at(rome_9, ROME) == datetime(2026, 11, 7, 9, 0, tzinfo=UTC)
    assert later.due_at(after_10, ROME) == datetime(2026, 11, 8, 9, 0, tzinfo=UTC)
    plain = Wait("p", duration=Duration.parse("23h"))
    assert plain.due_at(after_10, ROME) == after_10 + timedelta(hours=23)


def test_wall_times_across_daylight_saving_changes() -> None:
    # Rome springs forward at 02:00 on 29 March 2026: 02:30 does not exist, 03:00 CEST is next
    assert local_instant(date(2026, 3, 29), time(2, 30), ROME) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    # and falls back at 03:00 on 25 October: 02:30 happens twice, the first is taken
    assert local_instant(date(2026, 10, 25), time(2, 30), ROME) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )
    # a morning wait over the spring change lands at 10:00 local, an hour earlier in UTC
    before = datetime(2026, 3, 28, 9, 30, tzinfo=UTC)  # 10:30 CET on Saturday
    assert Wait("m", until=time(10, 0)).due_at(before, ROME) == datetime(
        2026, 3, 29, 8, 0, tzinfo=UTC
    )


ZONES = ["UTC", "Europe/Rome", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu"]


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
    hours=st.one_of(st.none(), st.integers(min_value=1, max_value=24 * 40)),
    until=st.one_of(
        st.none(), st.times().map(lambda t: t.replace(second=0, microsecond=0, fold=0))
    ),
    zone=st.sampled_from(ZONES),
)
def test_a_wait_ends_at_the_first_matching_instant(
    start: datetime, hours: int | None, until: time | None, zone: str
) -> None:
    if hours is None and until is None:
        hours = 1
    tz = ZoneInfo(zone)
    start = start.replace(tzinfo=UTC)
    wait = Wait("w", duration=None if hours is None else Duration(hours * 3600), until=until)
    due = wait.due_at(start, tz)
    earliest = start + timedelta(hours=hours or 0)
    assert due >= earliest
    if until is None:
        assert due == earliest
        return
    assert due - earliest < timedelta(days=1, hours=1)
    local = due.astimezone(tz)
    wall = local.replace(tzinfo=None)
    wanted = datetime.combine(local.date(), until)
    exists = datetime.combine(local.date(), until, tzinfo=tz).astimezone(UTC).astimezone(tz)
    if exists.replace(tzinfo=None) == wanted:
        assert wall.time() == until  # the wall clock shows the time asked for
    else:
        assert wall.time() > until  # inside a gap: the first instant after it


# --- re-entry, holdouts and splits --------------------------------------------------------


def test_reentry_rules() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    never, always = Reentry("never"), Reentry("always")
    monthly = Reentry("after", Duration.parse("30d"))
    for rule in (never, always, monthly):
        assert rule.allows(None, now, active=False)  # a first entry
        assert not rule.allows(None, now, active=True)  # never twice at once
    assert not never.allows(now - timedelta(days=400), now, active=False)
    assert always.allows(now - timedelta(minutes=1), now, active=False)
    assert not monthly.allows(now - timedelta(days=29), now, active=False)
    assert monthly.allows(now - timedelta(days=30), now, active=False)


def test_holdouts_and_splits_draw_the_same_way_every_time_in_proportion() -> None:
    j = journey(
        """\
        holdout: 0.1
        trigger: {event: order_placed}
        reentry: always
        steps:
          - {id: measure, type: holdout, share: 0.25}
          - id: ab
            type: split
            variants:
              - {name: a, weight: 3, steps: []}
              - {name: b, weight: 1, steps: []}
        """
    )
    contacts = range(20_000)
    held = [c for c in contacts if j.held_out(c)]
    assert abs(len(held) / 20_000 - 0.1) < 0.01
    assert [c for c in contacts if j.held_out(c)] == held  # the same draw again
    step = j.step("measure")
    assert isinstance(step, Holdout)
    assert abs(sum(j.holds(step, c) for c in contacts) / 20_000 - 0.25) < 0.015
    split = j.step("ab")
    assert isinstance(split, Split)
    names = [j.choose(split, c).name for c in contacts]
    assert abs(names.count("a") / 20_000 - 0.75) < 0.015
    assert names == [j.choose(split, str(c)).name for c in contacts]  # "7" and 7 are one
    # the journey's holdout and the step's draw independently
    both = sum(1 for c in contacts if j.held_out(c) and j.holds(step, c))
    assert abs(both / 20_000 - 0.025) < 0.006


# --- random journeys survive the round trip -----------------------------------------------

_leaf = st.one_of(
    st.builds(
        lambda d, u: (
            {"type": "wait", **({"duration": d} if d else {}), "until": u}
            if u
            else {"type": "wait", "duration": d or "1h"}
        ),
        st.sampled_from([None, "1h", "90min", "3d", "1.5d"]),
        st.sampled_from([None, "10:00", "08:30"]),
    ),
    st.builds(
        lambda i, c: {"type": "send", "intent": i, "channel": c},
        st.sampled_from(["cart_reminder", "thank_you", "cross_sell"]),
        st.just("best"),
    ),
    st.just(
        {"type": "send", "intent": "cart_incentive", "channel": "email", "offer": {"level": 1}}
    ),
    st.builds(lambda s: {"type": "holdout", "share": s}, st.sampled_from([0.1, 0.5])),
    st.builds(lambda a: {"type": "audience", a: "lapsed"}, st.sampled_from(["add", "remove"])),
    st.just({"type": "update", "set": {"sunset": True, "score": 2}, "suppress": "sunset"}),
    st.just({"type": "webhook", "endpoint": "crm"}),
)


def _lists(leaf: Any) -> Any:
    return st.lists(leaf, max_size=3)


_step = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(
            lambda t, e: {"type": "branch", "if": "clv > 100", "then": t, "else": e},
            _lists(inner),
            _lists(inner),
        ),
        st.builds(
            lambda a, b: {
                "type": "split",
                "variants": [{"name": "a", "weight": 2, "steps": a}, {"name": "b", "steps": b}],
            },
            _lists(inner),
            _lists(inner),
        ),
    ),
    max_leaves=12,
)


def _number(steps: list[dict[str, Any]], counter: list[int]) -> None:
    for step in steps:
        counter[0] += 1
        step["id"] = f"s{counter[0]}"
        for key in ("then", "else"):
            _number(step.get(key, []), counter)
        for variant in step.get("variants", []):
            _number(variant["steps"], counter)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=5), end=st.booleans())
def test_random_journeys_survive_as_dict_and_back(steps: list[dict[str, Any]], end: bool) -> None:
    steps = json.loads(json.dumps([*steps, {"type": "end"}] if end else steps))  # no sharing
    _number(steps, [0])
    source = {"trigger": {"event": "order_placed"}, "reentry": "always", "steps": steps}
    first = journey(yaml.safe_dump(source))
    again = journey(yaml.safe_dump(first.as_dict()))
    assert again == first
    ids = [s.id for s in first.walk()]
    assert len(ids) == len(set(ids))
    # every step is reachable from the start by first/after/into, and the walk ends
    seen: set[str] = set()
    frontier = [first.first]
    while frontier:
        current = frontier.pop()
        if current is None or current in seen:
            continue
        seen.add(current)
        step = first.step(current)
        frontier.append(first.after(current))
        frontier += [first.into(step, inner) for inner in step.lists()]
    assert seen == set(ids)
