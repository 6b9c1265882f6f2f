"""Import throughput of orders: `reengage import orders` against DuckDB's own read_csv.

The baseline only parses the file into typed columns; reengage also validates every value,
reports bad rows by line, derives stable ids, checks them against what is stored, creates
unknown customers and products in state, and writes day-partitioned Parquet.

    python benchmarks/import_orders.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.common import best_of, peak_rss_mib, report, scratch
from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.home import init_home
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for


def make_orders(path: str, lines: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    orders = max(1, lines // 3)
    order_of_line = np.sort(rng.integers(0, orders, lines))
    customer_of_order = rng.integers(0, max(1, orders // 4), orders)
    start = np.datetime64("2024-01-01T00:00:00")
    seconds = rng.integers(0, 730 * 86400, orders).astype("timedelta64[s]")
    when = (start + seconds)[order_of_line]
    table = pa.table(
        {
            "order_id": pa.array(np.char.add("O", order_of_line.astype(str))),
            "customer_id": pa.array(np.char.add("C", customer_of_order[order_of_line].astype(str))),
            "ordered_at": pa.array(np.datetime_as_string(when, unit="s")),
            "product_id": pa.array(np.char.add("P", rng.integers(0, 5000, lines).astype(str))),
            "quantity": rng.integers(1, 4, lines),
            "unit_price": np.round(1 + rng.lognormal(3.5, 0.8, lines), 2),
            "currency": pa.array(["EUR"] * lines),
            "discount": np.where(rng.random(lines) < 0.1, 1.0, 0.0),
            "coupon_code": pa.array(np.where(rng.random(lines) < 0.1, "SPRING", "")),
            "status": pa.array(["paid"] * lines),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = scratch("import_orders")
    path = folder / f"orders-{args.lines}.csv"
    if not path.exists():
        make_orders(str(path), args.lines)

    def baseline() -> None:
        con = duckdb.connect()
        con.sql(f"SELECT * FROM read_csv('{path}', header = true)").to_arrow_table()
        con.close()

    duck = best_of(3, baseline)

    def ours() -> None:
        home_dir = folder / "home"
        shutil.rmtree(home_dir, ignore_errors=True)
        settings = load_settings({"REENGAGE_HOME": str(home_dir)})
        home = init_home(settings).home
        engine = engine_for(settings.state_url)
        clock = FixedClock(datetime(2026, 11, 1, tzinfo=UTC))
        summary = import_file(home, engine, "orders", path, clock=clock)
        engine.dispose()
        assert summary.imported == args.lines, summary

    reengage = best_of(2, ours)
    report(
        "import_orders",
        {
            "lines": args.lines,
            "reengage_s": round(reengage, 2),
            "duckdb_read_csv_s": round(duck, 2),
            "ratio_vs_duckdb": round(reengage / duck, 1),
            "lines_per_s": round(args.lines / reengage),
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
