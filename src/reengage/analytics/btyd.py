"""Buy-till-you-die models: who is still a customer, how much they will buy, and what that is worth.

BG/NBD (Fader, Hardie & Lee 2005a, "Counting your customers the easy way", Marketing Science
24(2)) models repeat purchases: while alive a customer buys as a Poisson process with rate
λ ~ Gamma(r, α), and after each purchase drops out with probability p ~ Beta(a, b). Gamma-Gamma
(Fader, Hardie & Lee 2005b, "RFM and CLV", JMR 42; Hardie's note 025) models the mean spend of a
customer's repeat purchases. Together they give the discounted customer lifetime value as
lifetimes computes it.

Inputs per customer, as in lifetimes: x = repeat purchases (purchase days after the first),
t_x = time from the first to the last purchase, T = time from the first purchase to the end of
observation, m = mean value of the repeat purchases; time in any unit (weeks by default in
`rfm_summary`). Both fits maximise the exact log-likelihood over log-parameters with L-BFGS-B and
analytic gradients, on identical rows compressed into weighted unique rows, so they scale with
the number of distinct histories rather than of customers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize  # type: ignore[import-untyped, unused-ignore]
from scipy.special import digamma, expit, gammaln  # type: ignore[import-untyped, unused-ignore]

from reengage.analytics.btyd_data import (
    RFMSummary,
    floats,
    histories,
    refuse,
    rfm_summary,
    unique_rows,
)
from reengage.analytics.hypergeo import expected_purchases_if_alive

__all__ = [
    "BGNBD",
    "GammaGamma",
    "RFMSummary",
    "clv",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "rfm_summary",
]

#: Search box for log-parameters, time and money being rescaled to O(1) first.
_LOG_BOUND = 20.0
#: A log-parameter that ends farther out than this (a factor e^12 ≈ 1.6e5 from 1) is running off
#: to 0 or ∞ along a ridge where the likelihood barely changes, so the optimiser may well report
#: success: the data cannot pin it down (e.g. a → 0 with b → ∞ when nobody seems to drop out).
_RUNAWAY = 12.0
#: Largest gradient component (of the mean log-likelihood per customer, in log-parameters)
#: accepted when L-BFGS-B stops on a failed line search, which happens at machine precision.
_GTOL = 1e-5


def _wsum(weights: np.ndarray, values: np.ndarray) -> float:
    """Σ weights·values in this thread.

    `@` would call OpenBLAS's threaded ddot, whose idle threads keep spinning and, on a busy
    machine, slow the rest of the fit several-fold.
    """
    return float(np.einsum("i,i->", weights, values))


def _maximise(
    nll: Callable[[np.ndarray], tuple[float, np.ndarray]],
    names: tuple[str, ...],
    model: str,
    hint: str,
) -> tuple[np.ndarray, float]:
    """Minimise a mean negative log-likelihood over log-parameters, starting from all ones.

    scipy >= 1.15's L-BFGS-B makes BLAS calls every iteration; with a multi-threaded OpenBLAS
    on a loaded machine each can cost milliseconds (scipy issue 22438), far more than our
    likelihood on 10^5 customers: processes that fit should run with OPENBLAS_NUM_THREADS=1.
    """
    res = minimize(
        nll,
        np.zeros(len(names)),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(names),
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-7},
    )
    theta = np.asarray(res.x, dtype=np.float64)
    estimates = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, np.exp(theta), strict=True))
    edge = [n for n, v in zip(names, theta, strict=True) if abs(v) > _RUNAWAY]
    if edge:
        raise ValueError(
            f"{model} fit did not converge: {', '.join(edge)} ran off towards 0 or infinity "
            f"({estimates}, before undoing the rescaling); the data cannot identify them ({hint})"
        )
    steep = [n for n, g in zip(names, res.jac, strict=True) if abs(g) > _GTOL]
    if not res.success and steep:
        raise ValueError(
            f"{model} fit did not converge in {res.nit} iterations: the likelihood still moves "
            f"with {', '.join(steep)} ({estimates}, before undoing the rescaling); the data may "
            f"not identify them ({hint})"
        )
    return theta, float(res.fun)


# --- BG/NBD -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BGNBDRows:
    """Weighted unique histories, split so each term is computed where it varies."""

    xs: np.ndarray  # distinct x, and the total weight of each: terms in x alone
    wx: np.ndarray
    T0: np.ndarray  # rows with x = 0 (t_x = 0): only T matters
    w0: np.ndarray
    x1: np.ndarray  # rows with x > 0
    t1: np.ndarray
    T1: np.ndarray
    w1: np.ndarray
    xs1: np.ndarray  # distinct x > 0, and which one each x > 0 row has
    xi1: np.ndarray
    total: float

    @classmethod
    def of(cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> _BGNBDRows:
        (ux, ut, uT), _, w = unique_rows(x, t_x, T)
        xs, xi = np.unique(ux, return_inverse=True)
        zero = ux == 0
        w = w.astype(np.float64)
        xs1, xi1 = np.unique(ux[~zero], return_inverse=True)
        return cls(
            xs, np.bincount(xi, weights=w), uT[zero], w[zero],
            ux[~zero], ut[~zero], uT[~zero], w[~zero], xs1, xi1, float(w.sum()),
        )  # fmt: skip


def _bgnbd_nll(theta: np.ndarray, d: _BGNBDRows) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of BG/NBD and its gradient in log-parameters.

    Per customer (FHL 2005a's likelihood, in the log form of Hardie's note 004):
        ℓ = ln Γ(r+x) - ln Γ(r) + r ln α + ln B(a, b+x) - ln B(a, b) - (r+x) ln(α+T)
            + 1{x>0} · softplus(D),
        D = ln a - ln(b+x-1) + (r+x) ln((α+T)/(α+t_x)),
    softplus(D) = ln(1 + e^D) being the A_4/A_3 part of ln(A_3 + A_4) (logaddexp(0, D)).
    With s = sigmoid(D) (= 1 - P(alive)) the partial derivatives are
        ∂r = ψ(r+x) - ψ(r) + ln α - ln(α+T) + s ln((α+T)/(α+t_x))
        ∂α = r/α - (r+x)/(α+T) + s (r+x) (1/(α+T) - 1/(α+t_x))
        ∂a = ψ(a+b) - ψ(a+b+x) + s/a
        ∂b = ψ(a+b) - ψ(b) + ψ(b+x) - ψ(a+b+x) - s/(b+x-1),
    and ∂/∂ln θ = θ ∂/∂θ.
    """
    r, alpha, a, b = np.exp(theta)
    xs, wx, n = d.xs, d.wx, d.total
    # Terms in x alone, summed over the distinct x.
    ll = _wsum(wx, gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs))
    ll += n * (r * np.log(alpha) - gammaln(r) + gammaln(a + b) - gammaln(b))
    dr = _wsum(wx, digamma(r + xs)) + n * (np.log(alpha) - digamma(r))
    dalpha = n * r / alpha
    da = n * digamma(a + b) - _wsum(wx, digamma(a + b + xs))
    db = n * (digamma(a + b) - digamma(b)) + _wsum(wx, digamma(b + xs) - digamma(a + b + xs))
    # x = 0: ln A_3 alone.
    log_T0 = np.log(alpha + d.T0)
    ll -= r * _wsum(d.w0, log_T0)
    dr -= _wsum(d.w0, log_T0)
    dalpha -= r * _wsum(d.w0, 1.0 / (alpha + d.T0))
    # x > 0: ln A_3 + softplus(D). Logs rather than log1p: absolute accuracy is what counts in
    # these sums, and numpy's log is vectorised where log1p is not.
    rx = r + d.x1
    log_T1 = np.log(alpha + d.T1)
    gap = log_T1 - np.log(alpha + d.t1)  # ln((α+T)/(α+t_x)) >= 0
    b_x1 = b + d.xs1 - 1.0
    D = (np.log(a) - np.log(b_x1))[d.xi1] + rx * gap
    # softplus(D) and sigmoid(D) without overflow for either sign of D (and without np.where,
    # which is slow on unpredictable masks).
    e = np.exp(-np.abs(D))
    soft = np.maximum(D, 0.0) + np.log(1.0 + e)
    s = np.exp(np.minimum(D, 0.0)) / (1.0 + e)
    inv_T = np.exp(-log_T1)
    inv_t = inv_T * np.exp(gap)
    ll += _wsum(d.w1, soft - rx * log_T1)
    dr += _wsum(d.w1, s * gap - log_T1)
    dalpha += _wsum(d.w1, rx * (s * (inv_T - inv_t) - inv_T))
    ws = d.w1 * s
    da += ws.sum() / a
    db -= _wsum(ws, (1.0 / b_x1)[d.xi1])
    grad = np.array([dr * r, dalpha * alpha, da * a, db * b])
    return float(-ll / n), -grad / n


