"""The scoring run against the `lifetimes` pipeline and against a bare DuckDB GROUP BY.

    python -m benchmarks.score [--customers 100000] [--no-events] [--home PATH]

Builds a synthetic shop, imports it, then times on the same orders:
- reengage: `score` as the CLI runs it (features, RFM, lifecycle, BG/NBD and Gamma-Gamma fit
  and predictions, styles, stored in SQLite), and its computation alone (without storing);
- lifetimes: summary_data_from_transaction_data, BetaGeoFitter.fit, GammaGammaFitter.fit,
  P(alive), expected purchases and CLV;
- DuckDB: one GROUP BY over the orders computing count, sum, min and max per customer;
- the issue's scope alone ("features, RFM, BG/NBD and Gamma-Gamma fit and prediction"): the
  order-based part of the computation (purchases, purchase features, category affinity, RFM,
  thresholds, BTYD), which is what the lifetimes pipeline and the GROUP BY compare with.

`--home` reuses a home imported by an earlier run (a 1M-customer shop takes long to import).
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, date, datetime

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


def lifetimes_pipeline(facts: object) -> float:
    import warnings

    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    warnings.simplefilter("ignore")
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
    return time.perf_counter() - start


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
    predictions(fit_purchases(bought), as_of)
    took = time.perf_counter() - start
    con.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--no-events", action="store_true")
    parser.add_argument("--home", help="a home an earlier run imported: skip generating")
    args = parser.parse_args()
    clock = FixedClock(AS_OF)
    if args.home:
        settings = load_settings({"REENGAGE_HOME": args.home})
        home = init_home(settings).home
        engine = engine_for(settings.state_url)
        con = reader.connect(settings.facts_path)
        counts = {"orders": con.sql("SELECT count(*) FROM orders").fetchall()[0][0]}
        counts["events"] = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
        con.close()
    else:
        folder = scratch("score")
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shop = generate_shop(folder / "shop", args.customers, seed=21, end=END)
        counts = dict(shop.counts)
        settings = load_settings({"REENGAGE_HOME": str(folder / "home")})
        home = init_home(settings).home
        engine = engine_for(settings.state_url)
        kinds = ["products", "customers", "orders"] + ([] if args.no_events else ["events"])
        for kind in kinds:
            import_file(home, engine, kind, folder / "shop" / f"{kind}.csv", clock=clock)
        if args.no_events:
            counts["events"] = 0
        compact(settings.facts_path)

    ordered = order_part(settings.facts_path, engine, AS_OF)
    start = time.perf_counter()
    compute(home, engine, AS_OF)
    computed = time.perf_counter() - start
    start = time.perf_counter()
    score(home, engine, as_of=AS_OF, clock=clock)
    scored = time.perf_counter() - start
    engine.dispose()

    con = reader.connect(settings.facts_path)
    start = time.perf_counter()
    con.sql(
        """SELECT customer_id, count(*), sum(quantity * unit_price - discount),
                  min(ordered_at), max(ordered_at) FROM orders GROUP BY customer_id"""
    ).fetchall()
    grouped = time.perf_counter() - start
    bare = duckdb.connect()
    files = [str(p) for p in (settings.facts_path / "orders").rglob("*.parquet")]
    start = time.perf_counter()
    bare.sql(
        """SELECT customer_id, count(*), sum(quantity * unit_price - discount),
                  min(ordered_at), max(ordered_at) FROM read_parquet($f) GROUP BY customer_id""",
        params={"f": files},
    ).fetchall()
    bare_grouped = time.perf_counter() - start
    con.close()
    lifetimes_s = lifetimes_pipeline(settings.facts_path)
    report(
        "score",
        {
            "customers": args.customers,
            "order_lines": counts["orders"],
            "events": counts["events"],
            "score_s": round(scored, 2),
            "compute_s": round(computed, 2),
            "order_part_s": round(ordered, 2),
            "lifetimes_pipeline_s": round(lifetimes_s, 2),
            "ratio_lifetimes_over_compute": round(lifetimes_s / computed, 2),
            "ratio_lifetimes_over_order_part": round(lifetimes_s / ordered, 2),
            "ratio_order_part_over_group_by": round(ordered / bare_grouped, 2),
            "duckdb_group_by_s": round(bare_grouped, 3),
            "duckdb_group_by_deduplicated_view_s": round(grouped, 3),
            "ratio_compute_over_group_by": round(computed / bare_grouped, 1),
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
