"""Behavioural style inference: macro-F1 against a generated shop's hidden true styles.

A fresh shop (its seed differs from the calibration shops') is generated, imported like a real
one, and every customer's style inferred as of the shop's last day. "unknown" counts as wrong
in macro_f1; macro_f1_covered scores only the customers given a style, and coverage says how
many that is. Baselines: chance (a uniformly random style, macro-F1 0.25 in expectation) and
the majority class (everyone given the most common true style).

    python -m benchmarks.style_f1 [--customers 20000] [--seed 11]
"""

from __future__ import annotations

import argparse
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.common import report, scratch, timed
from reengage.analytics.scoring import catalogue
from reengage.analytics.styles import (
    DEFAULT_THRESHOLD,
    STYLES,
    StyleReport,
    infer_styles,
    style_report,
    style_signals,
)
from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.demo.synth import generate_shop
from reengage.facts import reader
from reengage.home import init_home
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for

#: Seeds of the shops the scoring constants were calibrated on: never benchmark on them.
CALIBRATION_SEEDS = (1, 2)
END = date(2026, 6, 1)


def _import(folder: Path, shop: Path) -> tuple[Path, pa.Table]:
    """Import the shop into a fresh home; its facts folder and its catalogue from state."""
    settings = load_settings({"REENGAGE_HOME": str(folder / "home")})
    home = init_home(settings).home
    engine = engine_for(settings.state_url)
    clock = FixedClock(datetime.combine(END, datetime.min.time(), tzinfo=UTC))
    try:
        for kind in ("products", "customers", "orders", "events"):
            import_file(home, engine, kind, shop / f"{kind}.csv", clock=clock)
        products = catalogue(engine)
    finally:
        engine.dispose()
    return settings.facts_path, products


def _rounded(scores: StyleReport) -> dict[str, object]:
    return {
        "macro_f1": round(scores["macro_f1"], 4),
        "macro_f1_covered": round(scores["macro_f1_covered"], 4),
        "coverage": round(scores["coverage"], 4),
        "per_style": {
            style: {"precision": round(v["precision"], 4), "recall": round(v["recall"], 4)}
            for style, v in scores["per_style"].items()
        },
    }


def shop_signals(folder: Path, customers: int, seed: int) -> tuple[dict[str, str], pa.Table, float]:
    """A fresh shop generated and imported in `folder` (removed after): its customers'
    hidden styles, their style signals as of its last day, and the seconds those took."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shop = folder / "shop"
    files = generate_shop(shop, customers, seed=seed, end=END)
    facts_path, catalogue = _import(folder, shop)
    styles = pacsv.read_csv(files.styles)
    truth = dict(
        zip(
            styles.column("customer_id").to_pylist(),
            styles.column("style").to_pylist(),
            strict=True,
        )
    )
    con = reader.connect(facts_path)
    try:
        con.register("products", catalogue)
        facts = ibis.duckdb.from_connection(con)
        as_of = datetime.combine(END, datetime.min.time(), tzinfo=UTC)
        with timed() as seconds:
            signals = style_signals(
                facts.table("orders"), facts.table("events"), as_of, facts.table("products")
            ).to_pyarrow()
    finally:
        con.close()
    shutil.rmtree(folder)
    return truth, signals, seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args()
    if args.seed in CALIBRATION_SEEDS:
        parser.error(f"seeds {CALIBRATION_SEEDS} were used for calibration: pick another")
    folder = scratch("style_f1")
    truth, signals, signals_s = shop_signals(folder, args.customers, args.seed)
    with timed() as infer_s:
        out = infer_styles(signals, threshold=args.threshold)
    predicted = dict(
        zip(out.column("customer_id").to_pylist(), out.column("style").to_pylist(), strict=True)
    )
    ours = style_report(truth, predicted)
    majority = Counter(truth.values()).most_common(1)[0][0]
    baseline = style_report(truth, dict.fromkeys(truth, majority))
    report(
        "style_f1",
        {
            "customers": args.customers,
            "seed": args.seed,
            "customers_with_behaviour": signals.num_rows,
            "threshold": args.threshold,
            **_rounded(ours),
            "accuracy_covered": round(
                sum(predicted.get(c) == s for c, s in truth.items())
                / max(1, sum(predicted.get(c) in STYLES for c in truth)),
                4,
            ),
            "baseline_chance_macro_f1": 0.25,
            "baseline_majority": {
                "style": majority,
                "macro_f1": round(baseline["macro_f1"], 4),
            },
            "signals_s": round(signals_s, 1),
            "infer_s": round(infer_s(), 2),
        },
    )


if __name__ == "__main__":
    main()
