"""A journey's A/B split analysed as an experiment, on the hand-made shop: per variant the
entrants, converters and revenue per entrant from entry to the click window after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from measured_shop import build, day
from sqlalchemy import Engine

from reengage.config import Home
from reengage.measure.kpis import Period
from reengage.measure.splits import splits
from reengage.state.schema import enrollments


def test_each_variant_of_a_split_is_an_arm(home: Home, engine: Engine, tmp_path: Path) -> None:
    shop, _ = build(home, engine, tmp_path)
    drawn = {"C1": "a", "C2": "a", "C3": "b", "C4": "b", "C5": "b", "C6": "b"}
    with engine.begin() as conn:
        for customer, variant in drawn.items():
            conn.execute(
                enrollments.insert().values(
                    journey="winback",
                    contact_id=shop.contact(customer),
                    trigger_key=f"t{customer}",
                    entered_at=day(0),
                    status="done",
                    digest="d",
                    variants=f"hold=in;tone={variant}",
                    steps_run=2,
                    payload={},
                )
            )
    found = {f["split"]: f for f in splits(home.settings, engine, Period(day(-1), day(15)))}
    assert set(found) == {"tone"}  # a split every entrant shares in one variant is no test
    tone = found["tone"]
    assert (tone["journey"], tone["control"]) == ("winback", "a")
    rows = {r["variant"]: r for r in tone["variants"]}
    # a: C1 40, C2 30 (its later order is past the window); b: C3, C4, C5 20 each, C6 50
    assert (rows["a"]["n"], rows["a"]["conversions"]) == (2, 2)
    assert rows["a"]["revenue_per_recipient"] == pytest.approx(35.0)
    assert (rows["b"]["n"], rows["b"]["conversions"]) == (4, 4)
    assert rows["b"]["revenue_per_recipient"] == pytest.approx(27.5)
    assert rows["b"]["lift_abs"] == pytest.approx(0.0)
    assert "lift_abs" not in rows["a"]  # the control is not compared with itself
