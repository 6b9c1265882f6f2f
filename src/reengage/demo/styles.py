"""The four behavioural styles and how strongly each one pulls a customer's habits.

Every customer has one true style, but their habits are a blend: mostly their own style, partly
the others, plus personal noise. The signals therefore overlap between styles, which keeps
inferring the style from the data non-trivial yet learnable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STYLES = ("go_getter", "promoter", "nurturer", "examiner")
GO_GETTER, PROMOTER, NURTURER, EXAMINER = range(4)

DEVICES = ("desktop", "mobile", "tablet")
SOURCES = ("direct", "search", "social", "email", "ads")

# One row per trait, one column per style (go_getter, promoter, nurturer, examiner).
# Counts are expected events per web session; probabilities are per session or per order.
_RATES: dict[str, tuple[float, float, float, float]] = {
    "page_views": (0.5, 1.0, 1.0, 1.2),
    "product_views": (0.3, 1.0, 0.9, 3.0),  # extra views beyond the product(s) in focus
    "searches": (0.2, 0.4, 0.3, 1.1),
    "review_views": (0.06, 0.3, 0.3, 1.4),
    "spec_views": (0.04, 0.12, 0.15, 1.1),
    "compares": (0.02, 0.06, 0.06, 0.6),
    "wishlist_adds": (0.05, 0.55, 0.2, 0.15),
    "shares": (0.02, 0.6, 0.08, 0.04),
    "coupon_tries": (0.12, 0.45, 0.05, 0.05),
    "dwell_s": (18.0, 35.0, 40.0, 70.0),  # mean seconds per page
    "research_sessions": (0.05, 0.3, 0.2, 1.0),  # extra sessions before a purchase
    "deliberation_days": (0.3, 2.0, 2.5, 6.0),  # median lead of those sessions
    "browse_per_year": (1.5, 2.5, 2.0, 2.5),  # sessions without a purchase
}
_CHANCES: dict[str, tuple[float, float, float, float]] = {
    "cart_left": (0.35, 0.3, 0.2, 0.25),  # a browsing session leaves an abandoned cart
    "support": (0.01, 0.01, 0.07, 0.02),
    "newsletter": (0.1, 0.25, 0.6, 0.2),
    "coupon_order": (0.2, 0.35, 0.1, 0.08),
    "new_arrivals": (0.08, 0.6, 0.08, 0.15),  # a product pick prefers new arrivals
    "repeat_item": (0.05, 0.05, 0.55, 0.05),  # an order line is one of the usual products
    "dropout_scale": (1.1, 1.0, 0.45, 1.0),  # multiplies the BG/NBD dropout probability
}
_DEVICE_MIX = np.array(
    [  # desktop, mobile, tablet
        [0.15, 0.78, 0.07],
        [0.25, 0.65, 0.10],
        [0.45, 0.40, 0.15],
        [0.72, 0.18, 0.10],
    ]
)
_SOURCE_MIX = np.array(
    [  # direct, search, social, email, ads
        [0.30, 0.20, 0.12, 0.08, 0.30],
        [0.15, 0.12, 0.50, 0.08, 0.15],
        [0.25, 0.12, 0.08, 0.45, 0.10],
        [0.20, 0.50, 0.05, 0.10, 0.15],
    ]
)
_OWN_WEIGHT = (0.45, 0.85)  # share of a customer's own style in the blend, uniform range
_NOISE_SIGMA = 0.35  # personal lognormal noise on every rate


@dataclass
class Traits:
    """Per-person habits, one array entry per person."""

    style: np.ndarray  # int, index into STYLES
    rates: dict[str, np.ndarray]
    chances: dict[str, np.ndarray]
    device_cdf: np.ndarray  # (n, 3) cumulative device probabilities
    source_cdf: np.ndarray  # (n, 5)


def draw_traits(rng: np.random.Generator, n: int) -> Traits:
    style = rng.integers(0, len(STYLES), n)
    own = rng.uniform(*_OWN_WEIGHT, n)
    weights = rng.dirichlet(np.ones(len(STYLES)), n) * (1 - own)[:, None]
    weights[np.arange(n), style] += own
    rates = {
        name: (weights @ np.array(row)) * rng.lognormal(0.0, _NOISE_SIGMA, n)
        for name, row in _RATES.items()
    }
    chances = {name: weights @ np.array(row) for name, row in _CHANCES.items()}
    return Traits(
        style=style,
        rates=rates,
        chances=chances,
        device_cdf=np.cumsum(weights @ _DEVICE_MIX, axis=1),
        source_cdf=np.cumsum(weights @ _SOURCE_MIX, axis=1),
    )


def draw_from_cdf(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One category per row of a (n, k) cumulative probability matrix."""
    u = rng.random(len(cdf)) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), cdf.shape[1] - 1)
