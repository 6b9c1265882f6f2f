"""When customers buy and what: a buy-till-you-die (BG/NBD) process, then the order lines.

Each buyer has a purchase rate lambda ~ Gamma(r, alpha) and a dropout probability
p ~ Beta(a, b). The first purchase happens when they join; while alive, the gaps between
purchases are exponential(lambda), and after every repeat purchase they drop out with
probability p (as in Fader, Hardie & Lee 2005, where a customer is always alive right after
the first purchase). The process is simulated one transaction at a time for all customers at
once, so its cost grows with the longest purchase history, not with the number of customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from reengage.demo.catalogue import CATEGORY_WEIGHTS, N_CATEGORIES, Catalogue
from reengage.demo.columns import (
    DAY,
    civil_from_days,
    iso_timestamps,
    money,
    pick,
    prefixed_ids,
    take,
)
from reengage.demo.styles import PROMOTER, Traits

# Calibrated for about 10 order lines per customer over two years, with a long tail.
PURCHASE_SHAPE_R = 0.3
PURCHASE_SCALE_ALPHA = 2.8  # days
DROPOUT_A = 0.8
DROPOUT_B = 2.5
MAX_RATE_PER_DAY = 0.3  # trims the Gamma tail: nobody orders every other day for two years
PROSPECT_SHARE = 0.2  # customers who sign up but never buy

LINES_PER_ORDER = ((1, 2, 3, 4), (0.45, 0.3, 0.15, 0.1))
QUANTITY = ((1, 2, 3), (0.82, 0.13, 0.05))
FAVOURITE_SHARE = 0.75  # order lines from the customer's favourite categories
FAVOURITE_PRODUCTS = 3  # "the usual": products a customer keeps coming back to

COUPONS = ("WELCOME10", "FRIEND10", "FLASH10", "SPRING15", "SUMMER20", "BLACKFRIDAY25", "XMAS15")
COUPON_PERCENT = np.array([10, 10, 10, 15, 20, 25, 15])
WELCOME, FRIEND, FLASH = 0, 1, 2
# The seasonal code by calendar month (index 0 unused).
SEASONAL_COUPON = np.array([0, 2, 2, 3, 3, 3, 4, 4, 4, 2, 2, 5, 6])
STATUSES = ("paid", "refunded", "cancelled")
STATUS_SHARES = (0.93, 0.04, 0.03)


@dataclass
class Tastes:
    """What a person likes: 1-2 favourite categories and a few usual products."""

    favourite: np.ndarray  # (n, 2) category indices; column 1 is -1 when there is only one
    usual: np.ndarray  # (n, FAVOURITE_PRODUCTS) product indices

    def category(self, rng: np.random.Generator, person: np.ndarray) -> np.ndarray:
        """A category per request: mostly a favourite, sometimes anything."""
        fav = self.favourite[person]
        second = (fav[:, 1] >= 0) & (rng.random(len(person)) < 0.35)
        chosen = np.where(second, fav[:, 1], fav[:, 0])
        other = rng.choice(N_CATEGORIES, len(person), p=CATEGORY_WEIGHTS)
        return np.where(rng.random(len(person)) < FAVOURITE_SHARE, chosen, other)


def draw_tastes(rng: np.random.Generator, n: int, catalogue: Catalogue, start: int) -> Tastes:
    favourite = rng.choice(N_CATEGORIES, (n, 2), p=CATEGORY_WEIGHTS)
    favourite[:, 1] = np.where(
        (rng.random(n) < 0.5) & (favourite[:, 1] != favourite[:, 0]), favourite[:, 1], -1
    )
    tastes = Tastes(favourite=favourite, usual=np.empty((n, 0), dtype=np.int64))
    # The usual products come from the opening range, so they can be bought at any time.
    k = FAVOURITE_PRODUCTS
    person = np.repeat(np.arange(n), k)
    usual = catalogue.pick(
        rng, tastes.category(rng, person), np.full(n * k, start), np.zeros(n * k, dtype=bool)
    )
    tastes.usual = usual.reshape(n, k)
    return tastes


@dataclass
class Orders:
    """One chunk's orders (sorted by time) and their lines (sorted by order)."""

    person: np.ndarray  # per order: local person index
    at: np.ndarray  # per order: unix seconds
    first: np.ndarray  # per order: the customer's first order
    coupon: np.ndarray  # per order: index into COUPONS, -1 for none
    status: np.ndarray  # per order: index into STATUSES
    value_cents: np.ndarray  # per order: what the customer paid
    line_start: np.ndarray  # per order: index of its first line
    line_count: np.ndarray
    line_order: np.ndarray  # per line
    line_product: np.ndarray
    line_quantity: np.ndarray
    line_discount_cents: np.ndarray

    def __len__(self) -> int:
        return len(self.at)

    def table(
        self, first_number: int, id_width: int, customer_ids: pa.Array, catalogue: Catalogue
    ) -> pa.Table:
        """orders.csv rows; order ids are numbered from first_number in time order."""
        order = self.line_order
        n = len(order)
        return pa.table(
            {
                "order_id": prefixed_ids("O", first_number + order, id_width),
                "customer_id": take(customer_ids, self.person[order]),
                "ordered_at": iso_timestamps(self.at[order]),
                "product_id": take(catalogue.ids, self.line_product),
                "quantity": pa.array(self.line_quantity),
                "unit_price": money(catalogue.price_cents[self.line_product]),
                "currency": pa.array(["EUR"] * n, type=pa.string()),
                "discount": money(self.line_discount_cents),
                "coupon_code": pick(COUPONS, self.coupon[order]),
                "status": pick(STATUSES, self.status[order]),
            }
        )


