"""Segments: YAML definitions, refresh with transitions, the Python API and the CLI, on
SQLite and PostgreSQL state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, delete, func, insert, select
from typer.testing import CliRunner

from reengage.audience import segments as segments_module
from reengage.audience.rules import parse
from reengage.audience.segments import (
    create_segment,
    evaluate,
    load_segments,
    members,
    refresh_segments,
)
from reengage.audience.tables import segment_members, segment_transitions
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.errors import InputError
from reengage.facts.kinds import EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.state.schema import consents, contacts, products, scores

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def shop(home: Home, engine: Engine) -> dict[str, int]:
    """Five contacts with scores, consents and facts; their ids by customer id."""
    people = {
        # customer: lifecycle, clv, style, p_alive
        "A": ("at_risk", 300.0, "examiner", 0.3),
        "B": ("at_risk", 300.0, "promoter", 0.9),
        "C": ("at_risk", 50.0, "examiner", 0.5),
        "D": ("loyal", 900.0, "examiner", None),
        "E": ("prospect", None, "unknown", None),
    }
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        conn.execute(
            insert(products),
            [
                {"product_id": p, "category": c, "created_at": NOW, "updated_at": NOW}
                | {"origin": "test", "in_stock": True}
                for p, c in (("S1", "shoes"), ("B1", "bags"))
            ],
        )
        for customer, (stage, clv, style, alive) in people.items():
            ids[customer] = conn.execute(
                insert(contacts).values(
                    customer_id=customer,
                    email=f"{customer.lower()}@example.com",
                    created_at=NOW,
                    updated_at=NOW,
                    origin="customers",
                    attributes={"vip": customer in "AD"},
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(scores).values(
                    contact_id=ids[customer],
                    as_of=NOW - timedelta(days=1),
                    computed_at=NOW,
                    orders=1,
                    total_spent=10.0,
                    lifecycle=stage,
                    threshold_days=60.0,
                    clv=clv,
                    style=style,
                    p_alive=alive,
                    details={"cart_value": 20.0 if customer == "C" else None},
                )
            )
        conn.execute(
            insert(consents).values(
                contact_id=ids["A"],
                channel="email",
                purpose="marketing",
                granted=True,
                source="test",
                recorded_at=NOW - timedelta(days=3),
            )
        )
    root = home.settings.facts_path

    def at(days: float) -> datetime:
        return NOW - timedelta(days=days)

    order_rows = [
        ("O1", "B", at(10), "S1"),
        ("O2", "D", at(40), "B1"),
        ("O3", "D", at(100), "B1"),
        ("O4", "D", at(200), "S1"),
    ]
    append(
        root,
        ORDERS,
        pa.Table.from_pylist(
            [
                {
                    "line_id": f"{o}-1",
                    "order_id": o,
                    "customer_id": c,
                    "ordered_at": t,
                    "product_id": p,
                    "quantity": 1,
                    "unit_price": 10.0,
                    "currency": "EUR",
                    "discount": 0.0,
                    "coupon_code": None,
                    "status": "paid",
                }
                for o, c, t, p in order_rows
            ]
        ),
        ingested_at=at(300),
    )
    event_rows = [
        ("e1", "A", "product_view", at(2), "S1"),
        ("e2", "C", "product_view", at(3), "S1"),
        ("e3", "C", "add_to_cart", at(3), "S1"),
        ("e4", "E", "product_view", at(9), "S1"),
    ]
    append(
        root,
        EVENTS,
        pa.Table.from_pylist(
            [
                {
                    "event_id": e,
                    "customer_id": c,
                    "anonymous_id": None,
                    "type": kind,
                    "occurred_at": t,
                    "product_id": p,
                    "session_id": "s",
                    "source": None,
                    "device": None,
                    "duration_s": None,
                    "properties": None,
                }
                for e, c, kind, t, p in event_rows
            ]
        ),
        ingested_at=at(0),
    )
    return ids


@pytest.fixture
def files_home(tmp_path: Path) -> Home:
    """A home for tests of segment files alone: no state store needed."""
    return Home(load_settings({"REENGAGE_HOME": str(tmp_path / "home")}))


def write(home: Home, name: str, text: str) -> Path:
    path = home.path / "segments" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def customers(engine: Engine, name: str, ids: dict[str, int]) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    with engine.connect() as conn:
        return {by_id[i] for i in members(conn, name)}


# --- definitions --------------------------------------------------------------------------


def test_the_examples_find_their_people(home: Home, engine: Engine, shop: dict[str, int]) -> None:
    write(home, "lapsed", 'rule: lifecycle = "at_risk" and clv > 200 and not purchased within 30d')
    write(
        home,
        "shoe-browsers",
        'rule: viewed product in category "shoes" within 7d and not added_to_cart within 7d',
    )
    write(home, "doubters", 'rule: style = "examiner" and p_alive < 0.4')
    write(home, "regulars", "rule: purchased at least 3 times within 365d")
    write(home, "reachable", "rule: can email and attributes.vip")
    summaries = refresh_segments(home, engine, FixedClock(NOW))
    assert [s.segment for s in summaries] == [
        "doubters",
        "lapsed",
        "reachable",
        "regulars",
        "shoe-browsers",
    ]
    assert customers(engine, "lapsed", shop) == {"A"}  # B bought 10 days ago
    assert customers(engine, "shoe-browsers", shop) == {"A"}  # C added, E too long ago
    assert customers(engine, "doubters", shop) == {"A"}  # D has no p_alive: not < 0.4
    assert customers(engine, "regulars", shop) == {"D"}
    assert customers(engine, "reachable", shop) == {"A"}


def test_refresh_records_entries_and_exits_and_writes_only_changes(
    home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    write(home, "browsers", "rule: viewed product within 7d")
    clock = FixedClock(NOW)
    [first] = refresh_segments(home, engine, clock)
    assert (first.size, first.entered, first.exited) == (2, 2, 0)
    with engine.connect() as conn:
        entered = dict(
            conn.execute(select(segment_members.c.contact_id, segment_members.c.entered_at)).all()
        )
    [again] = refresh_segments(home, engine, clock)
    assert (again.size, again.entered, again.exited) == (2, 0, 0)
    clock.advance(timedelta(days=3))  # C's view (3 days ago) is now 6 days old, A's 5
    clock.advance(timedelta(days=1, hours=12))  # now 7.5 and 6.5 days: C leaves
    [later] = refresh_segments(home, engine, clock)
    assert (later.size, later.entered, later.exited) == (1, 0, 1)
    assert customers(engine, "browsers", shop) == {"A"}
    with engine.connect() as conn:
        moves = conn.execute(
            select(segment_transitions.c.contact_id, segment_transitions.c.kind).order_by(
                segment_transitions.c.id
            )
        ).all()
        kept = conn.execute(
            select(segment_members.c.entered_at).where(segment_members.c.contact_id == shop["A"])
        ).scalar_one()
    assert sorted(moves[:2]) == sorted([(shop["A"], "enter"), (shop["C"], "enter")])
    assert moves[2:] == [(shop["C"], "exit")]
    assert kept == entered[shop["A"]]  # a member who stays keeps their entry time


def test_a_changed_rule_moves_people_both_ways(
    home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    clock = FixedClock(NOW)
    write(home, "big", "rule: clv > 200")
    refresh_segments(home, engine, clock)
    assert customers(engine, "big", shop) == {"A", "B", "D"}
    write(home, "big", "rule: clv < 100 or clv > 500")
    [s] = refresh_segments(home, engine, clock)
    assert (s.entered, s.exited, s.size) == (1, 2, 2)
    assert customers(engine, "big", shop) == {"C", "D"}


def test_refresh_of_named_segments_only(home: Home, engine: Engine, shop: dict[str, int]) -> None:
    write(home, "one", "rule: clv > 200")
    write(home, "two", "rule: clv > 0")
    summaries = refresh_segments(home, engine, FixedClock(NOW), ["two"])
    assert [s.segment for s in summaries] == ["two"]
    with engine.connect() as conn:
        assert members(conn, "one") == set()
    with pytest.raises(InputError, match="no segment named 'three'"):
        refresh_segments(home, engine, FixedClock(NOW), ["three"])


def test_a_failure_leaves_the_segment_as_it_was(
    home: Home, engine: Engine, shop: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home, "a-first", "rule: clv > 0")
    write(home, "b-second", "rule: clv > 200")
    clock = FixedClock(NOW)
    refresh_segments(home, engine, clock)
    write(home, "a-first", "rule: clv > 500")
    write(home, "b-second", "rule: clv < 100")
    real = segments_module._apply

    def fails_after_writing(conn: Any, segment: Any, found: Any, now: Any) -> Any:
        summary = real(conn, segment, found, now)
        if segment.name == "b-second":
            raise RuntimeError("the disk is full")
        return summary

    monkeypatch.setattr(segments_module, "_apply", fails_after_writing)
    with pytest.raises(RuntimeError):
        refresh_segments(home, engine, clock)
    assert customers(engine, "a-first", shop) == {"D"}  # its own transaction committed
    assert customers(engine, "b-second", shop) == {"A", "B", "D"}  # untouched
    with engine.connect() as conn:
        moves = conn.execute(
            select(func.count())
            .select_from(segment_transitions)
            .where(segment_transitions.c.segment == "b-second")
        ).scalar_one()
    assert moves == 3  # only the first refresh's entries
    monkeypatch.setattr(segments_module, "_apply", real)
    refresh_segments(home, engine, clock)  # and the next refresh works from there
    assert customers(engine, "b-second", shop) == {"C"}


def test_erasing_a_contact_removes_their_memberships(
    home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    write(home, "big", "rule: clv > 200")
    refresh_segments(home, engine, FixedClock(NOW))
    with engine.begin() as conn:
        conn.execute(delete(contacts).where(contacts.c.id == shop["A"]))
    assert customers(engine, "big", {k: v for k, v in shop.items() if k != "A"}) == {"B", "D"}
    [s] = refresh_segments(home, engine, FixedClock(NOW))
    assert (s.size, s.entered, s.exited) == (2, 0, 0)


# --- files and their errors ---------------------------------------------------------------


def test_create_writes_a_file_a_person_can_edit(files_home: Home) -> None:
    home = files_home
    segment = create_segment(
        home,
        "lapsed",
        'lifecycle = "at_risk" and clv > 200\n  and not purchased within 30d',
        description="Valuable: slipping away",
    )
    text = segment.path.read_text()
    assert text == (
        "name: lapsed\n"
        "description: 'Valuable: slipping away'\n"
        "rule: |-\n"
        '  lifecycle = "at_risk" and clv > 200\n'
        "    and not purchased within 30d\n"
    )
    assert load_segments(home)["lapsed"].rule == segment.rule
    with pytest.raises(InputError, match="exists: give --replace"):
        create_segment(home, "lapsed", "clv > 1")
    assert create_segment(home, "lapsed", "clv > 1", replace=True).description is None
    with pytest.raises(InputError, match="segment name 'no/slash'"):
        create_segment(home, "no/slash", "clv > 1")


def load_error(home: Home, text: str) -> str:
    write(home, "broken", text)
    with pytest.raises(InputError) as caught:
        load_segments(home)
    return str(caught.value)


def test_a_rule_error_points_into_the_yaml_file(files_home: Home) -> None:
    message = load_error(
        files_home,
        'name: broken\ndescription: x\nrule: lifecycle = "at_risk" and clvv > 200\n',
    )
    assert message == (
        "segments/broken.yaml line 3, column 33: unknown field 'clvv' (did you mean 'clv'?)\n"
        '  rule: lifecycle = "at_risk" and clvv > 200\n'
        "                                  ^"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # a literal block: lines kept
        ('rule: |\n  lifecycle = "at_risk"\n    and clvv > 200\n', 3),
        # a folded block: lines joined with spaces
        ('rule: >-\n  lifecycle = "at_risk"\n  and clvv > 200\n', 3),
        # a plain scalar over two lines
        ('name: broken\nrule: lifecycle = "at_risk"\n  and clvv > 200\n', 3),
        # quoted, with escapes
        ("rule: 'lifecycle = \"at_risk\" and clvv > 200'\n", 1),
        ('rule: "lifecycle = \\"at_risk\\" and clvv > 200"\n', 1),
        # the rule after other keys, with a comment
        ("# lapsed customers\ndescription: x\nrule: >\n   clv > 1 and\n   clvv > 2\n", 5),
    ],
)
def test_the_rule_line_is_found_whatever_the_yaml_style(
    files_home: Home, text: str, line: int
) -> None:
    message = load_error(files_home, text)
    first, shown, caret = message.splitlines()
    column = text.splitlines()[line - 1].index("clvv") + 1
    assert first.startswith(f"segments/broken.yaml line {line}, column {column}: "), message
    assert shown == "  " + text.splitlines()[line - 1]
    assert caret == "  " + " " * (column - 1) + "^"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rule: [unclosed\n", "segments/broken.yaml line 2, column 1: not valid YAML"),
        ("- a list\n", "segments/broken.yaml line 1, column 1: a segment file is a mapping"),
        ("rule: clv > 1\nrules: x\n", "line 2, column 1: unknown key 'rules'"),
        ("description: nothing\n", "line 1, column 1: rule is missing"),
        ("rule: 3\n", "line 1, column 7: rule must be text"),
        ("name: other\nrule: clv > 1\n", "line 1, column 7: name 'other' differs from the file"),
        ("rule: clv > 1\nrule: clv > 2\n", "line 2, column 1: rule is given twice"),
        ("", "a segment file is a mapping"),
    ],
)
def test_file_errors_name_the_file_and_line(files_home: Home, text: str, expected: str) -> None:
    assert expected in load_error(files_home, text)


def test_a_broken_file_stops_refresh_before_anything_is_written(
    home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    write(home, "good", "rule: clv > 200")
    write(home, "bad", "rule: clv >")
    with pytest.raises(InputError, match=r"segments/bad\.yaml line 1"):
        refresh_segments(home, engine, FixedClock(NOW))
    with engine.connect() as conn:
        assert members(conn, "good") == set()


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def segments_cli(cli: CliRunner) -> Iterator[CliRunner]:
    """`reengage segments` on the app for this test only, unless cli.py already registers it:
    registered for the whole session, it would show up in other tests' views of the CLI."""
    already = any(g.name == "segments" for g in app.registered_groups)
    from reengage.audience import commands

    if not any(g.typer_instance is commands.segments_app for g in app.registered_groups):
        app.add_typer(commands.segments_app, name="segments")
    try:
        yield cli
    finally:
        if not already:
            app.registered_groups[:] = [
                g for g in app.registered_groups if g.typer_instance is not commands.segments_app
            ]


