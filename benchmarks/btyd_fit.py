"""BTYD pipeline: reengage.analytics.btyd against lifetimes, from transactions to predictions.

Simulates N customers from a BG/NBD process with CDNOW-like parameters (r=0.243, α=4.414
weeks, a=0.793, b=2.426), each first buying on a random day of a two-year window, with times
kept to whole days (as summaries of real orders are) and expressed in weeks, and writes out
their transactions. The pipeline is: summary of the transactions (rfm_summary against
summary_data_from_transaction_data), BG/NBD fit, and predictions (P(alive) and the expected
purchases in the next 39 weeks for every customer). lifetimes is slow, so it runs on the first
min(N, 100,000) customers, and so do we for the same-size ratios; we are also timed on all N.

    python -m benchmarks.btyd_fit [--customers 1000000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

from benchmarks.common import best_of, peak_rss_mib, report, timed
from reengage.analytics.btyd import fit_bgnbd, rfm_summary
from reengage.analytics.btyd_data import unique_rows

LIFETIMES_AT_MOST = 100_000
TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # FHL 2005, CDNOW, weeks
START = np.datetime64("2022-01-01")
DAYS = 730


def simulate(customers: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) in weeks of whole days: the process of FHL 2005a §2, vectorised."""
    rng = np.random.default_rng(seed)
    age_days = rng.integers(0, DAYS + 1, customers).astype(np.float64)
    rate = rng.gamma(TRUE["r"], 1.0 / (TRUE["alpha"] * 7.0), customers)  # per day
    drop = rng.beta(TRUE["a"], TRUE["b"], customers)
    # Purchases are the first K events of a Poisson process, K ~ Geometric(p) the purchase
    # after which the customer drops out; x counts those in (0, T].
    would_buy = rng.poisson(rate * age_days)
    x = np.minimum(would_buy, rng.geometric(drop))
    # Given n events in (0, T] their times are uniform order statistics: the x-th is Beta(x, n-x+1).
    last = np.zeros(customers)
    some = x > 0
    last[some] = rng.beta(x[some], would_buy[some] - x[some] + 1) * age_days[some]
    return x.astype(np.float64), np.floor(last) / 7.0, age_days / 7.0


def transactions(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, seed: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, timestamp, value) rows with these histories, give or take same-day repeats.

    The first purchase is T before the end, the last t_x after it, the others in between.
    """
    rng = np.random.default_rng(seed)
    repeats = x.astype(np.int64)
    customer = np.repeat(np.arange(x.size), repeats + 1)
    first = np.cumsum(repeats + 1) - (repeats + 1)
    last = first + repeats
    span = np.round(t_x * 7).astype(np.int64)
    day = np.zeros(customer.size, dtype=np.int64)
    day[last] = span
    between = np.ones(customer.size, dtype=bool)
    between[first] = between[last] = False
    day[between] = (rng.random(int(between.sum())) * span[customer[between]]).astype(np.int64)
    day += DAYS - np.round(T * 7).astype(np.int64)[customer]
    seconds = rng.integers(0, 86_400, customer.size)
    when = (START + day.astype("timedelta64[D]")).astype("datetime64[s]") + seconds
    return customer, when, np.round(rng.lognormal(3.0, 0.7, customer.size), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    x, t_x, T = simulate(args.customers)
    who, when, value = transactions(x, t_x, T)
    end = START + np.timedelta64(DAYS, "D")
    n_sub = min(args.customers, LIFETIMES_AT_MOST)
    xs, ts, Ts = x[:n_sub], t_x[:n_sub], T[:n_sub]
    rows_sub = int(np.searchsorted(who, n_sub))
    frame = pd.DataFrame(
        {
            "id": who[:rows_sub],
            "at": when[:rows_sub].astype("datetime64[ns]"),
            "v": value[:rows_sub],
        }
    )

    def lifetimes_summary() -> None:
        summary_data_from_transaction_data(
            frame, "id", "at", "v", observation_period_end=str(end), freq="D"
        )

    with timed() as lifetimes_seconds:
        theirs = BetaGeoFitter().fit(xs, ts, Ts)
    lifetimes_fit = lifetimes_seconds()

    def lifetimes_predict() -> None:
        f, r, a = pd.Series(xs), pd.Series(ts), pd.Series(Ts)
        theirs.conditional_probability_alive(f, r, a)
        theirs.conditional_expected_number_of_purchases_up_to_time(39.0, f, r, a)

    lifetimes_sum = best_of(1, lifetimes_summary)
    lifetimes_pred = best_of(1, lifetimes_predict)

    model = fit_bgnbd(x, t_x, T)
    sub_model = fit_bgnbd(xs, ts, Ts)

    def ours_predict(n: int) -> None:
        model.p_alive(x[:n], t_x[:n], T[:n])
        model.expected_purchases(39.0, x[:n], t_x[:n], T[:n])

    ours_sub_sum = best_of(
        3, lambda: rfm_summary(who[:rows_sub], when[:rows_sub], value[:rows_sub], as_of=end)
    )
    ours_sub_fit = best_of(3, lambda: fit_bgnbd(xs, ts, Ts))
    ours_sub_pred = best_of(3, lambda: ours_predict(n_sub))
    ours_sum = best_of(3, lambda: rfm_summary(who, when, value, as_of=end))
    ours_fit = best_of(3, lambda: fit_bgnbd(x, t_x, T))
    ours_pred = best_of(3, lambda: ours_predict(args.customers))

    fit_predict_theirs = lifetimes_fit + lifetimes_pred
    fit_predict_ours = ours_sub_fit + ours_sub_pred
    pipeline_theirs = lifetimes_sum + fit_predict_theirs
    pipeline_ours = ours_sub_sum + fit_predict_ours
    report(
        "btyd_fit",
        {
            "customers": args.customers,
            "transactions": int(who.size),
            "distinct_histories": int(unique_rows(x, t_x, T)[2].size),
            "subset": n_sub,
            "lifetimes_summary_s": round(lifetimes_sum, 3),
            "lifetimes_fit_s": round(lifetimes_fit, 3),
            "lifetimes_predict_s": round(lifetimes_pred, 3),
            "ours_subset_summary_s": round(ours_sub_sum, 3),
            "ours_subset_fit_s": round(ours_sub_fit, 3),
            "ours_subset_predict_s": round(ours_sub_pred, 3),
            "ratio_fit_ours_over_lifetimes": round(ours_sub_fit / lifetimes_fit, 4),
            "ratio_fit_predict_ours_over_lifetimes": round(
                fit_predict_ours / fit_predict_theirs, 4
            ),
            "ratio_pipeline_ours_over_lifetimes": round(pipeline_ours / pipeline_theirs, 4),
            "speedup_fit": round(lifetimes_fit / ours_sub_fit, 1),
            "speedup_fit_predict": round(fit_predict_theirs / fit_predict_ours, 1),
            "speedup_pipeline": round(pipeline_theirs / pipeline_ours, 1),
            "ours_summary_s": round(ours_sum, 3),
            "ours_fit_s": round(ours_fit, 3),
            "ours_predict_s": round(ours_pred, 3),
            "params_ours": {k: round(getattr(model, k), 4) for k in TRUE},
            "params_ours_subset": {k: round(getattr(sub_model, k), 4) for k in TRUE},
            "params_lifetimes_subset": {k: round(float(v), 4) for k, v in theirs.params_.items()},
            "params_true": TRUE,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        },
    )


if __name__ == "__main__":
    main()
