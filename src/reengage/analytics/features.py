"""Customer features as of a date, written once as Ibis expressions.

The same expressions run on DuckDB over the local facts and on PySpark over the same Parquet
dataset when the facts outgrow one machine. Nothing that happened at or after `as_of` is seen,
so a past date reproduces the shop as it stood then (whenever the facts were imported; the
import time only decides which status of a re-imported order is the latest).

Definitions (times in days, amounts in the orders' currency):
- an *order* counts when its latest-ingested status is not cancelled or refunded; its value is
  the sum of its lines' quantity x unit price - discount;
- a *purchase day* is a day with at least one order (several orders on one day are one
  purchase, as in the buy-till-you-die literature);
- frequency = purchase days - 1 (repeat purchase days); recency = days since the last order;
  tenure = days since the first order; monetary = mean order value;
- inter-purchase times are the gaps between consecutive purchase days (median and 90th pct);
- trends compare the last `window_days` with the `window_days` before: spend_trend and
  frequency_trend are (recent - previous) / (previous + 1), so a customer who stopped scores
  near -1 and one who accelerated scores above 0.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import ibis
import ibis.expr.types as ir

DAY = 86400.0
VOID_STATUSES = ("cancelled", "refunded")
MESSAGE_TYPES = {
    "email": ("email_open", "email_click"),
    "sms": ("sms_click",),
    "push": ("push_click",),
}


def _days_before(as_of: datetime, column: ir.TimestampValue) -> ir.FloatingValue:
    return (ibis.literal(as_of.timestamp()) - column.epoch_seconds().cast("float64")) / DAY


def _latest_status(seen: ir.Table) -> ir.Table:
    """order_id and the status of its most recently ingested line: a refund re-imports the
    lines with a new status, and the latest one wins."""
    return seen.group_by("order_id").aggregate(order_status=seen.status.argmax(seen.ingested_at))


def valid_lines(orders: ir.Table, as_of: datetime) -> ir.Table:
    """Order lines before as_of whose order's latest status is not cancelled or refunded."""
    seen = orders.filter(orders.ordered_at < as_of)
    status = _latest_status(seen)
    lines = seen.join(status, "order_id")
    lines = lines.filter(~lines.order_status.isin(VOID_STATUSES))
    # the earlier copy of a re-imported line (same order, product, quantity, price) goes too
    return lines.filter(lines.status == lines.order_status)


def orders_as_of(orders: ir.Table, as_of: datetime) -> ir.Table:
    """One row per valid order before as_of: customer_id, order_id, ordered_at, value, lines
    and status (its latest).

    The same orders as grouping valid_lines, in two aggregations instead of a join: the lines
    of each order and status first, then per order the group of its latest status.
    """
    seen = orders.filter(orders.ordered_at < as_of)
    groups = seen.group_by(["order_id", "status"]).aggregate(
        customer_id=seen.customer_id.max(),
        ordered_at=seen.ordered_at.min(),
        value=(seen.quantity * seen.unit_price - seen.discount).sum(),
        lines=seen.count(),
        ingested_at=seen.ingested_at.max(),
    )
    latest = groups.group_by("order_id").aggregate(
        # one struct, so every field comes from the same group even when two tie
        order=ibis.struct(
            {
                "status": groups.status,
                "customer_id": groups.customer_id,
                "ordered_at": groups.ordered_at,
                "value": groups.value,
                "lines": groups.lines,
            }
        ).argmax(groups.ingested_at)
    )
    order = latest.order
    valid = latest.filter(~order.status.isin(VOID_STATUSES))
    order = valid.order
    return valid.select(
        customer_id=order.customer_id,
        order_id=valid.order_id,
        ordered_at=order.ordered_at,
        value=order.value,
        lines=order.lines,
        status=order.status,
    )


@dataclass(frozen=True)
class Purchases:
    """The valid orders before as_of (orders_as_of) and the purchase days they make
    (customer_id, day, at: the day's first order, value: the day's total, gap: days since the
    customer's previous purchase day, null for the first): what every
    order-based feature, the purchase gaps and the BTYD summary read.

    `purchases(..., cache=True)` materialises both once, so a scoring run reads the order
    lines a single time however many features it derives from them.
    """

    as_of: datetime
    orders: ir.Table
    days: ir.Table