def run(cli: CliRunner, *args: str, code: int = 0) -> Any:
    result = cli.invoke(app, ["--now", NOW.isoformat(), *args])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def test_the_command_line(
    segments_cli: CliRunner, home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    cli = segments_cli
    created = run(
        cli,
        "segments",
        "create",
        "lapsed",
        "--rule",
        'lifecycle = "at_risk" and clv > 200 and not purchased within 30d',
        "--description",
        "Slipping away",
        "--json",
    )
    assert created["rule"] == 'lifecycle = "at_risk" and clv > 200 and not purchased within 30d'
    run(cli, "segments", "create", "browsers", "--rule", "viewed product within 7d")
    refreshed = run(cli, "segments", "refresh", "--json")
    assert refreshed == [
        {
            "segment": "browsers",
            "size": 2,
            "entered": 2,
            "exited": 0,
            "refreshed_at": NOW.isoformat(),
        },
        {
            "segment": "lapsed",
            "size": 1,
            "entered": 1,
            "exited": 0,
            "refreshed_at": NOW.isoformat(),
        },
    ]
    assert "lapsed" in run(cli, "segments", "refresh", "lapsed")
    listed = run(cli, "segments", "list", "--json")
    assert [(s["name"], s["size"], s["description"]) for s in listed] == [
        ("browsers", 2, None),
        ("lapsed", 1, "Slipping away"),
    ]
    assert listed[1]["refreshed_at"] == NOW.isoformat()
    shown = run(cli, "segments", "show", "browsers", "--json")
    assert shown["size"] == 2
    assert sorted(shown["sample"]) == ["A", "C"]
    assert shown["transitions"]["1d"] == {"entered": 2, "exited": 0}
    assert shown["rule"] == "viewed product within 7d"
    assert "browsers" in run(cli, "segments", "list")
    assert "viewed product" in run(cli, "segments", "show", "browsers")


def test_command_line_errors(segments_cli: CliRunner, home: Home, engine: Engine) -> None:
    cli = segments_cli
    rule = 'lifecycle = "new" and clvv = "[/x]" and city = "[bold]"'
    bad = run(cli, "segments", "create", "x", "--rule", rule, code=2)
    assert bad.splitlines() == [
        "error: --rule line 1, column 23: unknown field 'clvv' (did you mean 'clv'?)",
        f"  {rule}",  # as written, brackets and all, on one line however long
        "  " + " " * 22 + "^",
    ]
    assert "no segment named 'nope'" in run(cli, "segments", "show", "nope", code=2)
    assert "no segment named 'nope'" in run(cli, "segments", "refresh", "nope", code=2)
    write(home, "broken", "rule: clv >\n")
    listed = run(cli, "segments", "list", "--json")
    assert listed[0]["name"] == "broken" and "line 1" in listed[0]["error"]
    assert "file has an error" in run(cli, "segments", "list")


def test_more_rules_and_activities_than_one_word_of_bits(
    home: Home, engine: Engine, shop: dict[str, int]
) -> None:
    """62 rules (or activities) share a 64-bit column; more spill into the next ones."""
    rules = {f"r{i}": parse(f"clv > {i * 5}") for i in range(70)}
    rules |= {f"w{h}": parse(f"viewed product within {h * 4 + 1}h") for h in range(70)}
    found = evaluate(home, engine, rules, NOW)
    by_id = {v: k for k, v in shop.items()}
    clv = {"A": 300.0, "B": 300.0, "C": 50.0, "D": 900.0}
    for i in range(70):
        assert {by_id[c] for c in found[f"r{i}"]} == {k for k, v in clv.items() if v > i * 5}
    viewed = {"A": 48, "C": 72, "E": 216}  # hours ago
    for h in range(70):
        expected = {k for k, hours in viewed.items() if hours < h * 4 + 1}
        assert {by_id[c] for c in found[f"w{h}"]} == expected, h
