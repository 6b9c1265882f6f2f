"""Attribution on small cases worked out by hand: a redeemed code beats a later click, the
last human click within five days wins, opens count only when switched on, machine opens and
clicks never count, and cancelled orders are nobody's."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from measured_shop import build, day
from sqlalchemy import Engine

from reengage.config import Home
from reengage.measure.attribution import Windows, attribute


def by_order(table: pa.Table) -> dict[str, tuple[int | None, str | None]]:
    return {r["order_id"]: (r["message_id"], r["rule"]) for r in table.to_pylist()}


def test_each_order_goes_to_at_most_one_message_by_the_first_rule(
    home: Home, engine: Engine, tmp_path: Path
) -> None:
    _, m = build(home, engine, tmp_path)
    table = attribute(home.settings, engine, day(-1), day(15))
    assert by_order(table) == {
        "O1": (m["c1_code"], "code"),
        "O2": (m["c2"], "click"),
        "O3": (None, None),
        "O4": (None, None),  # opens are off by default
        "O5": (None, None),
        "O6": (None, None),
        "O7": (m["c6_second"], "click"),
    }
    rows = {r["order_id"]: r for r in table.to_pylist()}
    assert rows["O1"]["channel"] == "email" and rows["O1"]["journey"] == "winback"
    assert rows["O2"]["value"] == 30.0
    assert rows["O7"]["step"] == "second"


def test_opens_count_when_switched_on_but_never_a_machines(
    home: Home, engine: Engine, tmp_path: Path
) -> None:
    _, m = build(home, engine, tmp_path)
    windows = replace(Windows.from_settings(home.settings), open=timedelta(days=2))
    found = by_order(attribute(home.settings, engine, day(-1), day(15), windows=windows))
    assert found["O4"] == (m["c3"], "open")
    assert found["O5"] == (None, None)
    narrow = replace(windows, open=timedelta(hours=12))
    assert by_order(attribute(home.settings, engine, day(-1), day(15), windows=narrow))["O4"] == (
        None,
        None,
    )


def test_the_click_window_is_a_setting(home: Home, engine: Engine, tmp_path: Path) -> None:
    _, m = build(home, engine, tmp_path)
    wide = replace(Windows.from_settings(home.settings), click=timedelta(days=10))
    found = by_order(attribute(home.settings, engine, day(-1), day(15), windows=wide))
    assert found["O3"] == (m["c2"], "click")
    short = replace(wide, click=timedelta(days=2))
    assert by_order(attribute(home.settings, engine, day(-1), day(15), windows=short))["O2"] == (
        None,
        None,
    )


def test_only_orders_in_the_period(home: Home, engine: Engine, tmp_path: Path) -> None:
    build(home, engine, tmp_path)
    table = attribute(home.settings, engine, day(3.5), day(15))
    assert sorted(table.column("order_id").to_pylist()) == ["O1", "O2", "O3"]
