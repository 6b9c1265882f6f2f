"""Lifecycle stage of each contact, from their purchases and the shop's own rhythm.

The inactivity threshold is how long a customer may stay silent before they count as inactive.
By default it is the 90th percentile of the shop's own gaps between a customer's purchase days
(so a shop of weekly groceries and a shop of yearly boots each get their own), or the classic
180 days when the shop has fewer than `MIN_GAPS` gaps to learn from. Settings can fix it, and
fix it per category (a customer's threshold is that of their favourite category).

| stage | rule (T = the customer's threshold, days since their last order = d) |
| --- | --- |
| prospect | never ordered |
| new | one purchase day, d <= T |
| reactivated | came back after a pause longer than T, d <= T / 2 |
| repeat | two or three purchase days, d <= T / 2 |
| loyal | four or more purchase days, d <= T / 2 |
| at risk | T / 2 < d <= T |
| inactive | T < d <= 2 T |
| lost | d > 2 T |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir

FALLBACK_DAYS = 180.0
MIN_GAPS = 100
LOYAL_PURCHASE_DAYS = 4
STAGES = ("prospect", "new", "reactivated", "repeat", "loyal", "at_risk", "inactive", "lost")


@dataclass(frozen=True)
class Thresholds:
    """Days of silence before a customer is inactive, shop-wide and per category."""

    default_days: float = FALLBACK_DAYS
    by_category: Mapping[str, float] = field(default_factory=dict)
    learned_from_gaps: int = 0


def learn_thresholds(
    gaps: ir.Table,
    *,
    fixed_days: float | None = None,
    by_category: Mapping[str, float] | None = None,
) -> Thresholds:
    """The shop's threshold from its purchase gaps (see purchase_gaps), unless fixed."""
    row = gaps.aggregate(n=gaps.count(), p90=gaps.gap.quantile(0.9)).to_pyarrow().to_pylist()[0]
    count, p90 = int(row["n"]), row["p90"]
    learned = float(p90) if count >= MIN_GAPS and p90 else FALLBACK_DAYS
    return Thresholds(
        default_days=fixed_days if fixed_days is not None else learned,
        by_category=dict(by_category or {}),
        learned_from_gaps=count,
    )


def lifecycle_stages(features: ir.Table, thresholds: Thresholds) -> ir.Table:
    """customer_id, the stage, and the threshold that applied."""
    days = ibis.literal(thresholds.default_days)
    for category, value in thresholds.by_category.items():
        days = ibis.ifelse(features.top_category == category, value, days)
    t = features.mutate(threshold_days=days)
    d, n, T = t.recency_days, t.purchase_days, t.threshold_days
    stage = ibis.cases(
        (t.orders.fill_null(0) == 0, "prospect"),
        (d > 2 * T, "lost"),
        (d > T, "inactive"),
        (n == 1, "new"),
        (d > T / 2, "at_risk"),
        (t.last_gap_days > T, "reactivated"),
        (n >= LOYAL_PURCHASE_DAYS, "loyal"),
        else_="repeat",
    )
    return t.select("customer_id", lifecycle=stage, threshold_days=t.threshold_days)
