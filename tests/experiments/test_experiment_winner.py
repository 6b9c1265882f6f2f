"""The winner rule campaigns use: the leader wins only when significantly better."""

from __future__ import annotations

import json

import pytest

from reengage.experiments.stats import ArmCounts, two_proportion_p_value
from reengage.experiments.winner import (
    DEFAULT_LEADS,
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    choose_winner,
)


def test_clear_winner() -> None:
    arms = [ArmCounts("a", 5000, 250), ArmCounts("b", 5000, 350)]
    d = choose_winner(arms, default="a", metric="conversions")
    assert (d.winner, d.leader, d.significant, d.reason) == ("b", "b", True, SIGNIFICANT)
    assert d.alpha_used == 0.05
    assert d.p_value is not None and d.p_value < 0.001


def test_leader_not_significant_keeps_the_default() -> None:
    arms = [ArmCounts("a", 1000, 50), ArmCounts("b", 1000, 55)]
    d = choose_winner(arms, default="a", metric="clicks")
    assert (d.winner, d.leader, d.significant) == ("a", "b", False)
    assert d.reason == NOT_SIGNIFICANT == "no significant difference"
    assert d.p_value is not None and d.p_value > 0.05


def test_default_leads() -> None:
    arms = [ArmCounts("a", 1000, 80), ArmCounts("b", 1000, 20)]
    d = choose_winner(arms, default="a", metric="conversions")
    assert (d.winner, d.leader, d.significant, d.p_value) == ("a", "a", False, None)
    assert d.reason == DEFAULT_LEADS


def test_a_tie_goes_to_the_default() -> None:
    arms = [ArmCounts("b", 100, 10), ArmCounts("a", 200, 20)]
    assert choose_winner(arms, default="a", metric="clicks").leader == "a"


def test_three_arms_use_bonferroni() -> None:
    # c beats a with p about 0.037: significant at 0.05 alone, not at 0.05 / 2
    arms = [ArmCounts("a", 2000, 100), ArmCounts("b", 2000, 110), ArmCounts("c", 2000, 130)]
    p = two_proportion_p_value(arms[0], arms[2])
    assert 0.025 < p < 0.05
    d = choose_winner(arms, default="a", metric="conversions")
    assert d.alpha_used == pytest.approx(0.025)
    assert (d.leader, d.winner, d.reason, d.p_value) == ("c", "a", NOT_SIGNIFICANT, p)
    two = choose_winner([arms[0], arms[2]], default="a", metric="conversions")
    assert (two.winner, two.alpha_used) == ("c", 0.05)


def test_revenue_uses_welch_on_revenue_per_recipient() -> None:
    # b converts less but spends far more per recipient
    a = ArmCounts.from_arrays("a", [1] * 40 + [0] * 60, [10.0] * 40 + [0.0] * 60)
    b = ArmCounts.from_arrays("b", [1] * 30 + [0] * 70, [100.0, 90.0] * 15 + [0.0] * 70)
    assert choose_winner([a, b], default="a", metric="conversions").leader == "a"
    d = choose_winner([a, b], default="a", metric="revenue")
    assert (d.leader, d.winner, d.significant) == ("b", "b", True)


def test_decision_is_json_ready() -> None:
    arms = [ArmCounts("a", 100, 5, 120.0, 4000.0), ArmCounts("b", 100, 9, 300.0, 12000.0)]
    data = choose_winner(arms, default="a", metric="revenue").as_dict()
    assert json.loads(json.dumps(data)) == data
    assert {"winner", "leader", "p_value", "alpha_used", "significant", "reason"} <= set(data)
    assert [a["variant"] for a in data["arms"]] == ["a", "b"]


def test_bad_calls_are_refused() -> None:
    arms = [ArmCounts("a", 10, 1), ArmCounts("b", 10, 2)]
    with pytest.raises(ValueError):
        choose_winner(arms, default="z", metric="clicks")
    with pytest.raises(ValueError):
        choose_winner(arms, default="a", metric="opens")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        choose_winner([*arms, ArmCounts("a", 5, 0)], default="a", metric="clicks")
