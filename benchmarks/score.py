"""The scoring run against the `lifetimes` pipeline and against a bare DuckDB GROUP BY.

    python -m benchmarks.score [--customers 100000] [--no-events] [--home PATH]

Builds a synthetic shop, imports it, then times on the same orders, each contender in a
process of its own (so each peak memory is its own):
- the issue's scope alone ("features, RFM, BG/NBD and Gamma-Gamma fit and prediction"): the
  order-based part of the computation (valid orders and purchase days, purchase features,
  category affinity, RFM, thresholds, BTYD fit and predictions), which is what the lifetimes
  pipeline and the GROUP BY compare with; best and median of three runs;
- reengage: `score` as the CLI runs it (adds style signals over the events, every contact
  from state, storing in SQLite), and its computation alone (without storing);
- lifetimes: the valid orders read from the same facts (by DuckDB, the fastest way to hand
  them to pandas), then summary_data_from_transaction_data, BetaGeoFitter.fit,
  GammaGammaFitter.fit, P(alive), expected purchases and CLV; reported with and without
  the reading;
- DuckDB: one GROUP BY over the order files computing count, sum, min and max per customer,
  into an Arrow table (the form every step above hands on); best of three. Fetching the
  same result as Python tuples is reported too: it takes several times the query itself,
  and it is not the engine's work.

`--home` reuses a home imported by an earlier run (a 1M-customer shop takes long to import).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from benchmarks.common import peak_rss_mib, report, scratch
from reengage.analytics.scoring import compute, score
from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.demo.synth import generate_shop
from reengage.facts import reader
from reengage.facts.compact import compact
from reengage.home import init_home
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for

END = date(2026, 6, 1)
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
RUNS = 3


def lifetimes_pipeline(facts: object) -> tuple[float, float]:
    """Seconds to read the valid orders into pandas, and seconds of lifetimes' own work."""
    import warnings

    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    con = reader.connect(facts)  # type: ignore[arg-type]
    orders = con.sql(
        """SELECT customer_id, ordered_at::TIMESTAMP AS ordered_at,
                  sum(quantity * unit_price - discount) AS value
           FROM orders WHERE status NOT IN ('cancelled', 'refunded')
           GROUP BY customer_id, order_id, ordered_at"""
    ).df()
    con.close()
    # lifetimes 0.11 on pandas 3 needs nanosecond times and gives NaN rows for string ids
    orders["ordered_at"] = orders["ordered_at"].astype("datetime64[ns]")
    orders["customer_id"] = pd.factorize(orders["customer_id"])[0]
    read = time.perf_counter() - start
    start = time.perf_counter()
    summary = summary_data_from_transaction_data(
        orders,
        "customer_id",
        "ordered_at",
        monetary_value_col="value",
        observation_period_end=pd.Timestamp(END) - pd.Timedelta(days=1),
        freq="D",
    )
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(
        summary.frequency, summary.recency / 7, summary["T"] / 7
    )
    repeat = summary[(summary.frequency > 0) & (summary.monetary_value > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(repeat.frequency, repeat.monetary_value)
    bgf.conditional_probability_alive(summary.frequency, summary.recency / 7, summary["T"] / 7)
    bgf.conditional_expected_number_of_purchases_up_to_time(
        90 / 7, summary.frequency, summary.recency / 7, summary["T"] / 7
    )
    ggf.customer_lifetime_value(
        bgf,
        repeat.frequency,
        repeat.recency / 7,
        repeat["T"] / 7,
        repeat.monetary_value,
        time=12,
        freq="W",
    )
    return read, time.perf_counter() - start


def order_part(facts_path: object, engine: object, as_of: datetime) -> float:
    """Seconds for the order-based scoring, as compute() runs it (materialised purchases)."""
    import ibis

    from reengage.analytics.features import (
        category_affinity,
        purchase_features,
        purchase_gaps,
        purchases,
    )
    from reengage.analytics.lifecycle import learn_thresholds
    from reengage.analytics.models import fit_purchases, predictions
    from reengage.analytics.rfm import rfm_scores
    from reengage.analytics.scoring import catalogue

    con = reader.connect(facts_path)  # type: ignore[arg-type]
    facts = ibis.duckdb.from_connection(con)
    orders = facts.table("orders")
    known = ibis.memtable(catalogue(engine))  # type: ignore[arg-type]
    start = time.perf_counter()
    bought = purchases(orders, as_of, cache=True)
    features = purchase_features(bought).to_pyarrow()
    category_affinity(orders, bought, known).to_pyarrow()
    rfm_scores(ibis.memtable(features)).to_pyarrow()
    learn_thresholds(purchase_gaps(bought))
    predictions(fit_purchases(bought, features=features), as_of)
    took = time.perf_counter() - start
    con.close()
    return took


GROUP_BY = """SELECT customer_id, count(*), sum(quantity * unit_price - discount),
                     min(ordered_at), max(ordered_at) FROM read_parquet($f) GROUP BY customer_id"""


def group_by(facts: Path, into: str) -> float:
    files = [str(p) for p in (facts / "orders").rglob("*.parquet")]
    bare = duckdb.connect()
    start = time.perf_counter()
    query = bare.sql(GROUP_BY, params={"f": files})
    query.to_arrow_table() if into == "arrow" else query.fetchall()
    took = time.perf_counter() - start
    bare.close()
    return took


def part(name: str, home: str) -> dict[str, object]:
    """One contender, in this process: its seconds and this process's peak memory."""
    settings = load_settings({"REENGAGE_HOME": home})
    facts = settings.facts_path
    figures: dict[str, object] = {}
    if name == "order_part":
        engine = engine_for(settings.state_url)
        figures["runs_s"] = [order_part(facts, engine, AS_OF) for _ in range(RUNS)]
    elif name in ("group_by", "group_by_tuples"):
        into = "arrow" if name == "group_by" else "tuples"
        figures["runs_s"] = [group_by(facts, into) for _ in range(RUNS)]
    elif name == "lifetimes":
        read, fitted = lifetimes_pipeline(facts)
        figures.update(read_s=read, runs_s=[read + fitted], lifetimes_only_s=fitted)
    else:
        runner = init_home(settings)
        engine = engine_for(settings.state_url)
        start = time.perf_counter()
        if name == "compute":
            compute(runner.home, engine, AS_OF)
        else:
            score(runner.home, engine, as_of=AS_OF, clock=FixedClock(AS_OF))
        figures["runs_s"] = [time.perf_counter() - start]
        engine.dispose()
    figures["peak_rss_mib"] = round(peak_rss_mib())
    return figures


def measured(name: str, home: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.score", "--home", home, "--part", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--no-events", action="store_true")
    parser.add_argument("--home", help="a home an earlier run imported: skip generating")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one contender, in a child process
    args = parser.parse_args()
    if args.part:
        print(json.dumps(part(args.part, args.home)))
        return
    if args.home:
        home = args.home
        facts = load_settings({"REENGAGE_HOME": home}).facts_path
    else:
        folder = scratch("score")
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
        generate_shop(folder / "shop", args.customers, seed=21, end=END)
        home = str(folder / "home")
        settings = load_settings({"REENGAGE_HOME": home})
        made = init_home(settings).home
        engine = engine_for(settings.state_url)
        kinds = ["products", "customers", "orders"] + ([] if args.no_events else ["events"])
        clock = FixedClock(AS_OF)
        for kind in kinds:
            import_file(made, engine, kind, folder / "shop" / f"{kind}.csv", clock=clock)
        engine.dispose()
        compact(settings.facts_path)
        facts = settings.facts_path
    con = reader.connect(facts)
    counts = {
        "order_lines": con.sql("SELECT count(*) FROM orders").fetchall()[0][0],
        "events": con.sql("SELECT count(*) FROM events").fetchall()[0][0],
        "customers": con.sql("SELECT count(DISTINCT customer_id) FROM orders").fetchall()[0][0],
    }
    con.close()
    got = {
        name: measured(name, home)
        for name in (
            "group_by",
            "group_by_tuples",
            "order_part",
            "lifetimes",
            "compute",
            "score",
        )
    }

    def best(name: str) -> float:
        return min(got[name]["runs_s"])  # type: ignore[type-var]

    order_median = statistics.median(got["order_part"]["runs_s"])  # type: ignore[arg-type]
    lifetimes = got["lifetimes"]
    report(
        "score",
        {
            **counts,
            "order_part_s": round(best("order_part"), 2),
            "order_part_median_s": round(order_median, 2),
            "duckdb_group_by_s": round(best("group_by"), 3),
            "duckdb_group_by_as_tuples_s": round(best("group_by_tuples"), 3),
            "lifetimes_pipeline_s": round(best("lifetimes"), 2),
            "lifetimes_reading_s": round(lifetimes["read_s"], 2),  # type: ignore[arg-type]
            "lifetimes_own_s": round(lifetimes["lifetimes_only_s"], 2),  # type: ignore[arg-type]
            "compute_s": round(best("compute"), 2),
            "score_s": round(best("score"), 2),
            "ratio_order_part_over_group_by": round(best("order_part") / best("group_by"), 2),
            "ratio_lifetimes_over_order_part": round(best("lifetimes") / best("order_part"), 2),
            "ratio_lifetimes_own_over_order_part": round(
                lifetimes["lifetimes_only_s"] / best("order_part"),  # type: ignore[operator]
                2,
            ),
            "ratio_compute_over_group_by": round(best("compute") / best("group_by"), 1),
            "peak_rss_mib": {name: figures["peak_rss_mib"] for name, figures in got.items()},
        },
    )


if __name__ == "__main__":
    main()
