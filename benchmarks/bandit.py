"""Thompson sampling converges to the best variant: over many seeded simulations of four
style variants whose true rates differ by a few tenths of a point, the share of recipients the
best one gets in the last batch, against the 25% an even split gives it (the baseline), and the
conversions gained over that even split.

    python -m benchmarks.bandit [--runs 200] [--rounds 60] [--batch 500] [--seed 11]
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import report, timed
from reengage.experiments.bandit import simulate

RATES = {"go_getter": 0.030, "promoter": 0.034, "nurturer": 0.040, "examiner": 0.036}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    seeds = np.random.SeedSequence(args.seed).generate_state(args.runs)
    last, first, gained, found = [], [], [], 0
    with timed() as seconds:
        for s in seeds:
            run = simulate(RATES, rounds=args.rounds, batch=args.batch, seed=int(s))
            first.append(run.share_best_by_round[0])
            last.append(run.final_share_best)
            gained.append(run.conversions / run.conversions_fixed_split - 1)
            found += max(run.probability_best, key=lambda k: run.probability_best[k]) == run.best
    even = 1 / len(RATES)
    report(
        "bandit",
        {
            "runs": args.runs,
            "rounds": args.rounds,
            "batch": args.batch,
            "rates": RATES,
            "share_best_first_batch": round(float(np.mean(first)), 3),
            "share_best_last_batch_mean": round(float(np.mean(last)), 3),
            "share_best_last_batch_p10": round(float(np.quantile(last, 0.1)), 3),
            "even_split_share": even,
            "ratio_to_even_split": round(float(np.mean(last)) / even, 2),
            "runs_naming_the_best_arm": round(found / args.runs, 3),
            "conversions_gained_vs_even_split": round(float(np.mean(gained)), 4),
            "seconds": round(seconds(), 1),
        },
    )


if __name__ == "__main__":
    main()
