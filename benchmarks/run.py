"""Run every benchmark and print one JSON line each.

python -m benchmarks.run            # full sizes (minutes)
python -m benchmarks.run --quick    # small sizes, to check they still run
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = {
    "import_orders": (["--lines", "1000000"], ["--lines", "50000"]),
    "generate_shop": (["--customers", "1000000"], ["--customers", "5000"]),
    "btyd_fit": (["--customers", "1000000"], ["--customers", "20000"]),
    "style_f1": ([], ["--customers", "2000"]),
    "score": (["--customers", "100000"], ["--customers", "2000"]),
    "render": (["--count", "20000"], ["--count", "2000"]),
    "send_email": (["--count", "100000"], ["--count", "2000"]),
    "send_campaign": (["--count", "100000"], ["--count", "2000"]),
    "segments": (["--contacts", "1000000"], ["--contacts", "5000"]),
    "campaign_queue": (["--contacts", "1000000"], ["--contacts", "5000"]),
    "aa_calibration": (["--runs", "1000"], ["--runs", "200"]),
    "bandit": (["--runs", "200"], ["--runs", "20"]),
    "style_learning_rounds": (["--customers", "3000"], ["--customers", "500", "--rounds", "4"]),
    "collector": (["--seconds", "10"], ["--seconds", "2", "--rounds", "1"]),
    "worker": (
        ["--contacts", "1000000", "--due", "100000"],
        ["--contacts", "5000", "--due", "1000"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("only", nargs="*", help="names of benchmarks to run")
    args = parser.parse_args()
    failed = 0
    for name, (full, quick) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        argv = quick if args.quick else full
        done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *argv], check=False)
        failed += done.returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
