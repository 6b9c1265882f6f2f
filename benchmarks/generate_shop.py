"""Synthetic shop generation: `reengage generate` against the bare cost of writing its files.

The baseline is DuckDB copying the very same rows from CSV to CSV: what it costs only to put
that much text on disk. The ratio says how much the simulation adds on top.

    python -m benchmarks.generate_shop [--customers 1000000]
"""

from __future__ import annotations

import argparse
import shutil
from datetime import date

import duckdb

from benchmarks.common import best_of, peak_rss_mib, report, scratch
from reengage.demo.synth import generate_shop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = scratch("generate_shop")
    out = folder / "shop"
    counts: dict[str, int] = {}

    def ours() -> None:
        shutil.rmtree(out, ignore_errors=True)
        counts.update(generate_shop(out, args.customers, seed=1, end=date(2026, 6, 1)).counts)

    generated = best_of(1, ours)
    copy = folder / "copy"
    copy.mkdir(exist_ok=True)

    def baseline() -> None:
        con = duckdb.connect()
        for name in counts:
            con.sql(
                f"COPY (SELECT * FROM read_csv('{out / name}.csv', all_varchar = true)) "
                f"TO '{copy / name}.csv' (HEADER)"
            ).fetchall()
        con.close()

    copied = best_of(1, baseline)
    shutil.rmtree(folder)
    report(
        "generate_shop",
        {
            "customers": args.customers,
            "rows": counts,
            "reengage_s": round(generated, 1),
            "duckdb_csv_copy_s": round(copied, 1),
            "ratio_vs_copy": round(generated / copied, 1),
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
