"""Does the churn model predict? Fit on a calibration period, predict the holdout that follows,
and compare with what customers really did, by how often they had bought (as in Fader, Hardie
& Lee 2005, figure 4: conditional expectations by calibration frequency)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from reengage.analytics.features import orders_as_of
from reengage.analytics.models import UNITS, fit
from reengage.errors import InputError

TOP_BUCKET = 7  # customers with 7 or more repeat purchases share the last bucket


@dataclass(frozen=True)
class HoldoutReport:
    calibration_end: datetime
    holdout_end: datetime
    unit: str
    buckets: pa.Table  # frequency, customers, actual, predicted (mean repeat purchases)
    total_actual: float
    total_predicted: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
            "time_unit": self.unit,
            "total_actual": self.total_actual,
            "total_predicted": self.total_predicted,
            "buckets": self.buckets.to_pylist(),
        }


def calibration_holdout(
    orders: ir.Table, calibration_end: datetime, holdout_end: datetime, unit: str = "week"
) -> HoldoutReport:
    if holdout_end <= calibration_end:
        raise InputError("--holdout-end must come after --calibration-end")
    fitted = fit(orders, calibration_end, unit)
    s = fitted.summary
    horizon = (holdout_end - calibration_end).total_seconds() / 86400 / UNITS[unit]
    predicted = fitted.bgnbd.expected_purchases(horizon, s.x, s.t_x, s.T)
    # actual: purchase days in the holdout of the customers known at calibration's end
    later = orders_as_of(orders, holdout_end)
    later = later.filter(later.ordered_at >= calibration_end)
    days = later.group_by("customer_id").aggregate(days=later.ordered_at.date().nunique())
    got = days.to_pyarrow()  # once: two runs need not return rows in the same order
    counts = dict(
        zip(got.column("customer_id").to_pylist(), got.column("days").to_pylist(), strict=True)
    )
    actual = np.array([counts.get(str(c), 0) for c in s.customer_id], dtype=np.float64)
    bucket = np.minimum(s.x, TOP_BUCKET).astype(int)
    rows = []
    for b in range(TOP_BUCKET + 1):
        chosen = bucket == b
        if chosen.any():
            rows.append(
                {
                    "frequency": f"{b}+" if b == TOP_BUCKET else str(b),
                    "customers": int(chosen.sum()),
                    "actual": float(actual[chosen].mean()),
                    "predicted": float(predicted[chosen].mean()),
                }
            )
    return HoldoutReport(
        calibration_end,
        holdout_end,
        unit,
        pa.Table.from_pylist(rows),
        float(actual.sum()),
        float(predicted.sum()),
    )


def write_report(report: HoldoutReport, folder: Path) -> tuple[Path, Path]:
    """holdout.csv and holdout.png in folder."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    import pyarrow.csv as pacsv

    folder.mkdir(parents=True, exist_ok=True)
    table_path, chart_path = folder / "holdout.csv", folder / "holdout.png"
    pacsv.write_csv(report.buckets, table_path)
    b = report.buckets.to_pydict()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(b["frequency"], b["actual"], marker="o", label="actual")
    ax.plot(b["frequency"], b["predicted"], marker="s", linestyle="--", label="BG/NBD")
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("mean repeat purchases in the holdout")
    ax.set_title(
        f"Holdout {report.calibration_end.date()} to {report.holdout_end.date()}: "
        f"{report.total_actual:,.0f} actual, {report.total_predicted:,.0f} predicted"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(chart_path)
    plt.close(fig)
    return table_path, chart_path
