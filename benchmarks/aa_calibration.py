"""A/A calibration: how often `reengage experiments analyze` calls two identical arms
significantly different, against the nominal alpha.

Runs the simulation `reengage experiments calibrate` runs: two arms of N recipients with the
same true conversion rate, analysed like a real test. The false positive rate should be close
to alpha (0.05); ratio_vs_nominal_alpha is it divided by alpha (1 is exact; with 1,000 runs
the binomial noise alone is about ±0.14).

    python -m benchmarks.aa_calibration [--runs 1000] [--seed 7] [--n 2000] [--rate 0.05]
"""

from __future__ import annotations

import argparse

from benchmarks.common import report, timed
from reengage.experiments.calibration import simulate_aa


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.05)
    args = parser.parse_args()
    with timed() as seconds:
        result = simulate_aa(args.runs, n=args.n, rate=args.rate, seed=args.seed)
    report(
        "aa_calibration",
        {
            "runs": result.runs,
            "n": args.n,
            "rate": args.rate,
            "seed": args.seed,
            "alpha": result.alpha,
            "false_positives": result.false_positives,
            "false_positive_rate": round(result.false_positive_rate, 4),
            "ratio_vs_nominal_alpha": round(result.false_positive_rate / result.alpha, 3),
            "runs_per_s": round(result.runs / seconds(), 1),
        },
    )


if __name__ == "__main__":
    main()
