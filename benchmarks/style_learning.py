"""Style learning from responses: macro-F1 against a generated shop's hidden styles, before
(behaviour alone, the baseline) and after the relational simulation's journeys and
newsletters (reengage.demo.relational: customers answer by demo.responses, a message in their
own style's variant (1 + congruence) times as persuasive). A SIMULATION, not a measurement of
people.

    python -m benchmarks.style_learning [--customers 600] [--seed 11] [--congruence 0.4]
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime

from benchmarks.common import scratch
from reengage.config import Settings
from reengage.demo.relational import run_relational_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--congruence", type=float, default=0.4)
    args = parser.parse_args()
    folder = scratch("style_learning")
    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    found = run_relational_demo(
        Settings(home=folder),
        now=datetime(2026, 11, 1, 9, tzinfo=UTC),
        customers=args.customers,
        seed=args.seed,
        congruence=args.congruence,
    )
    took = time.perf_counter() - began
    for step in found["learning"]:
        print(
            f"{step['when']:<22} macro-F1 {step['macro_f1']:.3f}  coverage {step['coverage']:.1%}"
        )
    print(f"(SIMULATION, {args.customers:,} customers, seed {args.seed}, {took:.0f} s)")


if __name__ == "__main__":
    main()
