"""A/B/n test statistics over sufficient counts: per arm, the conversion rate with a Wilson
score interval and revenue per recipient with a t interval; against a control, the absolute
lift with Newcombe's hybrid score interval (1998, method 10), the relative lift, a pooled
two-proportion z-test, and Welch's t-test and interval for revenue per recipient.

Every function works from counts (n, conversions, revenue sum, revenue sum of squares), so a
large campaign can aggregate in SQL; `ArmCounts.from_arrays` builds them from raw values.
Methods and references: docs/experiments.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

LEVEL = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class ArmCounts:
    """One arm's sufficient statistics. `conversions` counts the success the test measures:
    conversions, or clicks for a click test."""

    name: str
    n: int
    conversions: int
    revenue_sum: float = 0.0
    revenue_sumsq: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0 or not 0 <= self.conversions <= self.n:
            raise ValueError(f"arm {self.name!r}: need 0 <= conversions <= n")
        if not (math.isfinite(self.revenue_sum) and math.isfinite(self.revenue_sumsq)):
            raise ValueError(f"arm {self.name!r}: revenue sums must be finite")
        if self.revenue_sumsq < 0:
            raise ValueError(f"arm {self.name!r}: revenue sum of squares is negative")

    @classmethod
    def from_arrays(
        cls, name: str, converted: ArrayLike, revenue: ArrayLike | None = None
    ) -> ArmCounts:
        """One value per recipient: converted 0/1 (or bool), revenue (zeros included)."""
        hits = np.asarray(converted)
        if hits.ndim != 1 or not np.isin(hits, (0, 1)).all():
            raise ValueError(f"arm {name!r}: converted must be a 1-d array of 0/1")
        money = np.zeros(hits.size) if revenue is None else np.asarray(revenue, dtype=np.float64)
        if money.shape != hits.shape:
            raise ValueError(f"arm {name!r}: converted and revenue differ in length")
        return cls(name, int(hits.size), int(hits.sum()), float(money.sum()), float(money @ money))


@dataclass(frozen=True)
class ArmStats:
    name: str
    n: int
    conversions: int
    conversion_rate: float
    rate_ci: Interval
    revenue_per_recipient: float
    rpr_ci: Interval | None  # None below two recipients: no sample variance

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "n": self.n,
            "conversions": self.conversions,
            "conversion_rate": self.conversion_rate,
            "ci_low": self.rate_ci.low,
            "ci_high": self.rate_ci.high,
            "revenue_per_recipient": self.revenue_per_recipient,
            "rpr_ci_low": None if self.rpr_ci is None else self.rpr_ci.low,
            "rpr_ci_high": None if self.rpr_ci is None else self.rpr_ci.high,
        }


@dataclass(frozen=True)
class RateDifference:
    """variant - control: absolute lift, its interval, relative lift, z-test p-value."""

    lift_abs: float
    ci: Interval
    lift_rel: float | None  # None when the control's rate is 0
    p_value: float


@dataclass(frozen=True)
class MeanDifference:
    """variant - control revenue per recipient; ci and p_value None below two per arm."""

    diff: float
    ci: Interval | None
    p_value: float | None


@dataclass(frozen=True)
class Comparison:
    control: str
    variant: str
    rate: RateDifference
    revenue: MeanDifference
    significant: bool  # the rate difference, at alpha
    revenue_significant: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "lift_abs": self.rate.lift_abs,
            "lift_abs_ci_low": self.rate.ci.low,
            "lift_abs_ci_high": self.rate.ci.high,
            "lift_rel": self.rate.lift_rel,
            "p_value": self.rate.p_value,
            "significant": self.significant,
        }


@dataclass(frozen=True)
class Analysis:
    """Every arm, and every other arm against the control, each at `alpha` (uncorrected)."""

    control: str
    alpha: float
    arms: tuple[ArmStats, ...]
    comparisons: tuple[Comparison, ...]

    def rows(self) -> list[dict[str, Any]]:
        against = {c.variant: c for c in self.comparisons}
        return [
            {**a.as_dict(), **(against[a.name].as_dict() if a.name in against else {})}
            for a in self.arms
        ]


def _z(level: float) -> float:
    return float(special.ndtri(0.5 + level / 2))


def wilson_interval(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson (1927) score interval; [0, 1] when n is 0."""
    if n == 0:
        return Interval(0.0, 1.0)
    z = _z(level)
    z2 = z * z
    centre = (successes + z2 / 2) / (n + z2)
    half = z * math.sqrt(successes * (n - successes) / n + z2 / 4) / (n + z2)
    # exact at the edges, where rounding would leave the estimate just outside
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def _rate(arm: ArmCounts) -> float:
    return arm.conversions / arm.n if arm.n else 0.0


def _mean(arm: ArmCounts) -> float:
    return arm.revenue_sum / arm.n if arm.n else 0.0


