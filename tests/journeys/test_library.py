"""The built-in journeys say what docs/journeys.md says they do, at a respectful pace; the home
decides which run (`enable`, `disable`); and `reengage journeys` lists, shows and validates."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import Home
from reengage.ingest.vocabulary import EVENT_TYPES
from reengage.journeys import (
    LIBRARY,
    Branch,
    DateTrigger,
    EventTrigger,
    InactivityTrigger,
    Journey,
    JourneyError,
    SegmentTrigger,
    Send,
    Split,
    Step,
    Update,
    Wait,
    builtin_names,
    catalogue,
    disable_journey,
    enable_journey,
    enabled_journeys,
    read,
)
from reengage.messages.intents import INTENTS
from reengage.messages.offers import DEFAULT_LADDER

BUILTINS = [
    "abandoned_cart",
    "advocacy",
    "at_risk",
    "browse_abandonment",
    "post_purchase",
    "replenishment",
    "vip",
    "win_back",
]
DOCS = Path(__file__).parent.parent.parent / "docs" / "journeys.md"
# the home's state is not used by journeys: SQLite is enough
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def builtin(name: str) -> Journey:
    return read(LIBRARY / f"{name}.yaml")


def timelines(steps: Sequence[Step], start: timedelta = timedelta(0)) -> Iterator[list[tuple]]:
    """Every path through the steps: (earliest time since entry, step) for each step met. A
    wait with `until` counts its duration only (the time of day adds less than a day)."""
    if not steps:
        yield []
        return
    step, rest = steps[0], steps[1:]
    here = [(start, step)]
    if isinstance(step, Wait):
        later = start + (step.duration.timedelta if step.duration else timedelta(0))
        for tail in timelines(rest, later):
            yield here + tail
    elif isinstance(step, Branch | Split):
        arms = [step.then, step.otherwise] if isinstance(step, Branch) else step.lists()
        for arm in arms:
            for path in timelines(list(arm) + list(rest), start):
                yield here + path
    elif step.kind == "end":
        yield here
    else:
        for tail in timelines(rest, start):
            yield here + tail


def sends(path: list[tuple]) -> list[tuple[timedelta, Send]]:
    return [(t, s) for t, s in path if isinstance(s, Send)]


# --- the library --------------------------------------------------------------------------


def test_the_library_has_the_eight_journeys_and_each_is_valid() -> None:
    assert builtin_names() == BUILTINS
    for name in BUILTINS:
        journey = builtin(name)
        assert journey.name == name
        assert journey.description
        assert "unsubscribed" in journey.goals


def test_abandoned_cart() -> None:
    j = builtin("abandoned_cart")
    assert isinstance(j.trigger, EventTrigger) and j.trigger.type == "add_to_cart"
    assert j.trigger.abandoned is not None
    assert j.trigger.abandoned.within.timedelta == timedelta(hours=1)
    assert set(j.trigger.abandoned.unless) == {"checkout_start", "order_placed"}
    assert j.goals[0] == "order_placed"
    paths = [sends(p) for p in timelines(j.steps)]
    full = max(paths, key=len)
    # the cart is left at the trigger's 1 h: a reminder then, help at about 24 h, the incentive
    # at about 72 h, and only on the path where nothing was bought
    assert [(t + timedelta(hours=1), s.intent) for t, s in full] == [
        (timedelta(hours=1), "cart_reminder"),
        (timedelta(hours=24), "cart_help"),
        (timedelta(hours=72), "cart_incentive"),
    ]
    assert full[-1][1].offer == 1
    branch = j.step("still_no_order")
    assert isinstance(branch, Branch) and "not purchased" in branch.condition.text
    assert [len(p) for p in paths] == [3, 2]  # without the incentive on the other path


def test_post_purchase() -> None:
    j = builtin("post_purchase")
    assert j.trigger == EventTrigger("order_placed")
    (path,) = [sends(p) for p in timelines(j.steps)]
    assert [s.intent for _, s in path] == ["thank_you", "check_in", "review_request", "cross_sell"]
    days = [t.days for t, _ in path]
    assert days == [0, 5, 14, 30]
    assert [INTENTS[s.intent].purpose for _, s in path[:2]] == ["transactional"] * 2
    assert all(s.offer is None for _, s in path)
    assert j.reentry.mode == "always"


def test_win_back_climbs_the_ladder_then_sunsets() -> None:
    j = builtin("win_back")
    assert j.trigger == InactivityTrigger(threshold="lifecycle")
    paths = list(timelines(j.steps))
    full = max(paths, key=len)
    intents = [(s.intent, s.offer) for _, s in sends(full)]
    assert intents == [
        ("winback_reminder", None),
        ("winback_incentive", 1),
        ("winback_incentive", 2),
        ("last_chance", None),
        ("sunset_goodbye", None),
    ]
    at = {s.id: t for t, s in full}
    rung = {r.level: r for r in DEFAULT_LADDER.rungs}
    window = timedelta(days=DEFAULT_LADDER.window_days)
    # level 1 comes after a message of the family, level 2 after level 1, both in the window
    # (a wait's time of day adds up to a day), and only once the level-1 code has expired
    assert timedelta(0) < at["incentive"] - at["reminder"] <= window - timedelta(days=1)
    gap = at["better_incentive"] - at["incentive"]
    assert timedelta(days=rung[1].valid_days) <= gap <= window - timedelta(days=1)
    # the last chance speaks while the level-2 code still runs
    assert at["last_chance"] - at["better_incentive"] + timedelta(days=1) < timedelta(
        days=rung[2].valid_days
    )
    # the sunset comes last, after the goodbye has had time to go (caps defer up to 3 days)
    last = full[-1][1]
    assert isinstance(last, Update) and last.suppress == "sunset"
    assert ("sunset", True) in last.attributes
    assert at["sunset"] - at["goodbye"] > timedelta(days=3)
    # someone who clicked lately is not sunset
    engaged = j.step("engaged")
    assert isinstance(engaged, Branch) and "clicked email" in engaged.condition.text
    kept = [p for p in paths if any(s.id == "keep" for _, s in p)]
    assert kept and all(not isinstance(p[-1][1], Update) for p in kept)


def test_at_risk_vip_replenishment_and_browse() -> None:
    at_risk = builtin("at_risk")
    assert isinstance(at_risk.trigger, SegmentTrigger) and at_risk.trigger.rule is not None
    assert "p_alive < 0.4" in at_risk.trigger.rule.text
    assert {s.intent for s in at_risk.walk() if isinstance(s, Send)} == {
        "cross_sell",
        "winback_reminder",
    }
    vip = builtin("vip")
    assert isinstance(vip.trigger, SegmentTrigger)
    assert [s.intent for s in vip.walk() if isinstance(s, Send)] == ["vip_thanks"]
    replenishment = builtin("replenishment")
    assert isinstance(replenishment.trigger, DateTrigger)
    assert replenishment.trigger.of == "expected_replenishment"
    assert str(replenishment.trigger.offset) == "-3d"
    assert [s.intent for s in replenishment.walk() if isinstance(s, Send)] == ["replenishment"]
    browse = builtin("browse_abandonment")
    assert isinstance(browse.trigger, EventTrigger) and browse.trigger.type == "product_view"
    assert browse.trigger.abandoned is not None
    assert [s.intent for s in browse.walk() if isinstance(s, Send)] == ["browse_reminder"]


def test_priorities_put_carts_first_and_promotions_last() -> None:
    p = {name: builtin(name).priority for name in BUILTINS}
    assert p["abandoned_cart"] > p["post_purchase"] > p["vip"] >= p["at_risk"] > p["win_back"]
    assert p["win_back"] == min(p.values())


@pytest.mark.parametrize("name", BUILTINS)
def test_a_respectful_pace(name: str) -> None:
    """No contact gets two marketing messages from one journey less than 20 hours apart, and
    only the incentive intents ask for an offer."""
    journey = builtin(name)
    for path in timelines(journey.steps):
        marketing = [(t, s) for t, s in sends(path) if s.purpose == "marketing"]
        for (t1, _), (t2, _) in pairwise(marketing):
            assert t2 - t1 >= timedelta(hours=20), (name, t1, t2)
        for _, s in sends(path):
            assert s.offer is None or INTENTS[s.intent].incentive
            assert s.channel == "best" or s.channel in INTENTS[s.intent].channels


def test_the_docs_describe_every_builtin_step_trigger_and_goal() -> None:
    from reengage.journeys.steps import STEP_TYPES
    from reengage.journeys.triggers import DATES, GOALS, KINDS

    text = DOCS.read_text(encoding="utf-8")
    for name in BUILTINS:
        assert f"### `{name}`" in text, name
    for word in (*STEP_TYPES, *KINDS, *GOALS, *DATES, "never", "always", "after"):
        assert f"`{word}`" in text, word


# --- the home: enabled and disabled -------------------------------------------------------


@SQLITE
def test_enable_copies_a_builtin_and_writes_its_segment(home: Home) -> None:
    done = enable_journey(home, "at_risk")
    assert done.action == "copied"
    assert done.path == home.path / "journeys" / "at_risk.yaml"
    assert done.path.read_text() == (LIBRARY / "at_risk.yaml").read_text()
    assert done.segments == ("slipping_away",)
    from reengage.audience.definitions import load_segments

    segment = load_segments(home)["slipping_away"]
    assert "p_alive < 0.4" in segment.rule.text
    assert list(enabled_journeys(home)) == ["at_risk"]
    # again: nothing changes, and a tuned segment is kept
    (home.path / "segments" / "slipping_away.yaml").write_text("rule: p_alive < 0.3\n")
    assert enable_journey(home, "at_risk").action == "already"
    assert "0.3" in (home.path / "segments" / "slipping_away.yaml").read_text()


@SQLITE
def test_disable_keeps_the_file_and_enable_restores_it(home: Home) -> None:
    path = enable_journey(home, "abandoned_cart").path
    path.write_text(path.read_text().replace("priority: 80", "priority: 90"))
    moved = disable_journey(home, "abandoned_cart")
    assert moved == path.with_name("abandoned_cart.yaml.disabled") and not path.exists()
    assert enabled_journeys(home) == {}
    entry = {e.name: e for e in catalogue(home)}["abandoned_cart"]
    assert (entry.source, entry.enabled) == ("home", False)
    assert entry.journey is not None and entry.journey.priority == 90
    assert disable_journey(home, "abandoned_cart") is None
    assert enable_journey(home, "abandoned_cart").action == "restored"
    assert enabled_journeys(home)["abandoned_cart"].priority == 90


@SQLITE
def test_a_broken_file_is_never_enabled_and_stops_the_engine(home: Home) -> None:
    folder = home.path / "journeys"
    folder.mkdir()
    (folder / "mine.yaml.disabled").write_text(
        "trigger: {event: order_placed}\nreentry: never\nsteps: [{id: a, type: sned}]\n"
    )
    with pytest.raises(JourneyError, match=r"journeys/mine.yaml.disabled line 3"):
        enable_journey(home, "mine")
    assert (folder / "mine.yaml.disabled").exists()
    (folder / "mine.yaml").write_text("trigger: {event: nothing}\nreentry: never\nsteps: []\n")
    with pytest.raises(JourneyError) as caught:
        enabled_journeys(home)
    assert [str(p) for p in caught.value.problems] == [
        "journeys/mine.yaml line 1 (trigger.event): unknown event type 'nothing' "
        f"(known: {', '.join([*EVENT_TYPES, 'order_placed'])})",
        "journeys/mine.yaml line 3 (steps): a journey needs at least one step",
    ]


@SQLITE
def test_a_named_segment_is_checked_against_the_home(home: Home) -> None:
    folder = home.path / "journeys"
    folder.mkdir()
    (folder / "lapsed.yaml").write_text(
        "trigger: {segment_entered: lapsed}\nreentry: never\nsteps: [{id: a, type: end}]\n"
    )
    with pytest.raises(JourneyError, match="no segment named 'lapsed' in segments/"):
        enabled_journeys(home)
    from reengage.audience.definitions import create_segment

    create_segment(home, "lapsed", "recency_days > 90")
    assert enabled_journeys(home)["lapsed"].trigger == SegmentTrigger("lapsed")


# --- the command line ---------------------------------------------------------------------


@SQLITE
def test_cli_list_show_enable_disable(cli: CliRunner, home: Home) -> None:
    listed = cli.invoke(app, ["journeys", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert list(rows) == BUILTINS
    assert rows["abandoned_cart"] | {"description": None} == {
        "name": "abandoned_cart",
        "enabled": False,
        "source": "builtin",
        "file": "library/abandoned_cart.yaml",
        "trigger": "add_to_cart abandoned within 1h",
        "steps": 6,
        "priority": 80,
        "holdout": 0.05,
        "description": None,
        "error": None,
    }

    enabled = cli.invoke(app, ["journeys", "enable", "vip"])
    assert enabled.exit_code == 0, enabled.output
    assert "copied the built-in to journeys/vip.yaml" in enabled.stdout
    assert "wrote segments/champions.yaml" in enabled.stdout
    rows = {
        r["name"]: r for r in json.loads(cli.invoke(app, ["journeys", "list", "--json"]).stdout)
    }
    assert (rows["vip"]["enabled"], rows["vip"]["source"]) == (True, "home")

    shown = cli.invoke(app, ["journeys", "show", "vip", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["enabled"] is True and data["file"] == "journeys/vip.yaml"
    assert data["trigger"]["segment_entered"]["rule"] == 'rfm_segment = "Champions"'
    assert [s["type"] for s in data["steps"]] == ["wait", "send"]

    text = cli.invoke(app, ["journeys", "show", "win_back"])
    assert text.exit_code == 0, text.output
    assert "incentive: send winback_incentive on the best channel, offer level 1" in text.stdout
    assert "  engaged: if clicked email within 45d" in text.stdout
    assert "      keep: end" in text.stdout

    disabled = cli.invoke(app, ["journeys", "disable", "vip"])
    assert disabled.exit_code == 0 and "journeys/vip.yaml.disabled" in disabled.stdout
    again = cli.invoke(app, ["journeys", "disable", "vip"])
    assert again.exit_code == 0 and "vip is not enabled" in again.stdout

    unknown = cli.invoke(app, ["journeys", "show", "nope"])
    assert unknown.exit_code == 2
    assert "no journey named 'nope'" in unknown.stderr
    assert cli.invoke(app, ["journeys", "enable", "nope"]).exit_code == 2
    assert cli.invoke(app, ["journeys", "disable", "nope"]).exit_code == 2


@SQLITE
def test_cli_validate_prints_every_error_and_exits_2(cli: CliRunner, home: Home) -> None:
    everything = cli.invoke(app, ["journeys", "validate"])
    assert everything.exit_code == 0, everything.output
    assert "8 journey file(s) checked: all valid" in everything.stdout

    folder = home.path / "journeys"
    folder.mkdir()
    bad = folder / "cart.yaml"
    bad.write_text(
        "trigger:\n"
        "  event: {type: add_to_cart, abandoned: {within: 1h}}\n"
        "reentry: never\n"
        "steps:\n"
        "  - {id: a, type: send, intent: cart_remindr}\n"
        "  - {id: b, type: wait, duration: 1d}\n"
        "  - id: c\n"
        "    type: branch\n"
        "    if: clvv > 3\n"
        "    then: []\n"
    )
    result = cli.invoke(app, ["journeys", "validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: journeys/cart.yaml line 5 (steps[0].intent): unknown intent 'cart_remindr' "
        "(did you mean 'cart_reminder'?)",
        "error: journeys/cart.yaml line 9, column 9 (steps[2].if): unknown field 'clvv' "
        "(did you mean 'clv'?)",
        "      if: clvv > 3",
        "          ^",
    ]
    whole = cli.invoke(app, ["journeys", "validate", "--json"])
    assert whole.exit_code == 2
    report = json.loads(whole.stdout)
    assert report["ok"] is False
    assert [f["file"] for f in report["files"] if f["errors"]] == ["journeys/cart.yaml"]
    listed = json.loads(cli.invoke(app, ["journeys", "list", "--json"]).stdout)
    broken = {r["name"]: r for r in listed}["cart"]
    assert broken["enabled"] is True and len(broken["error"]) == 2


def test_cli_validate_needs_no_home_for_files(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REENGAGE_HOME", str(tmp_path / "nowhere"))
    good = tmp_path / "thanks.yaml"
    good.write_text(
        "trigger: {event: order_placed}\nreentry: always\nsteps: [{id: a, type: end}]\n"
    )
    result = cli.invoke(app, ["journeys", "validate", str(good), str(LIBRARY / "win_back.yaml")])
    assert result.exit_code == 0, result.output
    assert "2 journey file(s) checked: all valid" in result.stdout
    assert cli.invoke(app, ["journeys", "list"]).exit_code == 2  # listing needs a home
