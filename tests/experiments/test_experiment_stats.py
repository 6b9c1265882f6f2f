"""The statistics core against published worked examples, SciPy, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp

from reengage.experiments.stats import (
    ArmCounts,
    analyze,
    arm_stats,
    compare,
    mean_difference,
    newcombe_interval,
    rate_difference,
    two_proportion_p_value,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),  # Newcombe (1998b), and the bound in Newcombe (1998a) ex. (e)
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998b), table I
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_published_values(
    successes: int, n: int, low: float, high: float
) -> None:
    ci = wilson_interval(successes, n)
    assert round(ci.low, 4) == low and round(ci.high, 4) == high


def test_wilson_interval_of_nobody_is_everything() -> None:
    assert wilson_interval(0, 0) == wilson_interval(0, 0, 0.9)
    assert (wilson_interval(0, 0).low, wilson_interval(0, 0).high) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        # Newcombe (1998a), "Interval estimation for the difference between independent
        # proportions", table II, method 10: p1 - p2
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
    ],
)
def test_newcombe_interval_matches_the_paper(
    x1: int, n1: int, x2: int, n2: int, low: float, high: float
) -> None:
    ci = newcombe_interval(ArmCounts("a", n2, x2), ArmCounts("b", n1, x1))
    assert round(ci.low, 4) == low and round(ci.high, 4) == high


def test_two_proportion_z_test_worked_examples() -> None:
    # by hand: 50/100 against 30/100, pooled 0.4, se = sqrt(0.4 * 0.6 * 0.02), z = 2.8868
    p = two_proportion_p_value(ArmCounts("a", 100, 30), ArmCounts("b", 100, 50))
    assert p == pytest.approx(2 * sp.norm.sf(0.2 / np.sqrt(0.0048)), rel=1e-12)
    assert round(p, 4) == 0.0039
    # Sauro's worked example (MeasuringU): 118/3303 against 80/3303, z = 2.742, p = 0.0061
    p = two_proportion_p_value(ArmCounts("a", 3303, 80), ArmCounts("b", 3303, 118))
    assert round(p, 4) == 0.0061
    # the pooled z-test is the uncorrected chi-square test of the 2x2 table
    table = [[118, 3303 - 118], [80, 3303 - 80]]
    assert p == pytest.approx(sp.chi2_contingency(table, correction=False).pvalue, rel=1e-9)


def test_equal_rates_give_p_one() -> None:
    for a, b in [((10, 0), (20, 0)), ((10, 10), (5, 5)), ((10, 3), (20, 6)), ((0, 0), (5, 1))]:
        assert two_proportion_p_value(ArmCounts("a", *a), ArmCounts("b", *b)) == 1.0


def test_relative_lift_and_its_absence() -> None:
    d = rate_difference(ArmCounts("a", 100, 10), ArmCounts("b", 100, 15))
    assert d.lift_abs == pytest.approx(0.05) and d.lift_rel == pytest.approx(0.5)
    assert rate_difference(ArmCounts("a", 100, 0), ArmCounts("b", 100, 3)).lift_rel is None


def _revenue(rng: np.random.Generator, n: int, rate: float, mean: float) -> np.ndarray:
    return np.where(rng.random(n) < rate, rng.lognormal(np.log(mean), 0.7, n), 0.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _revenue(rng, 400, 0.1, 40.0), _revenue(rng, 250, 0.15, 50.0)
    ours = mean_difference(
        ArmCounts.from_arrays("a", a > 0, a), ArmCounts.from_arrays("b", b > 0, b)
    )
    theirs = sp.ttest_ind(b, a, equal_var=False)
    ci = theirs.confidence_interval(0.95)
    assert ours.diff == pytest.approx(b.mean() - a.mean(), rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert ours.ci is not None
    assert (ours.ci.low, ours.ci.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_revenue_interval_is_scipy_t_interval_and_absent_below_two() -> None:
    values = np.array([0.0, 0.0, 12.5, 0.0, 40.0, 0.0, 0.0, 8.0])
    stats = arm_stats(ArmCounts.from_arrays("a", values > 0, values))
    low, high = sp.t.interval(0.95, len(values) - 1, values.mean(), sp.sem(values))
    assert stats.rpr_ci is not None
    assert (stats.rpr_ci.low, stats.rpr_ci.high) == pytest.approx((low, high), rel=1e-9)
    assert arm_stats(ArmCounts("one", 1, 1, 20.0, 400.0)).rpr_ci is None
    assert (
        mean_difference(ArmCounts("one", 1, 1, 20.0, 400.0), ArmCounts("b", 5, 0)).p_value is None
    )


def test_constant_revenue_is_a_limit_not_an_error() -> None:
    zero = mean_difference(ArmCounts("a", 10, 0), ArmCounts("b", 20, 0))
    assert zero.p_value == 1.0 and zero.diff == 0.0


def test_counts_are_checked() -> None:
    with pytest.raises(ValueError):
        ArmCounts("a", 5, 6)
    with pytest.raises(ValueError):
        ArmCounts.from_arrays("a", [0, 2, 1])
    with pytest.raises(ValueError):
        ArmCounts.from_arrays("a", [0, 1], [1.0])


def test_analyze_picks_the_control() -> None:
    arms = [ArmCounts("b", 10, 2), ArmCounts("control", 10, 1), ArmCounts("c", 10, 3)]
    assert analyze(arms).control == "control"
    assert analyze(arms[::2]).control == "b"
    rows = analyze(arms, control="c").rows()
    assert [r["variant"] for r in rows] == ["b", "control", "c"]
    assert "lift_abs" not in rows[2] and "lift_abs" in rows[0]


arm = st.integers(0, 500).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n)))
level = st.sampled_from([0.8, 0.9, 0.95, 0.99])


@settings(deadline=None, max_examples=300)
@given(arm, level)
def test_wilson_contains_the_estimate_within_zero_one(counts: tuple[int, int], lv: float) -> None:
    n, x = counts
    stats = arm_stats(ArmCounts("a", n, x), lv)
    assert 0.0 <= stats.rate_ci.low <= stats.conversion_rate <= stats.rate_ci.high <= 1.0


@settings(deadline=None, max_examples=300)
@given(arm, arm)
def test_swapping_arms_negates_the_lift(a: tuple[int, int], b: tuple[int, int]) -> None:
    ca, cb = ArmCounts("a", *a), ArmCounts("b", *b)
    ab, ba = compare(ca, cb), compare(cb, ca)
    assert ab.rate.lift_abs == -ba.rate.lift_abs
    assert ab.rate.ci.low == pytest.approx(-ba.rate.ci.high, abs=1e-12)
    assert ab.rate.ci.high == pytest.approx(-ba.rate.ci.low, abs=1e-12)
    assert -1.0 <= ab.rate.ci.low <= ab.rate.lift_abs <= ab.rate.ci.high <= 1.0
    assert 0.0 <= ab.rate.p_value <= 1.0
    assert ab.rate.p_value == pytest.approx(ba.rate.p_value, rel=1e-12)


@settings(deadline=None, max_examples=200)
@given(
    st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=40),
    st.lists(st.floats(0, 1e4, allow_nan=False), min_size=2, max_size=40),
)
def test_welch_p_in_zero_one_and_antisymmetric(a: list[float], b: list[float]) -> None:
    ca = ArmCounts.from_arrays("a", [v > 0 for v in a], a)
    cb = ArmCounts.from_arrays("b", [v > 0 for v in b], b)
    ab, ba = mean_difference(ca, cb), mean_difference(cb, ca)
    assert ab.p_value is not None and 0.0 <= ab.p_value <= 1.0
    assert ab.diff == -ba.diff
    assert ab.ci is not None and ba.ci is not None
    assert ab.ci.low == pytest.approx(-ba.ci.high, rel=1e-9, abs=1e-9)