def simulate_purchase_times(
    rng: np.random.Generator,
    buyer_joined: np.ndarray,
    dropout_scale: np.ndarray,
    start: int,
    end: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(buyer index, unix seconds) of every purchase; buyers join at buyer_joined (seconds)."""
    n = len(buyer_joined)
    rate = np.minimum(rng.gamma(PURCHASE_SHAPE_R, 1 / PURCHASE_SCALE_ALPHA, n), MAX_RATE_PER_DAY)
    dropout = np.clip(rng.beta(DROPOUT_A, DROPOUT_B, n) * dropout_scale, 0.0, 1.0)
    horizon = (end - start) / DAY
    alive = np.arange(n)
    t = (buyer_joined - start) / DAY
    who, when = [alive], [t]
    while len(alive):
        t = t + rng.exponential(1.0, len(alive)) / rate[alive]
        inside = t < horizon
        alive, t = alive[inside], t[inside]
        who.append(alive)
        when.append(t)
        stays = rng.random(len(alive)) >= dropout[alive]
        alive, t = alive[stays], t[stays]
    seconds = start + np.floor(np.concatenate(when) * DAY).astype(np.int64)
    return np.concatenate(who), np.minimum(seconds, end - 1)


def build_orders(
    rng: np.random.Generator,
    person: np.ndarray,
    at: np.ndarray,
    traits: Traits,
    tastes: Tastes,
    catalogue: Catalogue,
) -> Orders:
    """Orders for purchases (person, unix seconds), with their lines, coupons and status."""
    by_time = np.lexsort((person, at))
    person, at = person[by_time], at[by_time]
    n = len(at)
    first = np.ones(n, dtype=bool)
    seen = np.lexsort((at, person))  # each person's orders, oldest first
    first[seen[1:]] = person[seen[1:]] != person[seen[:-1]]

    lines = rng.choice(LINES_PER_ORDER[0], n, p=LINES_PER_ORDER[1])
    line_order = np.repeat(np.arange(n), lines)
    line_person = person[line_order]
    m = len(line_order)
    usual = rng.random(m) < traits.chances["repeat_item"][line_person]
    prefer_new = rng.random(m) < traits.chances["new_arrivals"][line_person]
    # A day's margin: the purchase session before the order must already see the product.
    picked = catalogue.pick(
        rng, tastes.category(rng, line_person), at[line_order] - DAY, prefer_new
    )
    nth_usual = rng.integers(0, FAVOURITE_PRODUCTS, m)
    product = np.where(usual, tastes.usual[line_person, nth_usual], picked)

    # The same product twice in one order is one line.
    key = line_order * len(catalogue) + product
    _, keep = np.unique(key, return_index=True)
    line_order, product = line_order[keep], product[keep]
    m = len(line_order)
    line_count = np.bincount(line_order, minlength=n)
    line_start = np.cumsum(line_count) - line_count

    coupon = _coupons(rng, person, at, first, traits)
    quantity = rng.choice(QUANTITY[0], m, p=QUANTITY[1])
    gross = catalogue.price_cents[product] * quantity
    percent = np.where(coupon >= 0, COUPON_PERCENT[coupon], 0)[line_order]
    discount = np.round(gross * percent / 100).astype(np.int64)
    return Orders(
        person=person,
        at=at,
        first=first,
        coupon=coupon,
        status=rng.choice(len(STATUSES), n, p=STATUS_SHARES),
        value_cents=np.rint(np.bincount(line_order, gross - discount, minlength=n)).astype(
            np.int64
        ),
        line_start=line_start,
        line_count=line_count,
        line_order=line_order,
        line_product=product,
        line_quantity=quantity,
        line_discount_cents=discount,
    )


def _coupons(
    rng: np.random.Generator,
    person: np.ndarray,
    at: np.ndarray,
    first: np.ndarray,
    traits: Traits,
) -> np.ndarray:
    """Which coupon each order used, if any: welcome codes first, referrals, then the season's."""
    n = len(at)
    used = rng.random(n) < traits.chances["coupon_order"][person]
    _, month, _ = civil_from_days(at // DAY)
    u = rng.random(n)
    code = np.where(
        first & (u < 0.6),
        WELCOME,
        np.where((traits.style[person] == PROMOTER) & (u < 0.3), FRIEND, SEASONAL_COUPON[month]),
    )
    return np.where(used, code, -1)
