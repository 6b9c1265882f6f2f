"""The shop's catalogue: a few hundred to a few thousand products in eight categories.

Most of the range is there from the first day of history; the rest arrives over time, with a
burst of new arrivals in the last months (which Promoters go for).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from reengage.demo.columns import DAY, iso_timestamps, money, pick, prefixed_ids


@dataclass(frozen=True)
class Category:
    name: str
    weight: float  # share of the catalogue and of shoppers' favourites
    median_price: float  # euros; prices are lognormal around it
    price_sigma: float
    brands: tuple[str, ...]
    kinds: tuple[str, ...]
    variants: tuple[str, ...]
    searches: tuple[str, ...]
    blurbs: tuple[str, ...]


CATEGORIES = (
    Category(
        "shoes", 1.3, 85.0, 0.45,
        ("Alpina", "Corsa", "Nordvik", "Passo", "Brume"),
        ("Trail running shoe", "Leather sneaker", "Suede loafer", "Hiking boot",
         "Canvas trainer", "Chelsea boot", "Sandal"),
        tuple(str(size) for size in range(36, 47)),
        ("running shoes", "red shoes", "white sneakers", "waterproof boots", "sandals"),
        ("Cushioned sole for long days.", "Made with recycled materials.",
         "Grippy outsole for wet trails."),
    ),
    Category(
        "clothing", 1.6, 45.0, 0.55,
        ("Nordvik", "Linea", "Maison Brume", "Tessa", "Oakfield"),
        ("Merino crew jumper", "Linen shirt", "Denim jacket", "Cotton T-shirt",
         "Rain jacket", "Chino trousers", "Knitted cardigan"),
        ("XS", "S", "M", "L", "XL"),
        ("linen shirt", "rain jacket", "merino jumper", "black t-shirt", "summer dress"),
        ("Relaxed fit.", "Soft organic cotton.", "Machine washable at 30 degrees."),
    ),
    Category(
        "bags", 0.8, 95.0, 0.5,
        ("Borsa Viva", "Oakfield", "Linea", "Carryall Co"),
        ("Leather tote", "Weekend duffel", "Laptop backpack", "Crossbody bag", "Card wallet"),
        ("black", "tan", "navy", "olive", "burgundy"),
        ("leather bag", "laptop backpack", "small wallet", "travel duffel"),
        ("Full-grain leather that ages well.", "Padded laptop sleeve.", "Fits cabin limits."),
    ),
    Category(
        "electronics", 1.0, 140.0, 0.8,
        ("Voltix", "Sonora", "Pixelo", "Lumo"),
        ("Wireless earbuds", "Noise-cancelling headphones", "Smart watch", "Bluetooth speaker",
         "Power bank", "E-reader", "Action camera"),
        ("X1", "X2", "Pro", "Mini", "Max", "S"),
        ("wireless headphones", "smart watch", "bluetooth speaker", "usb-c charger"),
        ("Up to 30 hours of battery.", "Two-year warranty.", "Charges over USB-C."),
    ),
    Category(
        "home", 1.0, 38.0, 0.6,
        ("Casa Serena", "Hygge Lab", "Terracotta", "Oakfield"),
        ("Ceramic mug set", "Linen duvet cover", "Scented candle", "Cast-iron pan",
         "Wool throw", "Table lamp"),
        ("white", "sage", "sand", "charcoal", "terracotta"),
        ("scented candle", "duvet cover", "coffee mugs", "table lamp"),
        ("Dishwasher safe.", "Hand-finished in small batches.", "Stonewashed for softness."),
    ),
    Category(
        "beauty", 1.1, 24.0, 0.5,
        ("Lumière", "Verde Bio", "Aqualis", "Rosa Nera"),
        ("Hydrating face cream", "Vitamin C serum", "Shampoo bar", "Eau de parfum",
         "Lip balm", "Body lotion"),
        ("30 ml", "50 ml", "100 ml", "200 ml"),
        ("face cream", "vitamin c serum", "natural shampoo", "perfume"),
        ("Dermatologically tested.", "Vegan formula.", "Fragrance free."),
    ),
    Category(
        "sports", 0.8, 55.0, 0.65,
        ("Kaizen", "Alpina", "Vento", "Corsa"),
        ("Yoga mat", "Cycling jersey", "Running belt", "Resistance bands", "Water bottle",
         "Trekking poles"),
        ("blue", "black", "lime", "grey", "orange"),
        ("yoga mat", "cycling jersey", "water bottle", "trekking poles"),
        ("Lightweight and packable.", "Quick-dry fabric.", "Non-slip surface."),
    ),
    Category(
        "books", 0.9, 16.0, 0.4,
        ("Penna Press", "Northlight Books", "Atelier Editions"),
        ("Italian cookbook", "Travel guide", "Thriller novel", "Gardening handbook",
         "Photography manual", "Children's picture book"),
        ("hardcover", "paperback", "2nd edition", "illustrated"),
        ("cookbook", "travel guide", "crime novel", "gardening book"),
        ("A reader favourite.", "With over 200 photographs.", "Shortlisted for a prize."),
    ),
)  # fmt: skip
N_CATEGORIES = len(CATEGORIES)
CATEGORY_WEIGHTS = np.array([c.weight for c in CATEGORIES]) / sum(c.weight for c in CATEGORIES)
NEW_ARRIVAL_DAYS = 90  # how long a product counts as a new arrival
SHOP_URL = "https://shop.example.com"


def catalogue_size(customers: int) -> int:
    return min(5000, 200 + customers // 1000)


@dataclass
class Catalogue:
    """Products sorted by created_at: index i is product id P{i+1}."""

    category: np.ndarray
    price_cents: np.ndarray
    created_at: np.ndarray  # unix seconds
    titles: list[str]
    descriptions: list[str]
    brands: list[str]
    in_stock: np.ndarray  # bool
    ids: pa.Array
    # Products grouped by category (then created_at), for picking by category and time.
    grouped: np.ndarray  # category c is grouped[bounds[c]:bounds[c + 1]]
    bounds: np.ndarray
    cum_popularity: np.ndarray  # per category, cumulative popularity with a leading 0

    def __len__(self) -> int:
        return len(self.category)

    def pick(
        self,
        rng: np.random.Generator,
        category: np.ndarray,
        at: np.ndarray,
        prefer_new: np.ndarray,
    ) -> np.ndarray:
        """A product per request, from its category, already in the catalogue at time `at`.

        Popular products are picked more often; where prefer_new is set, the pick is among the
        new arrivals of the moment when there are any.
        """
        out = np.empty(len(category), dtype=np.int64)
        for c in range(N_CATEGORIES):
            rows = np.flatnonzero(category == c)
            if not len(rows):
                continue
            lo_b, hi_b = self.bounds[c], self.bounds[c + 1]
            created = self.created_at[self.grouped[lo_b:hi_b]]
            cum = self.cum_popularity[lo_b + c : hi_b + c + 1]
            t = at[rows]
            # The first product of every category exists from the window's start: hi >= 1.
            hi = np.searchsorted(created, t, side="right")
            lo_new = np.searchsorted(created, t - NEW_ARRIVAL_DAYS * DAY, side="left")
            lo = np.where(prefer_new[rows] & (hi > lo_new), lo_new, 0)
            target = cum[lo] + rng.random(len(rows)) * (cum[hi] - cum[lo])
            k = np.clip(np.searchsorted(cum, target, side="right") - 1, lo, hi - 1)
            out[rows] = self.grouped[lo_b + k]
        return out

    def table(self) -> pa.Table:
        ids = self.ids.to_pylist()
        return pa.table(
            {
                "product_id": self.ids,
                "title": pa.array(self.titles, type=pa.string()),
                "category": pick([c.name for c in CATEGORIES], self.category),
                "brand": pa.array(self.brands, type=pa.string()),
                "price": money(self.price_cents),
                "currency": pa.array(["EUR"] * len(self), type=pa.string()),
                "url": pa.array([f"{SHOP_URL}/p/{i}" for i in ids], type=pa.string()),
                "image_url": pa.array([f"{SHOP_URL}/img/{i}.jpg" for i in ids], type=pa.string()),
                "description": pa.array(self.descriptions, type=pa.string()),
                "in_stock": pick(["no", "yes"], self.in_stock.astype(np.int64)),
                "created_at": iso_timestamps(self.created_at),
            }
        )


def build_catalogue(rng: np.random.Generator, n: int, start: int, end: int) -> Catalogue:
    """n products (n >= 8 x 3) created between start and end (unix seconds)."""
    # A few of each category first, so no category is ever empty.
    category = np.concatenate(
        [
            np.repeat(np.arange(N_CATEGORIES), 3),
            rng.choice(N_CATEGORIES, n - 3 * N_CATEGORIES, p=CATEGORY_WEIGHTS),
        ]
    )
    when = rng.random(n)
    created = np.where(
        when < 0.6,  # the range on sale from the first day
        start + rng.integers(0, DAY, n),
        np.where(
            when < 0.88,  # arrivals over the whole window
            rng.integers(start, end, n),
            end - rng.integers(1, 90 * DAY, n),  # the recent new arrivals
        ),
    )
    created[: N_CATEGORIES * 3 : 3] = start
    created = np.clip(created, start, end - 1)
    order = np.lexsort((category, created))
    category, created = category[order], created[order]

    medians = np.array([c.median_price for c in CATEGORIES])[category]
    sigmas = np.array([c.price_sigma for c in CATEGORIES])[category]
    euros = np.maximum(np.floor(medians * rng.lognormal(0.0, sigmas)), 3.0)
    endings = np.array([99, 90, 0, 50])[rng.choice(4, n, p=[0.55, 0.2, 0.15, 0.1])]
    price_cents = (euros * 100 + endings).astype(np.int64)

    titles: list[str] = []
    descriptions: list[str] = []
    brands: list[str] = []
    for cat_index in category:
        cat = CATEGORIES[cat_index]
        kind = cat.kinds[rng.integers(len(cat.kinds))]
        brand = cat.brands[rng.integers(len(cat.brands))]
        variant = cat.variants[rng.integers(len(cat.variants))]
        blurb = cat.blurbs[rng.integers(len(cat.blurbs))]
        titles.append(f"{kind} {brand} {variant}")
        descriptions.append(f"{kind} by {brand}, {variant}. {blurb}")
        brands.append(brand)

    popularity = rng.lognormal(0.0, 1.0, n)
    by_category = np.lexsort((created, category))
    bounds = np.searchsorted(category[by_category], np.arange(N_CATEGORIES + 1))
    cum = np.concatenate(
        [
            np.concatenate([[0.0], np.cumsum(popularity[by_category[lo:hi]])])
            for lo, hi in itertools.pairwise(bounds)
        ]
    )
    return Catalogue(
        category=category,
        price_cents=price_cents,
        created_at=created,
        titles=titles,
        descriptions=descriptions,
        brands=brands,
        in_stock=rng.random(n) < 0.92,
        ids=prefixed_ids("P", np.arange(1, n + 1), 5),
        grouped=by_category,
        bounds=bounds,
        cum_popularity=cum,
    )