@dataclass(frozen=True)
class BGNBD:
    """A fitted BG/NBD model; time in the unit of the data it was fitted on."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def p_alive(self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> np.ndarray:
        """P(alive at T | x, t_x, T) = 1 / (1 + e^D), D as in `_bgnbd_nll`; 1 when x = 0.

        Fader, Hardie & Lee 2008, "Computing P(alive) using the BG/NBD model" (Hardie's note
        021): Bayes' rule on the two halves of the likelihood. A customer who never repeated
        cannot have dropped out, since drop-out happens only right after a purchase.
        """
        (x_, t_, T_), shape = histories(x, t_x, T)
        return self._p_alive(x_, t_, T_).reshape(shape)

    def _p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        gap = np.log1p((T - t_x) / (self.alpha + t_x))
        D = np.log(self.a) - np.log(self.b + np.maximum(x, 1.0) - 1.0) + (self.r + x) * gap
        return np.where(x > 0, expit(-D), 1.0)

    def expected_purchases(
        self, t: npt.ArrayLike, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
    ) -> np.ndarray:
        """Expected number of purchases in the next t periods given the history (FHL 2005a eq. 10).

        Computed as P(alive) · E[purchases | alive] with the positive series of
        `reengage.analytics.hypergeo` in place of eq. 10's 2F1(r+x, b+x; a+b+x-1; t/(α+T+t)).
        """
        (x_, t_, T_, h), shape = histories(x, t_x, T, t=t)
        # The series depends on (x, T, t) only: evaluate it once per distinct triple (pair,
        # when every customer has the same horizon, which saves a sort key).
        if np.ptp(h) == 0:
            (ux, uT), inverse, _ = unique_rows(x_, T_)
            uh = np.full(ux.size, h[0])
        else:
            (ux, uT, uh), inverse, _ = unique_rows(x_, T_, h)
        if_alive = expected_purchases_if_alive(uh, ux, uT, self.r, self.alpha, self.a, self.b)
        return (self._p_alive(x_, t_, T_) * if_alive[inverse]).reshape(shape)

    def expected_next_purchase_in(
        self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike
    ) -> np.ndarray:
        """Expected time to the next purchase of a customer who is alive: (α+T) / (r+x-1).

        Given alive, the next purchase is certain (drop-out only follows a purchase) and comes
        after an Exp(λ) wait. For a customer alive at T, λ's likelihood is λ^x e^(-λT), so its
        posterior is Gamma(r+x, rate α+T) and the mean wait E[1/λ] is (α+T)/(r+x-1), finite
        only for r+x > 1. Where it is not (customers with x = 0 when r <= 1: the posterior has
        too much mass near λ = 0) the result is inf.
        """
        (x_, _, T_), shape = histories(x, t_x, T)
        shape_ = self.r + x_
        wait = np.full(x_.shape, np.inf)
        ok = shape_ > 1.0
        wait[ok] = (self.alpha + T_[ok]) / (shape_[ok] - 1.0)
        return wait.reshape(shape)

    def expected_days_to_next_order(
        self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike, *, unit_days: float = 7.0
    ) -> np.ndarray:
        """`expected_next_purchase_in` in days, for an expected next order date (as_of + days).

        unit_days is the length of the model's time unit (7 for weeks, as `rfm_summary`'s
        default); inf where the expectation does not exist: show no date for those customers.
        """
        return self.expected_next_purchase_in(x, t_x, T) * unit_days


def fit_bgnbd(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> BGNBD:
    """Fit BG/NBD by maximum likelihood to per-customer (x, t_x, T).

    Time is rescaled by the largest T (as lifetimes does) so that every log-parameter starts at
    0 on the same footing; only α carries the unit, and the log-likelihood changes by
    Σ x · ln(scale), which is added back so `log_likelihood` is in the data's own unit.
    """
    (x_, t_, T_), _ = histories(x, t_x, T)
    if T_.max() == 0:
        raise ValueError("every customer has T = 0: their first purchase is the end of the data")
    if not (x_ > 0).any():
        raise ValueError("no customer has a repeat purchase (x > 0): nothing to fit BG/NBD to")
    scale = 1.0 / T_.max()
    rows = _BGNBDRows.of(x_, t_ * scale, T_ * scale)
    theta, nll = _maximise(
        lambda th: _bgnbd_nll(th, rows),
        ("r", "alpha", "a", "b"),
        "BG/NBD",
        "too few customers, no sign of drop-out, or purchase rates all alike",
    )
    r, alpha, a, b = np.exp(theta)
    ll = -nll * rows.total + _wsum(rows.wx, rows.xs) * np.log(scale)
    return BGNBD(float(r), float(alpha / scale), float(a), float(b), float(ll), x_.size)


# --- Gamma-Gamma --------------------------------------------------------------------------------


def _gg_nll(
    theta: np.ndarray, x: np.ndarray, m: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of Gamma-Gamma and its gradient in log-parameters.

    Per repeat customer (Hardie's note 025 eq. 1a, the density of the mean m of x spends, as
    lifetimes' GammaGammaFitter writes it):
        ℓ = ln Γ(px+q) - ln Γ(px) - ln Γ(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v)
        ∂p = x (ψ(px+q) - ψ(px) - ln(1 + v/(xm)))
        ∂q = ψ(px+q) - ψ(q) - ln(1 + xm/v)
        ∂v = q/v - (px+q)/(xm+v)
    """
    p, q, v = np.exp(theta)
    px = p * x
    xm = x * m
    ll = _wsum(
        w,
        gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
        + (px - 1.0) * np.log(m) + px * np.log(x) - (px + q) * np.log(xm + v)
    )  # fmt: skip
    psi_pq = digamma(px + q)
    dp = _wsum(w, x * (psi_pq - digamma(px) - np.log1p(v / xm)))
    dq = _wsum(w, psi_pq - digamma(q) - np.log1p(xm / v))
    dv = _wsum(w, q / v - (px + q) / (xm + v))
    total = w.sum()
    return float(-ll / total), -np.array([dp * p, dq * q, dv * v]) / total


