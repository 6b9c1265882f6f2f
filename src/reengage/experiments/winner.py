"""The rule a test uses to pick its winner: the leader wins only when it beats the default
significantly, with a Bonferroni correction for the number of challengers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from reengage.experiments.stats import (
    ALPHA,
    ArmCounts,
    ArmStats,
    arm_stats,
    mean_difference,
    rate_difference,
)

Metric = Literal["clicks", "conversions", "revenue"]
METRICS: tuple[str, ...] = get_args(Metric)

DEFAULT_LEADS = "the default leads"
NOT_SIGNIFICANT = "no significant difference"
SIGNIFICANT = "significant difference"


@dataclass(frozen=True)
class Decision:
    metric: str
    default: str
    winner: str
    leader: str
    p_value: float | None  # leader against the default; None when the default leads
    alpha_used: float  # alpha / (arms - 1)
    significant: bool
    reason: str
    arms: tuple[ArmStats, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "default": self.default,
            "winner": self.winner,
            "leader": self.leader,
            "p_value": self.p_value,
            "alpha_used": self.alpha_used,
            "significant": self.significant,
            "reason": self.reason,
            "arms": [a.as_dict() for a in self.arms],
        }


def _score(stats: ArmStats, metric: str) -> float:
    return stats.revenue_per_recipient if metric == "revenue" else stats.conversion_rate


def choose_winner(
    arms: Sequence[ArmCounts], *, default: str, metric: Metric, alpha: float = ALPHA
) -> Decision:
    """The leader by the metric (rate for clicks and conversions, revenue per recipient for
    revenue) wins if it beats `default` with p < alpha / (arms - 1); otherwise `default` does.
    For clicks, pass clicks as each arm's `conversions`. A tie for the lead goes to the default,
    else to the first tied arm."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ValueError("arm names must be unique")
    if default not in names:
        raise ValueError(f"the default {default!r} is not one of the arms")
    stats = tuple(arm_stats(a) for a in arms)
    best = max(_score(s, metric) for s in stats)
    tied = [s.name for s in stats if _score(s, metric) == best]
    leader = default if default in tied else tied[0]
    alpha_used = alpha / max(1, len(arms) - 1)

    def decide(winner: str, p: float | None, reason: str) -> Decision:
        return Decision(
            metric, default, winner, leader, p, alpha_used, winner != default, reason, stats
        )

    if leader == default:
        return decide(default, None, DEFAULT_LEADS)
    base, challenger = arms[names.index(default)], arms[names.index(leader)]
    if metric == "revenue":
        p = mean_difference(base, challenger).p_value
    else:
        p = rate_difference(base, challenger).p_value
    if p is not None and p < alpha_used:
        return decide(leader, p, SIGNIFICANT)
    return decide(default, p, NOT_SIGNIFICANT)
