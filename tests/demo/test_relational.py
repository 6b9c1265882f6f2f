"""The relational simulation: the response model's congruence effect, measured, and the
relational demo end to end on a small shop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from reengage.config import Settings
from reengage.demo.relational import run_relational_demo
from reengage.demo.responses import ResponseModel, draw
from reengage.experiments.stats import ArmCounts, compare

N = 40_000  # simulated messages per arm: enough for an interval a few tenths of a point wide
STYLES = np.array(["go_getter", "promoter", "nurturer", "examiner"])


def _arms(congruence: float, seed: int = 3) -> tuple[ArmCounts, ArmCounts, float]:
    """Adapted (the inferred style's variant, right for 60% of the people) against neutral
    copy, on the same win-back message; and the difference of click rates the model expects."""
    model = ResponseModel(congruence_effect=congruence)
    rng = np.random.default_rng(seed)
    intents, stages = ["winback_reminder"] * N, ["at_risk"] * N
    right = rng.random(N) < 0.6
    adapted = draw(model, rng, intents, stages, right)
    neutral = draw(model, rng, intents, stages, np.zeros(N, dtype=bool))
    click, _ = model.probabilities(["winback_reminder"] * 2, ["at_risk"] * 2, [False, True])
    expected = 0.6 * (click[1] - click[0])
    return (
        ArmCounts.from_arrays("neutral", neutral.clicked.astype(int)),
        ArmCounts.from_arrays("adapted", adapted.clicked.astype(int)),
        float(expected),
    )


def test_congruent_messages_convert_more_as_the_model_says() -> None:
    neutral, adapted, expected = _arms(0.4)
    found = compare(neutral, adapted).rate
    assert found.lift_abs > 0 and found.ci.low > 0
    # the measured difference is the model's within the measurement's own interval
    assert found.ci.low <= expected <= found.ci.high


def test_without_congruence_the_two_are_indistinguishable() -> None:
    neutral, adapted, expected = _arms(0.0)
    found = compare(neutral, adapted).rate
    assert expected == 0 and found.ci.low <= 0 <= found.ci.high


def test_buyers_click_and_clickers_open() -> None:
    got = draw(
        ResponseModel(),
        np.random.default_rng(1),
        ["cart_reminder"] * 5000,
        ["new"] * 5000,
        np.ones(5000, dtype=bool),
    )
    assert got.bought.any() and not (got.bought & ~got.clicked).any()
    assert not (got.clicked & ~got.opened).any()


def test_the_relational_demo_measures_and_learns(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    now = datetime(2026, 11, 1, 9, tzinfo=UTC)
    args = {"now": now, "customers": 250, "days": 10, "newsletters": 2, "congruence": 0.4}
    console = Console(record=True, width=200)
    found = run_relational_demo(settings, console=console, **args)  # type: ignore[arg-type]
    text = console.export_text()
    assert "SIMULATION" in text and "macro-F1" in text and "on − off" in text
    both = found["lift"]["both"]
    assert both["arms"]["on"]["n"] + both["arms"]["off"]["n"] > 0
    for key in ("on_vs_holdout", "off_vs_holdout", "on_vs_off"):
        low, high = both[key]["conversion_diff_ci"]
        assert low <= both[key]["conversion_diff"] <= high
    steps = [s["macro_f1"] for s in found["learning"]]
    assert len(steps) == 4 and all(0 <= f <= 1 for f in steps)
    # Not asserted: macro-F1 after >= before. On this 250-customer shop it fell (0.675 ->
    # 0.671): silence lowers the top style below the 0.5 threshold for some contacts, and
    # "unknown" counts as wrong. Open question for the learning's design (see the report).
    measured_like_the_simulation(settings.home / "relational" / "home", now)
    # running it again adds nothing: the saved result
    saved = (tmp_path / "home" / "relational" / "result.json").read_text()
    again = run_relational_demo(settings, console=None, **args)  # type: ignore[arg-type]
    assert again == found == json.loads(saved)


def measured_like_the_simulation(folder: Path, now: datetime) -> None:
    """The KPIs and the attribution of the simulated messages agree with what the simulation
    wrote: every human click counted once, machine opens apart, and every attributed order
    led by a click on its message within the window (the simulated buyers all click first)."""
    from datetime import timedelta

    from reengage.config import load_settings
    from reengage.facts import reader
    from reengage.home import open_state
    from reengage.measure.attribution import attribute
    from reengage.measure.kpis import Period, kpis

    home, engine = open_state(load_settings({"REENGAGE_HOME": str(folder)}))
    try:
        period = Period(now - timedelta(days=400), now + timedelta(days=60))
        [everything] = kpis(home.settings, engine, period, by="all")
        con = reader.connect(home.settings.facts_path)
        try:
            [(human, machine)] = con.execute(
                """SELECT count(DISTINCT message_id) FILTER (type = 'click' AND NOT m),
                          count(DISTINCT message_id) FILTER (type = 'open' AND m)
                   FROM (SELECT *, coalesce(json_extract_string(properties, '$.machine'),
                                            'false') = 'true' AS m FROM message_events)"""
            ).fetchall()
            clicks = con.execute(
                """SELECT CAST(message_id AS BIGINT), list(occurred_at) FROM message_events
                   WHERE type = 'click' GROUP BY 1"""
            ).fetchall()
        finally:
            con.close()
        assert everything["sent"] > 0 and everything["clicked"] == human
        assert everything["machine_opened"] <= machine
        assert everything["converted"] <= everything["clicked"]
        clicked = dict(clicks)
        attributed = attribute(home.settings, engine, period.since, period.until).to_pylist()
        won = [o for o in attributed if o["message_id"] is not None]
        assert sum(o["value"] for o in won) == pytest.approx(everything["revenue"], abs=0.05)
        for order in won:
            assert order["rule"] == "click"
            at = order["ordered_at"]
            assert any(at - timedelta(days=5) <= c <= at for c in clicked[order["message_id"]])
    finally:
        engine.dispose()