@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma spend model; money in the unit of the data it was fitted on."""

    p: float
    q: float
    v: float
    log_likelihood: float
    customers: int

    def expected_order_value(self, x: npt.ArrayLike, m: npt.ArrayLike) -> np.ndarray:
        """E[mean spend | x repeat purchases averaging m] = p (v + x m) / (p x + q - 1).

        FHL 2005b eq. 5 (note 025): a weighted average of the population mean p v / (q - 1) and
        the customer's own mean m, with weight p x / (p x + q - 1) on m; the population mean
        for x = 0. Needs q > 1, else the population mean spend is infinite.
        """
        (x_, m_), shape = floats(x=x, m=m)
        refuse(x_ != np.floor(x_), "x (repeat purchases) must be whole numbers")
        return self._expected_order_value(x_, m_).reshape(shape)

    def _expected_order_value(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        if self.q <= 1:
            raise ValueError(
                f"Gamma-Gamma q = {self.q:.4g} <= 1: the fitted mean spend is infinite, "
                "so there is no expected order value"
            )
        px = self.p * x
        return self.p * (self.v + x * m) / (px + self.q - 1.0)


def fit_gamma_gamma(x: npt.ArrayLike, m: npt.ArrayLike) -> GammaGamma:
    """Fit Gamma-Gamma by maximum likelihood to repeat customers' (x, m); x >= 1, m > 0.

    Money is rescaled by the mean of m so every log-parameter starts at 0 on the same footing;
    only v carries the unit, and the log-likelihood changes by ln(scale) per customer, which is
    added back so `log_likelihood` is in the data's own unit.
    """
    (x_, m_), _ = floats(x=x, m=m)
    refuse(x_ != np.floor(x_), "x (repeat purchases) must be whole numbers")
    refuse(x_ < 1, "Gamma-Gamma needs repeat customers only: pass the customers with x > 0")
    refuse(m_ <= 0, "m (mean value of the repeat purchases) must be positive")
    scale = 1.0 / m_.mean()
    (ux, um), _, counts = unique_rows(x_, m_ * scale)
    w = counts.astype(np.float64)
    theta, nll = _maximise(
        lambda th: _gg_nll(th, ux, um, w),
        ("p", "q", "v"),
        "Gamma-Gamma",
        "too few customers, or mean spends all alike",
    )
    p, q, v = np.exp(theta)
    ll = -nll * w.sum() + w.sum() * np.log(scale)
    return GammaGamma(float(p), float(q), float(v / scale), float(ll), x_.size)


# --- Customer lifetime value --------------------------------------------------------------------


def clv(
    bgnbd: BGNBD,
    gg: GammaGamma,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,
    m: npt.ArrayLike,
    *,
    months: int = 12,
    monthly_discount: float = 0.01,
    periods_per_month: float = 30 / 7,
) -> np.ndarray:
    """Discounted expected value of each customer's purchases over the next `months` months.

    As lifetimes' GammaGammaFitter.customer_lifetime_value: Σ_{k=1..months} E[order value] ·
    (E[Y(k·f)] - E[Y((k-1)·f)]) / (1 + monthly_discount)^k, with f = periods_per_month model
    time units per month and E[Y(t)] the BG/NBD conditional expected purchases. The default f
    is 30/7 for weeks, the 30-day month lifetimes uses for days; lifetimes' weekly setting is
    4.345 (pass it to reproduce lifetimes' numbers with freq="W"); use 30 for days.
    """
    if months < 1:
        raise ValueError(f"months must be at least 1, not {months}")
    if not monthly_discount > -1:
        raise ValueError(f"monthly_discount must exceed -1, not {monthly_discount}")
    if not periods_per_month > 0:
        raise ValueError(f"periods_per_month must be positive, not {periods_per_month}")
    (x_, t_, T_, m_), shape = histories(x, t_x, T, m=m)
    value = gg._expected_order_value(x_, m_)
    alive = bgnbd._p_alive(x_, t_, T_)
    (ux, uT), inverse, _ = unique_rows(x_, T_)
    total = np.zeros(x_.size)
    before = np.zeros(x_.size)
    for k in range(1, months + 1):
        t = np.full(ux.size, k * periods_per_month)
        upto = expected_purchases_if_alive(t, ux, uT, bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b)
        upto = alive * upto[inverse]
        total += value * (upto - before) / (1.0 + monthly_discount) ** k
        before = upto
    return total.reshape(shape)
