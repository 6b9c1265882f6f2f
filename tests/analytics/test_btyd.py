"""BG/NBD and Gamma-Gamma: published CDNOW estimates, agreement with lifetimes, the likelihood's
gradient, the series that replaces eq. 10's 2F1 (checked against mpmath), and properties."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import mpmath
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betaln, gammaln
from scipy.stats import invgamma

from reengage.analytics import hypergeo
from reengage.analytics.btyd import (
    BGNBD,
    GammaGamma,
    RFMSummary,
    _bgnbd_nll,
    _BGNBDRows,
    _gg_nll,
    clv,
    fit_bgnbd,
    fit_gamma_gamma,
    rfm_summary,
    unique_rows,
)

lifetimes = pytest.importorskip("lifetimes")
from lifetimes import BetaGeoFitter, GammaGammaFitter  # noqa: E402
from lifetimes.utils import summary_data_from_transaction_data  # noqa: E402

DATASETS = Path(lifetimes.__file__).parent / "datasets"
CALIBRATION_END = "1997-09-30"  # FHL 2005: 39 weeks from 1997-01-01
CDNOW = BGNBD(0.243, 4.414, 0.793, 2.426, -9582.4, 2357)  # FHL 2005a, table 1 / p. 280
CDNOW_GG = (6.25, 3.74, 15.44)  # lifetimes' docs, same calibration data


def rel(ours: object, theirs: object) -> float:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def read_cdnow(name: str) -> pd.DataFrame:
    """Transactions as customer_id, date (datetime64[ns], which lifetimes needs), value."""
    path = DATASETS / name
    if name == "CDNOW_sample.txt":
        cols = ["customer_id", "sample_index", "date", "cds", "value"]
        frame = pd.read_csv(path, sep=r"\s+", header=None, names=cols, dtype={"date": str})
    else:
        frame = pd.read_csv(path, sep=r"\s+", dtype={"date": str})
        frame = frame.rename(columns={"dollar_value": "value"})
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d").astype("datetime64[ns]")
    return frame[["customer_id", "date", "value"]]


def lifetimes_summary(frame: pd.DataFrame) -> pd.DataFrame:
    s = summary_data_from_transaction_data(
        frame, "customer_id", "date", "value", observation_period_end=CALIBRATION_END, freq="D"
    ).sort_index()
    s["recency"] /= 7
    s["T"] /= 7
    return s


def our_summary(frame: pd.DataFrame) -> RFMSummary:
    return rfm_summary(
        frame["customer_id"].to_numpy(),
        frame["date"].to_numpy(),
        frame["value"].to_numpy(),
        as_of=CALIBRATION_END,
    )


def reference_ll(m: BGNBD, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> float:
    """FHL 2005a eq. 6 per customer, summed: no compression, no rescaling."""
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    stay = betaln(a, b + x) - betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = betaln(a + 1, b + x - 1) - betaln(a, b) - (r + x) * np.log(alpha + t_x)
    drop = np.where(x > 0, drop, -np.inf)
    return float(np.sum(common + np.logaddexp(stay, drop)))


def reference_gg_ll(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> float:
    px = p * x
    return float(
        np.sum(
            gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
            + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v)
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def sample() -> tuple[RFMSummary, pd.DataFrame]:
    frame = read_cdnow("CDNOW_sample.txt")
    return our_summary(frame), lifetimes_summary(frame)


@pytest.fixture(scope="module")
def fitted(
    sample: tuple[RFMSummary, pd.DataFrame],
) -> tuple[BGNBD, GammaGamma, BetaGeoFitter, GammaGammaFitter]:
    s, ls = sample
    repeat = s.x > 0
    theirs = BetaGeoFitter().fit(ls["frequency"], ls["recency"], ls["T"])
    theirs_gg = GammaGammaFitter()
    theirs_gg.fit(ls["frequency"][ls["frequency"] > 0], ls["monetary_value"][ls["frequency"] > 0])
    return fit_bgnbd(s.x, s.t_x, s.T), fit_gamma_gamma(s.x[repeat], s.m[repeat]), theirs, theirs_gg


# --- CDNOW: the summary, published estimates, lifetimes -----------------------------------------


def test_summary_matches_lifetimes(sample: tuple[RFMSummary, pd.DataFrame]) -> None:
    s, ls = sample
    assert s.customer_id.tolist() == ls.index.tolist()
    assert len(s.x) == 2357
    np.testing.assert_array_equal(s.x, ls["frequency"])
    np.testing.assert_allclose(s.t_x, ls["recency"], rtol=1e-14)
    np.testing.assert_allclose(s.T, ls["T"], rtol=1e-14)
    np.testing.assert_allclose(s.m, ls["monetary_value"], rtol=1e-12)


def test_bgnbd_reproduces_the_published_cdnow_estimates(fitted: tuple) -> None:
    ours, _, theirs, _ = fitted
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(getattr(CDNOW, name), rel=0.01), name
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=1e-5), name
    assert ours.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert ours.customers == 2357


def test_bgnbd_optimum_is_at_least_as_good_as_lifetimes(
    sample: tuple[RFMSummary, pd.DataFrame], fitted: tuple
) -> None:
    s, _ = sample
    ours, _, theirs, _ = fitted
    at_theirs = BGNBD(*theirs.params_[["r", "alpha", "a", "b"]], 0.0, 0)
    ll = reference_ll(ours, s.x, s.t_x, s.T)
    assert ours.log_likelihood == pytest.approx(ll, rel=1e-12)
    assert ll >= reference_ll(at_theirs, s.x, s.t_x, s.T) - 1e-7


def test_gamma_gamma_reproduces_the_cdnow_estimates(
    sample: tuple[RFMSummary, pd.DataFrame], fitted: tuple
) -> None:
    s, _ = sample
    _, ours, _, theirs = fitted
    for name, published in zip(("p", "q", "v"), CDNOW_GG, strict=True):
        assert getattr(ours, name) == pytest.approx(published, rel=0.01), name
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=1e-5), name
    repeat = s.x > 0
    assert ours.customers == int(repeat.sum()) == 946
    ll = reference_gg_ll(ours.p, ours.q, ours.v, s.x[repeat], s.m[repeat])
    assert ours.log_likelihood == pytest.approx(ll, rel=1e-12)


def test_predictions_equal_lifetimes_on_the_same_parameters(
    sample: tuple[RFMSummary, pd.DataFrame], fitted: tuple
) -> None:
    s, ls = sample
    ours, ours_gg, theirs, theirs_gg = fitted
    theirs.params_ = pd.Series({"r": ours.r, "alpha": ours.alpha, "a": ours.a, "b": ours.b})
    theirs_gg.params_ = pd.Series({"p": ours_gg.p, "q": ours_gg.q, "v": ours_gg.v})
    f, r, T, m = ls["frequency"], ls["recency"], ls["T"], ls["monetary_value"]

    assert rel(ours.p_alive(s.x, s.t_x, s.T), theirs.conditional_probability_alive(f, r, T)) < 1e-9
    expected = theirs.conditional_expected_number_of_purchases_up_to_time(39, f, r, T)
    assert rel(ours.expected_purchases(39, s.x, s.t_x, s.T), expected) < 1e-9
    value = theirs_gg.conditional_expected_average_profit(f, m)
    assert rel(ours_gg.expected_order_value(s.x, s.m), value) < 1e-12
    lifetime = theirs_gg.customer_lifetime_value(theirs, f, r, T, m, time=12, freq="W")
    ours_clv = clv(ours, ours_gg, s.x, s.t_x, s.T, s.m, periods_per_month=4.345)
    assert rel(ours_clv, lifetime) < 1e-9

    # The same in days: lifetimes' freq="D" means 30-day months.
    days = BGNBD(ours.r, ours.alpha * 7, ours.a, ours.b, 0.0, 0)
    theirs.params_ = pd.Series({"r": days.r, "alpha": days.alpha, "a": days.a, "b": days.b})
    lifetime = theirs_gg.customer_lifetime_value(
        theirs, f, r * 7, T * 7, m, time=6, discount_rate=0.02, freq="D"
    )
    ours_clv = clv(
        days, ours_gg, s.x, s.t_x * 7, s.T * 7, s.m,
        months=6, monthly_discount=0.02, periods_per_month=30,
    )  # fmt: skip
    assert rel(ours_clv, lifetime) < 1e-9


def test_full_cdnow_master_agrees_with_lifetimes() -> None:
    frame = read_cdnow("CDNOW_master.txt")
    s, ls = our_summary(frame), lifetimes_summary(frame)
    assert len(s.x) == 23570
    np.testing.assert_array_equal(s.x, ls["frequency"])
    np.testing.assert_allclose(s.m, ls["monetary_value"], rtol=1e-12)
    ours = fit_bgnbd(s.x, s.t_x, s.T)
    theirs = BetaGeoFitter().fit(ls["frequency"], ls["recency"], ls["T"])
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(theirs.params_[name], rel=1e-5), name
    assert ours.log_likelihood == pytest.approx(reference_ll(ours, s.x, s.t_x, s.T), rel=1e-12)
    # One repeat customer spent 0 on average: neither Gamma-Gamma can take that.
    spent = (s.x > 0) & (s.m > 0)
    assert (s.x > 0).sum() - spent.sum() == 1
    ours_gg = fit_gamma_gamma(s.x[spent], s.m[spent])
    theirs_gg = GammaGammaFitter()
    theirs_gg.fit(s.x[spent], s.m[spent])
    for name in ("p", "q", "v"):
        assert getattr(ours_gg, name) == pytest.approx(theirs_gg.params_[name], rel=1e-5), name


def test_fit_does_not_depend_on_the_time_or_money_unit(
    sample: tuple[RFMSummary, pd.DataFrame], fitted: tuple
) -> None:
    s, _ = sample
    weeks, gg, _, _ = fitted
    days = fit_bgnbd(s.x, s.t_x * 7, s.T * 7)
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-6)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-6)
    # The likelihood is a density in t_x: each repeat purchase contributes one ln(unit).
    assert days.log_likelihood == pytest.approx(weeks.log_likelihood - s.x.sum() * np.log(7))
    repeat = s.x > 0
    cents = fit_gamma_gamma(s.x[repeat], s.m[repeat] * 100)
    assert cents.v == pytest.approx(gg.v * 100, rel=1e-6)
    assert cents.p == pytest.approx(gg.p, rel=1e-6)
    assert cents.log_likelihood == pytest.approx(gg.log_likelihood - repeat.sum() * np.log(100))


# --- The likelihood: gradient, compression ------------------------------------------------------


def random_history(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 40, n).astype(float)
    x = np.minimum(rng.poisson(1.5, n), T).astype(float)
    t_x = np.where(x > 0, np.ceil(rng.uniform(0, 1, n) * T), 0.0)
    return x, t_x, T


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bgnbd_gradient_matches_finite_differences(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, t_x, T = random_history(500, seed)
    x[:3], t_x[:3], T[:3] = 300, 990, 1000  # heavy buyers must not overflow either
    rows = _BGNBDRows.of(x, t_x, T)
    for theta in rng.uniform(-2, 2, (3, 4)):
        _, grad = _bgnbd_nll(theta, rows)
        h = 1e-6
        numeric = [
            (_bgnbd_nll(theta + h * e, rows)[0] - _bgnbd_nll(theta - h * e, rows)[0]) / (2 * h)
            for e in np.eye(4)
        ]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_gamma_gamma_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(1, 30, 300).astype(float)
    m = rng.gamma(3, 10, 300)
    w = rng.integers(1, 5, 300).astype(float)
    for theta in rng.uniform(-1.5, 2.5, (4, 3)):
        _, grad = _gg_nll(theta, x, m, w)
        h = 1e-6
        numeric = [
            (_gg_nll(theta + h * e, x, m, w)[0] - _gg_nll(theta - h * e, x, m, w)[0]) / (2 * h)
            for e in np.eye(3)
        ]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_compressed_likelihood_equals_the_sum_over_customers() -> None:
    x, t_x, T = random_history(5000, 5)
    rows = _BGNBDRows.of(x, t_x, T)
    assert rows.x1.size + rows.T0.size < 2000  # many customers share a history
    assert rows.total == 5000
    model = BGNBD(0.7, 3.0, 1.3, 2.2, 0.0, 0)
    nll, _ = _bgnbd_nll(np.log([model.r, model.alpha, model.a, model.b]), rows)
    assert -nll * rows.total == pytest.approx(reference_ll(model, x, t_x, T), rel=1e-12)


def test_unique_rows_is_numpys_unique_by_row() -> None:
    x, t_x, T = random_history(3000, 6)
    (ux, ut, uT), inverse, counts = unique_rows(x, t_x, T)
    stacked = np.column_stack([x, t_x, T])
    want, want_inverse, want_counts = np.unique(
        stacked, axis=0, return_inverse=True, return_counts=True
    )
    np.testing.assert_array_equal(np.column_stack([ux, ut, uT]), want)
    np.testing.assert_array_equal(inverse, want_inverse.ravel())
    np.testing.assert_array_equal(counts, want_counts)


# --- Eq. 10 without 2F1: the series against mpmath ----------------------------------------------


def eq10(m: BGNBD, t: float, x: int, t_x: float, T: float, a: mpmath.mpf) -> mpmath.mpf:
    """FHL 2005a eq. 10 literally, in 60-digit arithmetic (a passed exactly, to step off a = 1)."""
    r, alpha, b = (mpmath.mpf(v) for v in (m.r, m.alpha, m.b))
    t, t_x, T = mpmath.mpf(t), mpmath.mpf(t_x), mpmath.mpf(T)
    z = t / (alpha + T + t)
    hyp = mpmath.hyp2f1(r + x, b + x, a + b + x - 1, z)
    bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    alive = 1 / (1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x)) if x else 1
    return alive * (a + b + x - 1) / (a - 1) * bracket


@pytest.mark.parametrize(
    ("r", "alpha", "a", "b"),
    [
        (0.243, 4.414, 0.793, 2.426),  # CDNOW
        (0.243, 4.414, 1.0, 2.426),  # eq. 10's removable pole
        (0.243, 4.414, 1.0 + 1e-9, 2.426),
        (30.0, 2.0, 0.4, 0.5),  # large r: the Euler-transformed 2F1 would alternate
        (2.0, 60.0, 5.0, 0.3),
    ],
)
def test_series_matches_eq10_in_mpmath(r: float, alpha: float, a: float, b: float) -> None:
    model = BGNBD(r, alpha, a, b, 0.0, 0)
    mpmath.mp.dps = 60
    # eq. 10 at a = 1 exactly is 0/0: take mpmath's value an irrelevant 1e-30 away.
    exact_a = mpmath.mpf(a) + (mpmath.mpf("1e-30") if a == 1.0 else 0)
    for x in (0, 1, 7, 300):
        for T in (0.0, 5.0, 1000.0):
            t_x = 0.0 if x == 0 else T / 2
            for t in (1e-4, 39.0, 520.0):
                want = float(eq10(model, t, x, t_x, T, exact_a))
                got = float(model.expected_purchases(t, x, t_x, T))
                # 1e-9 allows for 10^5-term sums (x = 300, T = 0, t = 520 with r = 30).
                assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (x, T, t)


def test_series_handles_the_edges() -> None:
    model = BGNBD(0.243, 4.414, 0.793, 2.426, 0.0, 0)
    assert model.expected_purchases(0.0, 3, 10, 20) == 0.0
    heavy = model.expected_purchases([39.0, 1e4], 300, 999, 1000)
    assert np.all(np.isfinite(heavy)) and heavy[0] < heavy[1]
    with pytest.raises(ValueError, match="horizon is too long"):
        model.expected_purchases(1e10, 0, 0, 0)
    assert hypergeo.expected_purchases_if_alive(
        np.array([39.0]), np.array([2.0]), np.array([30.0]), 0.243, 4.414, 0.793, 2.426
    ) == pytest.approx(model.expected_purchases(39.0, 2, 0.0, 30.0) / model.p_alive(2, 0.0, 30.0))


# --- Properties ----------------------------------------------------------------------------------

params = st.tuples(
    st.floats(0.01, 20.0), st.floats(1.0, 100.0), st.floats(0.05, 20.0), st.floats(0.05, 50.0)
)
# At most one repeat purchase per period, so the series stays within a few thousand terms.
histories = st.tuples(st.integers(0, 500), st.floats(0.0, 1.0), st.floats(0.0, 2000.0)).map(
    lambda h: (min(h[0], int(h[2])), h[1], h[2])
)


# horizons in periods: a subnormal one (1e-309 weeks) only makes the bound itself underflow
horizons = st.floats(0.0, 260.0, allow_subnormal=False)


@settings(max_examples=100, deadline=None)
@given(params, histories, horizons, horizons)
def test_predictions_are_probabilities_and_counts(
    theta: tuple[float, float, float, float],
    history: tuple[int, float, float],
    t1: float,
    t2: float,
) -> None:
    model = BGNBD(*theta, 0.0, 0)
    x, share, T = history
    t_x = share * T if x else 0.0
    alive = float(model.p_alive(x, t_x, T))
    assert 0.0 <= alive <= 1.0
    low, high = model.expected_purchases([min(t1, t2), max(t1, t2)], x, t_x, T)
    assert np.isfinite(low) and np.isfinite(high)
    # Non-decreasing in t, up to rounding in sums of thousands of terms.
    assert 0.0 <= low <= high * (1 + 1e-10)
    # No more than the Poisson process would produce if nobody ever dropped out.
    r, alpha = theta[0], theta[1]
    assert high <= alive * (r + x) * max(t1, t2) / (alpha + T) * (1 + 1e-9)
    assert float(model.expected_next_purchase_in(x, t_x, T)) > 0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1e6))
def test_no_overflow_for_extreme_customers(x: int, T: float) -> None:
    model = BGNBD(0.243, 4.414, 0.793, 2.426, 0.0, 0)
    t_x = T * 0.99 if x else 0.0
    for value in (
        model.p_alive(x, t_x, T),
        model.expected_purchases(52.0, x, t_x, T),
        model.expected_next_purchase_in(x, t_x, T),
    ):
        assert not np.isnan(value)
    assert np.isfinite(model.expected_purchases(52.0, x, t_x, T))


def test_fit_survives_extreme_customers(sample: tuple[RFMSummary, pd.DataFrame]) -> None:
    s, _ = sample
    x = np.append(s.x, [300, 300, 0])
    t_x = np.append(s.t_x, [999, 10, 0])
    T = np.append(s.T, [1000, 1000, 1000])
    model = fit_bgnbd(x, t_x, T)
    assert np.isfinite(model.log_likelihood)
    assert model.p_alive(300, 10, 1000) < 1e-100


# --- Next purchase, clv --------------------------------------------------------------------------


def test_expected_next_purchase_is_the_posterior_mean_of_one_over_lambda() -> None:
    model = BGNBD(0.243, 4.414, 0.793, 2.426, 0.0, 0)
    x = np.array([0, 1, 2, 12])
    T = np.array([30.0, 30.0, 20.0, 35.0])
    t_x = np.array([0.0, 10.0, 15.0, 34.0])
    wait = model.expected_next_purchase_in(x, t_x, T)
    assert np.isinf(wait[0])  # r + x <= 1: the mean does not exist
    for i in (1, 2, 3):
        # λ | alive ~ Gamma(r+x, rate α+T), so 1/λ ~ InvGamma(r+x, scale α+T).
        assert wait[i] == pytest.approx(invgamma(model.r + x[i], scale=model.alpha + T[i]).mean())
    days = model.expected_days_to_next_order(x, t_x, T)
    np.testing.assert_array_equal(days, wait * 7)


def test_clv_discounts_each_month_of_expected_purchases() -> None:
    model = BGNBD(0.243, 4.414, 0.793, 2.426, 0.0, 0)
    gg = GammaGamma(6.25, 3.74, 15.44, 0.0, 0)
    x, t_x, T, m = 3, 20.0, 30.0, 40.0
    f = 30 / 7
    months = [model.expected_purchases(k * f, x, t_x, T) for k in range(4)]
    want = sum(
        gg.expected_order_value(x, m) * (months[k] - months[k - 1]) / 1.01**k for k in (1, 2, 3)
    )
    assert clv(model, gg, x, t_x, T, m, months=3) == pytest.approx(want, rel=1e-12)
    assert float(gg.expected_order_value(0, 0)) == pytest.approx(6.25 * 15.44 / 2.74)


# --- rfm_summary ---------------------------------------------------------------------------------


def test_summary_collapses_days_and_leaves_out_the_first_purchase() -> None:
    paris = timezone(timedelta(hours=2))
    s = rfm_summary(
        ["b", "a", "a", "a", "a", "c", "b"],
        [
            datetime(2024, 1, 1, 9, tzinfo=UTC),
            datetime(2024, 1, 1, 9, tzinfo=UTC),
            datetime(2024, 1, 8, 1, tzinfo=paris),  # 2024-01-07 23:00 UTC
            datetime(2024, 1, 7, 12, tzinfo=UTC),  # same UTC day: one purchase of 30
            datetime(2024, 2, 1, tzinfo=UTC),  # after as_of
            datetime(2024, 1, 20, tzinfo=UTC),  # after as_of: c is not a customer yet
            datetime(2024, 1, 15, tzinfo=UTC),
        ],
        [5.0, 100.0, 10.0, 20.0, 1000.0, 1.0, 7.0],
        as_of=datetime(2024, 1, 15, 18, tzinfo=UTC),
    )
    assert s.customer_id.tolist() == ["a", "b"]
    np.testing.assert_array_equal(s.x, [1, 1])
    np.testing.assert_allclose(s.t_x, [6 / 7, 14 / 7])
    np.testing.assert_allclose(s.T, [14 / 7, 14 / 7])
    np.testing.assert_allclose(s.m, [30.0, 7.0])
    days = rfm_summary(
        [1, 1], ["2024-01-01", "2024-01-03"], [1, 2], as_of="2024-01-05", unit_days=1
    )
    assert (days.x[0], days.t_x[0], days.T[0], days.m[0]) == (1, 2, 4, 2)


# --- Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "t_x", "T", "message"),
    [
        ([], [], [], "no customers"),
        ([1, -1], [1, 0], [2, 2], "x must not be negative"),
        ([1.5], [1], [2], "whole numbers"),
        ([2], [3], [2], "must not exceed T"),
        ([0], [1], [2], "t_x must be 0"),
        ([1], [np.nan], [2], "t_x must be finite"),
        ([1], [1], [-2], "T must not be negative"),
    ],
)
def test_bad_histories_are_refused(x: list, t_x: list, T: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(x, t_x, T)
    with pytest.raises(ValueError, match=message):
        CDNOW.p_alive(x, t_x, T)


def test_fits_that_cannot_converge_say_which_parameters() -> None:
    rng = np.random.default_rng(7)
    T = rng.uniform(10, 50, 2000)
    x = rng.poisson(T * 0.5).astype(float)
    t_x = np.where(x > 0, T, 0.0)  # everybody buys to the end: nobody seems to drop out
    with pytest.raises(ValueError, match="BG/NBD fit did not converge") as failed:
        fit_bgnbd(x, t_x, T)
    named = re.search(r"still moves with ([\w, ]+) \(|: ([\w, ]+) ran off", str(failed.value))
    assert named, failed.value
    assert set((named.group(1) or named.group(2)).split(", ")) <= {"r", "alpha", "a", "b"}
    with pytest.raises(ValueError, match=r"Gamma-Gamma fit did not converge: p, q ran off"):
        fit_gamma_gamma(np.ones(50), np.full(50, 5.0))
    with pytest.raises(ValueError, match="no customer has a repeat purchase"):
        fit_bgnbd(np.zeros(10), np.zeros(10), np.arange(1, 11))


def test_bad_spend_and_summary_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="repeat customers only"):
        fit_gamma_gamma([0, 2], [0.0, 10.0])
    with pytest.raises(ValueError, match="must be positive"):
        fit_gamma_gamma([1, 2], [0.0, 10.0])
    with pytest.raises(ValueError, match="infinite"):
        GammaGamma(2.0, 0.9, 10.0, 0.0, 0).expected_order_value(1, 10.0)
    with pytest.raises(ValueError, match="values must not be negative"):
        rfm_summary([1], ["2024-01-01"], [-1.0], as_of="2024-01-02")
    with pytest.raises(ValueError, match="differ in length"):
        rfm_summary([1, 2], ["2024-01-01"], [1.0], as_of="2024-01-02")
    with pytest.raises(ValueError, match="no transactions on or before"):
        rfm_summary([1], ["2024-01-05"], [1.0], as_of="2024-01-02")
    with pytest.raises(ValueError, match="months"):
        clv(CDNOW, GammaGamma(6.25, 3.74, 15.44, 0.0, 0), 1, 1, 2, 10, months=0)
