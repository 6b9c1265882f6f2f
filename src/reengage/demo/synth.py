"""A synthetic shop: customers, products, orders and web events in the generic CSV formats.

Customers are generated in chunks so a million of them fit in a few GiB; each chunk has its own
random stream derived from the seed, so the same seed and arguments give byte-identical files.
Each customer's hidden behavioural style goes to styles.csv, the ground truth for inference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from reengage.demo.catalogue import Catalogue, build_catalogue, catalogue_size
from reengage.demo.columns import DAY, hex_ids, pick, prefixed_ids, scramble
from reengage.demo.events import Events
from reengage.demo.people import Consents, customers_table, draw_consents
from reengage.demo.purchases import (
    PROSPECT_SHARE,
    Orders,
    build_orders,
    draw_tastes,
    simulate_purchase_times,
)
from reengage.demo.sessions import Audience, simulate_events
from reengage.demo.styles import STYLES, draw_traits

CHUNK_CUSTOMERS = 50_000  # bounds memory: about 1 GiB of working arrays per chunk
VISITORS_PER_CUSTOMER = 0.25  # anonymous visitors who never become customers
NEWSLETTER_DELAY_DAYS = 45.0  # mean time from joining to subscribing, for buyers
AFTERLIFE_DAYS = 120.0  # mean time a buyer still browses after their last order
MIN_WINDOW_DAYS = 30

_TYPES = {"": pa.string(), "int": pa.int64(), "money": pa.decimal128(14, 2)}


def _schema(columns: str) -> pa.Schema:
    """A schema from `name[:type] ...`; columns are text unless typed."""
    fields = [column.partition(":") for column in columns.split()]
    return pa.schema([(name, _TYPES[kind]) for name, _, kind in fields])


# The generic import formats of docs/formats.md, column for column.
SCHEMAS = {
    "customers": _schema(
        "customer_id email phone first_name last_name language country city timezone birthday "
        "created_at email_marketing sms_marketing push_marketing consent_source consent_at"
    ),
    "products": _schema(
        "product_id title category brand price:money currency url image_url description "
        "in_stock created_at"
    ),
    "orders": _schema(
        "order_id customer_id ordered_at product_id quantity:int unit_price:money currency "
        "discount:money coupon_code status"
    ),
    "events": _schema(
        "event_id customer_id anonymous_id type occurred_at product_id session_id source device "
        "duration_s:int properties"
    ),
    "styles": _schema("customer_id style"),
}


@dataclass(frozen=True)
class ShopFiles:
    customers: Path
    products: Path
    orders: Path
    events: Path
    styles: Path
    counts: dict[str, int]  # rows written per file; "orders" counts order lines


def observation_window(end: date, years: float = 2.0) -> tuple[datetime, datetime]:
    """[start, stop): the `years` before midnight UTC at the start of `end`."""
    stop = datetime.combine(end, time(), tzinfo=UTC)
    return stop - timedelta(seconds=round(years * 365.25 * DAY)), stop


def generate_shop(
    out_dir: Path,
    customers: int,
    seed: int,
    end: date,
    years: float = 2.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> ShopFiles:
    """Write customers.csv, products.csv, orders.csv, events.csv and styles.csv into out_dir.

    Every timestamp lies in `observation_window(end, years)`: the `years` (of 365.25 days)
    before 00:00 UTC on `end`, so nothing happens on `end` itself. Files already in out_dir
    are overwritten. progress(stage, done, total) is called for "products", then after each
    chunk of "customers".
    """
    if customers < 1:
        raise ValueError("a shop needs at least one customer")
    if years * 365.25 < MIN_WINDOW_DAYS:
        raise ValueError(f"the history must cover at least {MIN_WINDOW_DAYS} days")
    report = progress or (lambda _stage, _done, _total: None)
    window = observation_window(end, years)
    start, stop = (int(moment.timestamp()) for moment in window)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in SCHEMAS}
    entropy = seed % 2**64  # SeedSequence wants a non-negative number; negative seeds are fine

    n_products = catalogue_size(customers)
    report("products", 0, n_products)
    catalogue = build_catalogue(_rng(entropy, 0), n_products, start, stop)
    _write(paths["products"], "products", [catalogue.table()])
    report("products", n_products, n_products)

    widths = _IdWidths.for_shop(customers)
    counts = {"customers": 0, "products": n_products, "orders": 0, "events": 0, "styles": 0}
    next_order = next_session = next_event = 1
    writers = {name: _writer(paths[name], name) for name in ("customers", "orders", "events")}
    writers["styles"] = _writer(paths["styles"], "styles")
    try:
        report("customers", 0, customers)
        for chunk, first in enumerate(range(0, customers, CHUNK_CUSTOMERS)):
            n = min(CHUNK_CUSTOMERS, customers - first)
            shop = _simulate_chunk(_rng(entropy, 1, chunk), n, catalogue, start, stop)
            numbers = np.arange(first + 1, first + n + 1)
            customer_ids = prefixed_ids("C", numbers, widths.customer)
            # Visitors after all customers; each chunk's visitors are fewer than its customers,
            # so numbering them from customers + first keeps every cookie distinct.
            people = np.concatenate([numbers, customers + first + np.arange(1, shop.visitors + 1)])
            cookies = hex_ids("a-", scramble(people, entropy))
            tables = {
                "customers": customers_table(
                    shop.rng, numbers, widths.customer, shop.created_at, shop.consents, stop
                ),
                "orders": shop.orders.table(next_order, widths.order, customer_ids, catalogue),
                "events": shop.events.table(
                    next_event, next_session, widths.event, customer_ids, cookies, catalogue
                ),
                "styles": pa.table({"customer_id": customer_ids, "style": shop.styles}),
            }
            for name, table in tables.items():
                writers[name].write_table(table.cast(SCHEMAS[name]))
                counts[name] += table.num_rows
            next_order += len(shop.orders)
            next_session += shop.events.sessions
            next_event += len(shop.events)
            del shop, tables
            report("customers", first + n, customers)
    finally:
        for writer in writers.values():
            writer.close()
    return ShopFiles(**paths, counts=counts)


@dataclass
class _Chunk:
    """The simulated life of one chunk of customers (and some anonymous visitors)."""

    rng: np.random.Generator  # the chunk's stream, to go on drawing from
    visitors: int
    orders: Orders
    events: Events
    created_at: np.ndarray
    consents: Consents
    styles: pa.Array


def _simulate_chunk(
    rng: np.random.Generator, n: int, catalogue: Catalogue, start: int, stop: int
) -> _Chunk:
    n_visitors = round(n * VISITORS_PER_CUSTOMER)
    people = n + n_visitors
    traits = draw_traits(rng, people)
    tastes = draw_tastes(rng, people, catalogue, start)
    buyer = rng.random(n) >= PROSPECT_SHARE
    joined = rng.integers(start + 2 * DAY, stop - DAY, n)
    buyers = np.flatnonzero(buyer)
    who, when = simulate_purchase_times(
        rng, joined[buyers], traits.chances["dropout_scale"][buyers], start, stop
    )
    orders = build_orders(rng, buyers[who], when, traits, tastes, catalogue)

    # Buyers keep visiting for a while after their last order; prospects until the end.
    last_order = np.full(people, -1, dtype=np.int64)
    np.maximum.at(last_order, orders.person, orders.at)
    afterlife = (rng.exponential(AFTERLIFE_DAYS, people) * DAY).astype(np.int64)
    active_until = np.where(last_order >= 0, last_order + afterlife, stop - 1)
    # Prospects mostly joined through the newsletter form; buyers may subscribe later.
    subscribes = rng.random(n) < traits.chances["newsletter"][:n]
    delay = (rng.exponential(NEWSLETTER_DELAY_DAYS, n) * DAY).astype(np.int64)
    newsletter_at = np.where(buyer, joined + delay, joined)
    newsletter_at = np.where(subscribes & (newsletter_at < stop - DAY), newsletter_at, -1)
    no_one = np.full(n_visitors, -1, dtype=np.int64)
    audience = Audience(
        customers=n,
        joined=np.concatenate([joined, no_one]),
        active_until=np.minimum(active_until, stop - 1),
        newsletter_at=np.concatenate([newsletter_at, no_one]),
    )
    events = simulate_events(rng, audience, traits, tastes, orders, catalogue, start, stop)
    created_at = events.customer_since
    return _Chunk(
        rng=rng,
        visitors=n_visitors,
        orders=orders,
        events=events,
        created_at=created_at,
        consents=draw_consents(rng, buyer, created_at, events.subscribed_at[:n]),
        styles=pick(STYLES, traits.style[:n]),
    )


class _IdWidths(NamedTuple):
    """Digits of the numeric part of each id, enough for any plausible shop of that size."""

    customer: int
    order: int
    event: int  # also for sessions

    @classmethod
    def for_shop(cls, customers: int) -> _IdWidths:
        digits = len(str(customers))
        return cls(customer=max(7, digits), order=max(8, digits + 3), event=max(10, digits + 4))


def _rng(entropy: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))


def _writer(path: Path, name: str) -> pacsv.CSVWriter:
    return pacsv.CSVWriter(
        path, SCHEMAS[name], write_options=pacsv.WriteOptions(quoting_header="none")
    )


def _write(path: Path, name: str, tables: list[pa.Table]) -> None:
    with _writer(path, name) as writer:
        for table in tables:
            writer.write_table(table.cast(SCHEMAS[name]))