def _variance(arm: ArmCounts) -> float | None:
    """Sample variance from the sums; clamped, as cancellation can leave it just below 0."""
    if arm.n < 2:
        return None
    return max(0.0, (arm.revenue_sumsq - arm.revenue_sum**2 / arm.n) / (arm.n - 1))


def _t(df: float, level: float) -> float:
    return float(special.stdtrit(df, 0.5 + level / 2))


def arm_stats(arm: ArmCounts, level: float = LEVEL) -> ArmStats:
    """Rate and its Wilson interval; revenue per recipient and its t interval."""
    var = _variance(arm)
    mean = _mean(arm)
    rpr_ci = None
    if var is not None:
        half = _t(arm.n - 1, level) * math.sqrt(var / arm.n)
        rpr_ci = Interval(mean - half, mean + half)
    return ArmStats(
        arm.name,
        arm.n,
        arm.conversions,
        _rate(arm),
        wilson_interval(arm.conversions, arm.n, level),
        mean,
        rpr_ci,
    )


def newcombe_interval(control: ArmCounts, variant: ArmCounts, level: float = LEVEL) -> Interval:
    """Newcombe (1998) method 10 for variant rate - control rate, from both Wilson intervals."""
    pa, pb = _rate(control), _rate(variant)
    a = wilson_interval(control.conversions, control.n, level)
    b = wilson_interval(variant.conversions, variant.n, level)
    diff = pb - pa
    low = diff - math.sqrt((pb - b.low) ** 2 + (a.high - pa) ** 2)
    high = diff + math.sqrt((b.high - pb) ** 2 + (pa - a.low) ** 2)
    return Interval(max(-1.0, low), min(1.0, high))


def two_proportion_p_value(control: ArmCounts, variant: ArmCounts) -> float:
    """Two-sided pooled z-test; 1 when there is no variance to test (equal rates, or no one)."""
    if control.n == 0 or variant.n == 0:
        return 1.0
    pooled = (control.conversions + variant.conversions) / (control.n + variant.n)
    var = pooled * (1 - pooled) * (1 / control.n + 1 / variant.n)
    if var <= 0:
        return 1.0
    z = (_rate(variant) - _rate(control)) / math.sqrt(var)
    return min(1.0, 2 * float(special.ndtr(-abs(z))))


def rate_difference(control: ArmCounts, variant: ArmCounts, level: float = LEVEL) -> RateDifference:
    pa, pb = _rate(control), _rate(variant)
    return RateDifference(
        pb - pa,
        newcombe_interval(control, variant, level),
        None if pa == 0 else pb / pa - 1,
        two_proportion_p_value(control, variant),
    )


def mean_difference(control: ArmCounts, variant: ArmCounts, level: float = LEVEL) -> MeanDifference:
    """Welch's t-test and interval (Welch-Satterthwaite degrees of freedom)."""
    diff = _mean(variant) - _mean(control)
    var_a, var_b = _variance(control), _variance(variant)
    if var_a is None or var_b is None:
        return MeanDifference(diff, None, None)
    va, vb = var_a / control.n, var_b / variant.n
    se = math.sqrt(va + vb)
    if se == 0:
        # both arms constant: the limit of the test as the variance goes to 0
        return MeanDifference(diff, Interval(diff, diff), 1.0 if diff == 0 else 0.0)
    # Welch-Satterthwaite, in shares of the total so tiny variances do not underflow
    wa, wb = va / (va + vb), vb / (va + vb)
    df = 1 / (wa**2 / (control.n - 1) + wb**2 / (variant.n - 1))
    half = _t(df, level) * se
    p = 2 * float(special.stdtr(df, -abs(diff) / se))
    return MeanDifference(diff, Interval(diff - half, diff + half), min(1.0, p))


def compare(
    control: ArmCounts, variant: ArmCounts, *, alpha: float = ALPHA, level: float = LEVEL
) -> Comparison:
    rate = rate_difference(control, variant, level)
    revenue = mean_difference(control, variant, level)
    return Comparison(
        control.name,
        variant.name,
        rate,
        revenue,
        rate.p_value < alpha,
        revenue.p_value is not None and revenue.p_value < alpha,
    )


def default_control(names: Sequence[str]) -> str:
    """An arm named "control" if there is one, else the first."""
    return "control" if "control" in names else names[0]


def analyze(
    arms: Sequence[ArmCounts],
    *,
    control: str | None = None,
    alpha: float = ALPHA,
    level: float = LEVEL,
) -> Analysis:
    """Every arm's statistics and every other arm against the control (see default_control)."""
    names = [a.name for a in arms]
    if not names:
        raise ValueError("no arms to analyze")
    if len(set(names)) != len(names):
        raise ValueError("arm names must be unique")
    chosen = default_control(names) if control is None else control
    if chosen not in names:
        raise ValueError(f"no arm named {chosen!r}")
    base = arms[names.index(chosen)]
    return Analysis(
        chosen,
        alpha,
        tuple(arm_stats(a, level) for a in arms),
        tuple(compare(base, a, alpha=alpha, level=level) for a in arms if a.name != chosen),
    )
