"""Fitting the buy-till-you-die models on a shop's orders, and scoring its customers with them.

The models live in `btyd`; this module feeds them from the facts: valid orders before as_of,
summarised per customer as the literature does (purchases on one day are one purchase; the
first purchase starts the clock and is left out of the frequency and the mean spend).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from reengage.analytics.btyd import BGNBD, GammaGamma, clv, fit_bgnbd, fit_gamma_gamma
from reengage.analytics.btyd_data import RFMSummary
from reengage.analytics.features import Purchases, purchases
from reengage.errors import InputError

UNITS = {"day": 1.0, "week": 7.0}
HORIZON_DAYS = 90  # expected purchases are reported over the next 90 days
MIN_P_ALIVE_FOR_DATE = 0.5


@dataclass(frozen=True)
class Fitted:
    summary: RFMSummary
    unit: str
    bgnbd: BGNBD
    gamma_gamma: GammaGamma | None

    def as_dict(self) -> dict[str, Any]:
        b, g = self.bgnbd, self.gamma_gamma
        return {
            "customers": int(self.summary.customer_id.size),
            "time_unit": self.unit,
            "bgnbd": {
                "r": b.r,
                "alpha": b.alpha,
                "a": b.a,
                "b": b.b,
                "log_likelihood": b.log_likelihood,
            },
            "gamma_gamma": None
            if g is None
            else {
                "p": g.p,
                "q": g.q,
                "v": g.v,
                "log_likelihood": g.log_likelihood,
            },
        }


def fit(orders: ir.Table, as_of: datetime, unit: str = "week") -> Fitted:
    """Fit BG/NBD and Gamma-Gamma on every customer's valid orders before as_of."""
    return fit_purchases(purchases(orders, as_of), unit)


def summarize(
    bought: Purchases, unit: str = "week", *, features: pa.Table | None = None
) -> RFMSummary:
    """Each customer's (x, t_x, T, m) from their purchase days, computed by the engine: the
    numbers rfm_summary (and lifetimes) give, without carrying the orders into Python.

    `features`, when given, is purchase_features(bought) already computed: it holds every
    number the summary needs, so the purchase days are not read again.
    """
    if unit not in UNITS:
        raise InputError(f"--time-unit {unit!r}: use day or week")
    t = _per_customer(bought) if features is None else _per_customer_of(features)
    if t.num_rows == 0:
        raise InputError(
            f"no orders before {bought.as_of.isoformat()}: nothing to fit the models to"
        )
    # the summary counts whole days up to and including its as_of day: the day before as_of
    last_day = (bought.as_of - timedelta(microseconds=1)).date()
    end = (last_day - date(1970, 1, 1)).days
    n = t.column("n").to_numpy().astype(np.float64)
    first = t.column("first").to_numpy()
    x = n - 1.0
    repeat_value = t.column("total").to_numpy() - t.column("first_value").to_numpy()
    unit_days = UNITS[unit]
    return RFMSummary(
        customer_id=t.column("customer_id").to_numpy(zero_copy_only=False),
        x=x,
        t_x=(t.column("last").to_numpy() - first) / unit_days,
        T=(end - first) / unit_days,
        m=np.where(x > 0, repeat_value / np.maximum(x, 1.0), 0.0),
    )


def _per_customer(bought: Purchases) -> pa.Table:
    """customer_id, n (purchase days), first and last (day numbers), total and first_value."""
    d = bought.days
    day = (d.at.epoch_seconds() // 86400).cast("int64")
    return (
        d.mutate(daynum=day)
        .group_by("customer_id")
        .aggregate(
            n=lambda t: t.count(),
            first=lambda t: t.daynum.min(),
            last=lambda t: t.daynum.max(),
            total=lambda t: t.value.sum(),
            first_value=lambda t: t.value.argmin(t.daynum),
        )
        .to_pyarrow()
    )


def _per_customer_of(features: pa.Table) -> pa.Table:
    """_per_customer's columns, taken from purchase_features' rows of buyers."""
    bought = features.filter(pc.greater(pc.fill_null(features.column("purchase_days"), 0), 0))

    def day(name: str) -> pa.Array:
        column = bought.column(name)
        micros = pc.cast(pc.cast(column, pa.timestamp("us", tz=column.type.tz)), pa.int64())
        return pc.floor(pc.divide(pc.cast(micros, pa.float64()), 86_400_000_000.0)).cast(pa.int64())

    return pa.table(
        {
            "customer_id": bought.column("customer_id"),
            "n": bought.column("purchase_days"),
            "first": day("first_order_at"),
            "last": day("last_order_at"),
            "total": bought.column("total_spent"),
            "first_value": bought.column("first_purchase_value"),
        }
    )


def fit_purchases(
    bought: Purchases, unit: str = "week", *, features: pa.Table | None = None
) -> Fitted:
    """fit() on purchases already made (and perhaps cached) by the caller, and perhaps their
    purchase_features (see summarize)."""
    summary = summarize(bought, unit, features=features)
    # L-BFGS-B on four parameters crawls when a threaded BLAS competes for a busy machine
    # (scipy issue 22438): one thread is faster here
    with threadpool_limits(limits=1):
        try:
            bgnbd = fit_bgnbd(summary.x, summary.t_x, summary.T)
        except ValueError as exc:
            raise InputError(f"BG/NBD: {exc}") from None
        repeat = (summary.x > 0) & (summary.m > 0)
        gamma_gamma = None
        if repeat.sum() >= 2:
            try:
                gamma_gamma = fit_gamma_gamma(summary.x[repeat], summary.m[repeat])
            except ValueError:
                gamma_gamma = None  # spend too uniform to fit: no value predictions
    return Fitted(summary, unit, bgnbd, gamma_gamma)


def predictions(fitted: Fitted, as_of: datetime, months: int = 12) -> pa.Table:
    """customer_id, p_alive, expected_purchases_90d, expected_next_order_at,
    expected_order_value and clv (discounted over `months`, 1% a month)."""
    s, b, g = fitted.summary, fitted.bgnbd, fitted.gamma_gamma
    unit_days = UNITS[fitted.unit]
    p_alive = b.p_alive(s.x, s.t_x, s.T)
    expected = b.expected_purchases(HORIZON_DAYS / unit_days, s.x, s.t_x, s.T)
    wait = b.expected_days_to_next_order(s.x, s.t_x, s.T, unit_days=unit_days)
    # a date only for customers likely still buying: "if alive" is misleading for the others
    dated = (p_alive >= MIN_P_ALIVE_FOR_DATE) & (wait < 36500)
    start_us = int(as_of.timestamp() * 1_000_000)
    wait_us = np.where(dated, wait, 0.0) * 86_400_000_000
    next_at = pa.array(
        start_us + np.round(wait_us).astype(np.int64),
        pa.timestamp("us", tz="UTC"),
        mask=~dated,
    )
    columns: dict[str, Any] = {
        "customer_id": pa.array(s.customer_id.astype(str), pa.string()),
        "p_alive": p_alive,
        "expected_purchases_90d": expected,
        "expected_next_order_at": next_at,
    }
    if g is not None:
        columns["expected_order_value"] = g.expected_order_value(s.x, s.m)
        columns["clv"] = clv(
            b, g, s.x, s.t_x, s.T, s.m, months=months, periods_per_month=30 / unit_days
        )
    else:
        columns["expected_order_value"] = pa.nulls(s.x.size, pa.float64())
        columns["clv"] = pa.nulls(s.x.size, pa.float64())
    return pa.table(columns)