def purchases(orders: ir.Table, as_of: datetime, *, cache: bool = False) -> Purchases:
    o = orders_as_of(orders, as_of)
    if cache:
        o = _materialise(o)
    days = o.group_by(["customer_id", o.ordered_at.date().name("day")]).aggregate(
        at=o.ordered_at.min(), value=o.value.sum()
    )
    previous = days.at.lag().over(group_by=days.customer_id, order_by=days.at)
    days = days.mutate(
        gap=(days.at.epoch_seconds().cast("float64") - previous.epoch_seconds().cast("float64"))
        / DAY
    )
    if cache:
        days = _materialise(days)
    return Purchases(as_of, o, days)


def _materialise(t: ir.Table) -> ir.Table:
    """t computed once into a temporary table of its backend, gone with the connection.

    (Ibis's own .cache() cannot release its tables on DuckDB 2: its DROP fails to compile.)
    """
    backend = t._find_backend()
    return backend.create_table(f"_reengage_{uuid.uuid4().hex}", t, temp=True)


def purchase_features(p: Purchases, window_days: int = 90) -> ir.Table:
    """Recency, frequency, monetary, tenure, inter-purchase times and trends per customer."""
    as_of, o = p.as_of, p.orders
    gaps = p.days
    ipt = gaps.group_by("customer_id").aggregate(
        purchase_days=gaps.count(),
        ipt_median_days=gaps.gap.median(),
        ipt_p90_days=gaps.gap.quantile(0.9),
        # the pause before the latest purchase: a long one means the customer came back
        last_gap_days=gaps.gap.argmax(gaps.at),
    )
    age = _days_before(as_of, o.ordered_at)
    recent = age < window_days
    previous = (age >= window_days) & (age < 2 * window_days)
    totals = o.group_by("customer_id").aggregate(
        orders=o.count(),
        total_spent=o.value.sum(),
        monetary=o.value.mean(),
        first_order_at=o.ordered_at.min(),
        last_order_at=o.ordered_at.max(),
        recent_spent=o.value.sum(where=recent),
        previous_spent=o.value.sum(where=previous),
        recent_orders=o.count(where=recent),
        previous_orders=o.count(where=previous),
    )
    t = _attach(
        _attach(
            totals.join(ipt, "customer_id"),
            _most_frequent(o, "preferred_weekday", o.ordered_at.day_of_week.index()),
        ),
        _most_frequent(o, "preferred_hour", o.ordered_at.hour()),
    )
    recent_spent = t.recent_spent.fill_null(0)
    previous_spent = t.previous_spent.fill_null(0)
    return t.select(
        "customer_id",
        "orders",
        "purchase_days",
        frequency=t.purchase_days - 1,
        recency_days=_days_before(as_of, t.last_order_at),
        tenure_days=_days_before(as_of, t.first_order_at),
        total_spent=t.total_spent,
        monetary=t.monetary,
        ipt_median_days=t.ipt_median_days,
        ipt_p90_days=t.ipt_p90_days,
        last_gap_days=t.last_gap_days,
        spend_trend=(recent_spent - previous_spent) / (previous_spent + 1.0),
        frequency_trend=(t.recent_orders - t.previous_orders).cast("float64")
        / (t.previous_orders.cast("float64") + 1.0),
        first_order_at=t.first_order_at,
        last_order_at=t.last_order_at,
        preferred_weekday=t.preferred_weekday,
        preferred_hour=t.preferred_hour,
    )


def _most_frequent(t: ir.Table, name: str, value: ir.Value) -> ir.Table:
    """customer_id and the value seen most often (the smallest on a tie): a portable mode.
    value is a small whole number (a weekday, an hour), so count * 1000 - value ranks both."""
    counted = t.mutate(_v=value).group_by(["customer_id", "_v"]).aggregate(_n=lambda x: x.count())
    rank = counted._n.cast("int64") * 1000 - counted._v.cast("int64")
    return counted.group_by("customer_id").aggregate(**{name: counted._v.argmax(rank)})


def activity_features(events: ir.Table, as_of: datetime, window_days: int = 90) -> ir.Table:
    """Last activity, sessions and message engagement per channel in the last window."""
    e = events.filter(events.occurred_at < as_of, events.customer_id.notnull())
    recent = _days_before(as_of, e.occurred_at) < window_days
    engagement = {
        f"{channel}_engagements": e.count(where=recent & e.type.isin(types))
        for channel, types in MESSAGE_TYPES.items()
    }
    return e.group_by("customer_id").aggregate(
        last_event_at=e.occurred_at.max(),
        sessions=e.session_id.nunique(),
        **engagement,
    )


