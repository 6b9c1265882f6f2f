"""A/A simulation: two arms with the same true conversion rate, analysed as real data would
be; the share called significant estimates the false positive rate, which should be alpha."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reengage.experiments.stats import ALPHA, ArmCounts, analyze

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Calibration:
    runs: int
    alpha: float
    false_positives: int

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "alpha": self.alpha,
            "false_positive_rate": self.false_positive_rate,
        }


def simulate_aa(
    runs: int,
    *,
    n: int = 2000,
    rate: float = 0.05,
    alpha: float = ALPHA,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Calibration:
    """`runs` A/A tests of `n` recipients per arm, converting with probability `rate` and
    spending a lognormal amount when they do; the same seed gives the same result."""
    if runs < 1 or n < 1 or not 0 <= rate <= 1:
        raise ValueError("need runs >= 1, n >= 1 and 0 <= rate <= 1")
    rng = np.random.default_rng(seed)
    step = max(1, runs // 100)  # a hundred bar updates are plenty
    hits = 0
    for run in range(1, runs + 1):
        arms = []
        for name in ("control", "variant"):
            converted = rng.random(n) < rate
            revenue = np.where(converted, rng.lognormal(3.5, 0.8, n), 0.0)
            arms.append(ArmCounts.from_arrays(name, converted, revenue))
        hits += analyze(arms, control="control", alpha=alpha).comparisons[0].significant
        if progress is not None and (run % step == 0 or run == runs):
            progress("A/A runs", run, runs)
    return Calibration(runs, alpha, hits)
