"""Thompson sampling among variants (styles, subjects, contents): send more of what works
while still learning, instead of a fixed split until a test ends.

Each arm's conversion rate has a Beta posterior, Beta(a0 + successes, b0 + failures), from a
flat Beta(1, 1) prior. For each recipient one rate is drawn from every arm's posterior and the
recipient gets the arm with the highest draw, so an arm is chosen with the probability that it
is the best given what has been seen (Thompson 1933; Chapelle & Li 2011). A batch is allocated
the same way, one draw per recipient, in one vectorised pass.

Random draws come from a generator the caller owns (a seed, or a per-contact stream from
`campaigns.groups`), so a replay allocates exactly as the run it replays.

A bandit optimises the outcome while it runs; it does not estimate the difference between the
arms without bias (the better arm is sampled more, so the worse one's rate is known less
well). To report a lift with an interval, keep a fixed holdout beside it and use
`experiments.stats` on the holdout and on everything sent (docs/experiments.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PRIOR = (1.0, 1.0)  # Beta(1, 1): every rate equally likely before the first answer


@dataclass
class ArmState:
    name: str
    trials: int = 0
    successes: int = 0

    @property
    def rate(self) -> float:
        return self.successes / self.trials if self.trials else 0.0


@dataclass
class ThompsonBandit:
    """Beta-Bernoulli Thompson sampling over named arms."""

    arms: dict[str, ArmState] = field(default_factory=dict)
    prior: tuple[float, float] = PRIOR

    @classmethod
    def over(cls, names: Sequence[str], prior: tuple[float, float] = PRIOR) -> ThompsonBandit:
        if not names:
            raise ValueError("a bandit needs at least one arm")
        if len(set(names)) != len(names):
            raise ValueError("arm names must be distinct")
        if min(prior) <= 0:
            raise ValueError("the Beta prior's parameters must be positive")
        return cls({n: ArmState(n) for n in names}, prior)

    def update(self, name: str, trials: int, successes: int) -> None:
        """Record `trials` sends of arm `name`, of which `successes` converted."""
        if name not in self.arms:
            raise KeyError(f"unknown arm {name!r} (arms: {', '.join(self.arms)})")
        if trials < 0 or not 0 <= successes <= trials:
            raise ValueError("need 0 <= successes <= trials")
        arm = self.arms[name]
        arm.trials += trials
        arm.successes += successes

    def _posterior(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        names = list(self.arms)
        a = np.array([self.prior[0] + self.arms[n].successes for n in names])
        b = np.array([self.prior[1] + self.arms[n].trials - self.arms[n].successes for n in names])
        return names, a, b

    def choose(self, rng: np.random.Generator, n: int = 1) -> list[str]:
        """The arm for each of `n` recipients, one posterior draw per arm and recipient."""
        names, a, b = self._posterior()
        draws = rng.beta(a, b, size=(n, len(names)))
        return [names[i] for i in draws.argmax(axis=1)]

    def allocate(self, rng: np.random.Generator, n: int) -> dict[str, int]:
        """How many of the next `n` recipients each arm gets."""
        names, a, b = self._posterior()
        picks = rng.beta(a, b, size=(n, len(names))).argmax(axis=1)
        counts = np.bincount(picks, minlength=len(names))
        return {name: int(c) for name, c in zip(names, counts, strict=True)}

    def probability_best(self, rng: np.random.Generator, draws: int = 10_000) -> dict[str, float]:
        """Each arm's posterior probability of having the highest rate (Monte Carlo)."""
        names, a, b = self._posterior()
        picks = rng.beta(a, b, size=(draws, len(names))).argmax(axis=1)
        counts = np.bincount(picks, minlength=len(names))
        return {name: float(c) / draws for name, c in zip(names, counts, strict=True)}

    def as_dict(self) -> dict[str, Any]:
        return {
            name: {"trials": arm.trials, "successes": arm.successes, "rate": arm.rate}
            for name, arm in self.arms.items()
        }


@dataclass(frozen=True)
class Simulation:
    """What a bandit did over a simulated stream of recipients."""

    rates: dict[str, float]  # the true conversion rate of each arm
    best: str
    rounds: int
    batch: int
    share_best_by_round: list[float]  # the best arm's share of each round's recipients
    sent: dict[str, int]
    conversions: int
    conversions_fixed_split: float  # expected conversions of an even split over the same sends
    probability_best: dict[str, float]

    @property
    def final_share_best(self) -> float:
        return self.share_best_by_round[-1]

    def as_dict(self) -> dict[str, Any]:
        sent_total = sum(self.sent.values())
        return {
            "rates": self.rates,
            "best": self.best,
            "rounds": self.rounds,
            "batch": self.batch,
            "recipients": sent_total,
            "sent": self.sent,
            "share_best_first_round": round(self.share_best_by_round[0], 4),
            "share_best_last_round": round(self.final_share_best, 4),
            "share_best_overall": round(self.sent[self.best] / sent_total, 4),
            "conversions": self.conversions,
            "conversions_even_split_expected": round(self.conversions_fixed_split, 1),
            "probability_best": {k: round(v, 4) for k, v in self.probability_best.items()},
        }


Progress = Callable[[str, int, int], None]


def simulate(
    rates: Mapping[str, float],
    *,
    rounds: int = 50,
    batch: int = 500,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Simulation:
    """Send `rounds` batches of `batch` recipients among arms converting at the given true
    `rates`; after each batch the bandit learns its answers. The same seed gives the same run."""
    if not rates or any(not 0 <= r <= 1 for r in rates.values()):
        raise ValueError("need at least one arm, each with a rate between 0 and 1")
    if rounds < 1 or batch < 1:
        raise ValueError("need rounds >= 1 and batch >= 1")
    rng = np.random.default_rng(seed)
    bandit = ThompsonBandit.over(list(rates))
    best = max(rates, key=lambda k: rates[k])
    shares: list[float] = []
    conversions = 0
    for done in range(1, rounds + 1):
        allocation = bandit.allocate(rng, batch)
        for name, count in allocation.items():
            converted = int(rng.binomial(count, rates[name])) if count else 0
            bandit.update(name, count, converted)
            conversions += converted
        shares.append(allocation[best] / batch)
        if progress is not None:
            progress("bandit rounds", done, rounds)
    sent = {name: arm.trials for name, arm in bandit.arms.items()}
    even = rounds * batch * sum(rates.values()) / len(rates)
    return Simulation(
        rates=dict(rates),
        best=best,
        rounds=rounds,
        batch=batch,
        share_best_by_round=shares,
        sent=sent,
        conversions=conversions,
        conversions_fixed_split=even,
        probability_best=bandit.probability_best(rng),
    )