def category_affinity(orders: ir.Table, p: Purchases, products: ir.Table) -> ir.Table:
    """Each customer's favourite category (by spend) and its share of their spend."""
    seen = orders.filter(orders.ordered_at < p.as_of)
    o = seen.join(p.orders.select("order_id", order_status=p.orders.status), "order_id")
    # the lines of the order's latest status: an earlier copy of a re-imported line goes
    o = o.filter(o.status == o.order_status)
    lines = o.join(products.select("product_id", "category"), "product_id")
    spend = lines.group_by(["customer_id", "category"]).aggregate(
        spent=(lines.quantity * lines.unit_price - lines.discount).sum()
    )
    ranked = spend.mutate(
        _rank=ibis.row_number().over(
            group_by=spend.customer_id, order_by=[ibis.desc(spend.spent), spend.category]
        ),
        _total=spend.spent.sum().over(group_by=spend.customer_id),
    )
    top = ranked.filter(ranked._rank == 0)
    return top.select(
        "customer_id",
        top_category=top.category,
        top_category_share=ibis.ifelse(top._total > 0, top.spent / top._total, ibis.null()),
    )


def open_carts(events: ir.Table, p: Purchases, products: ir.Table) -> ir.Table:
    """What each customer put in the cart since their last order and did not take out."""
    e = events.filter(
        events.occurred_at < p.as_of,
        events.customer_id.notnull(),
        events.type.isin(("add_to_cart", "remove_from_cart")),
        events.product_id.notnull(),
    )
    last_order = p.orders.group_by("customer_id").aggregate(
        last_order_at=lambda t: t.ordered_at.max()
    )
    e = _attach(e, last_order)
    e = e.filter(e.last_order_at.isnull() | (e.occurred_at > e.last_order_at))
    per_product = e.group_by(["customer_id", "product_id"]).aggregate(
        added=e.occurred_at.max(where=e.type == "add_to_cart"),
        removed=e.occurred_at.max(where=e.type == "remove_from_cart"),
    )
    held = per_product.filter(
        per_product.added.notnull()
        & (per_product.removed.isnull() | (per_product.removed < per_product.added))
    )
    prices = products.select("product_id", "price")
    priced = held.left_join(prices, held.product_id == prices.product_id).select(
        *[held[c] for c in held.columns], prices.price
    )
    return priced.group_by("customer_id").aggregate(
        cart_items=priced.count(),
        cart_since=priced.added.min(),
        cart_value=priced.price.cast("float64").sum(),
        cart_products=priced.product_id.collect(),
    )


def _attach(left: ir.Table, right: ir.Table, key: str = "customer_id") -> ir.Table:
    """Left join on key, keeping one key column (portable: no backend-specific USING).

    Columns are selected rather than the right key dropped: a drop after a join stops Ibis
    from sharing subqueries, and the facts would be scanned once per use.
    """
    joined = left.left_join(right, left[key] == right[key])
    return joined.select(
        *[left[c] for c in left.columns], *[right[c] for c in right.columns if c != key]
    )


def customer_features(
    orders: ir.Table,
    events: ir.Table,
    products: ir.Table,
    as_of: datetime,
    window_days: int = 90,
    *,
    bought: Purchases | None = None,
) -> ir.Table:
    """Every feature, one row per customer seen in the orders or events before as_of.

    `bought`, when given, is purchases(orders, as_of) already made (and cached) by the caller.
    """
    p = bought or purchases(orders, as_of)
    buying = purchase_features(p, window_days)
    active = activity_features(events, as_of, window_days)
    people = buying.select("customer_id").union(active.select("customer_id")).distinct()
    t = people
    for part in (
        buying,
        active,
        category_affinity(orders, p, products),
        open_carts(events, p, products),
    ):
        t = _attach(t, part)
    last_seen = ibis.greatest(
        t.last_order_at.fill_null(t.last_event_at), t.last_event_at.fill_null(t.last_order_at)
    )
    return t.mutate(
        orders=t.orders.fill_null(0),
        total_spent=t.total_spent.fill_null(0.0),
        sessions=t.sessions.fill_null(0),
        last_activity_at=last_seen,
        days_since_activity=_days_before(as_of, last_seen),
    )


def purchase_gaps(p: Purchases) -> ir.Table:
    """Every gap in days between a customer's consecutive purchase days: what the shop's own
    rhythm of buying looks like."""
    gaps = p.days
    return gaps.filter(gaps.gap.notnull()).select("customer_id", "gap")
