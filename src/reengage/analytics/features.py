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
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir

from reengage.ingest.vocabulary import ORDER_STATUSES

DAY = 86400.0
VOID_STATUSES = ("cancelled", "refunded")
MESSAGE_TYPES = {
    "email": ("email_open", "email_click"),
    "sms": ("sms_click",),
    "push": ("push_click",),
}


def _days_before(as_of: datetime, column: ir.TimestampValue) -> ir.FloatingValue:
    return (ibis.literal(as_of.timestamp()) - column.epoch_seconds().cast("float64")) / DAY


def _line_value(lines: ir.Table) -> ir.FloatingValue:
    return lines.quantity * lines.unit_price - lines.discount


@dataclass(frozen=True)
class _Orders:
    """The valid orders and the (order_id, status) pairs whose lines no longer count."""

    valid: ir.Table
    stale: ir.Table


def _orders(orders: ir.Table, as_of: datetime, *, cache: bool = False) -> _Orders:
    """The orders before as_of, each with the lines of its latest-ingested status.

    A refund or a cancellation re-imports an order's lines with the new status: the lines
    of the latest status count, the earlier copies go, and an order whose latest status is
    cancelled or refunded goes whole. Most orders only ever had one status, so one
    aggregation per order settles them, and only the orders seen with several statuses pay
    for finding their latest (a second pass over just their lines). `cache` materialises
    each step once.
    """
    keep = _materialise if cache else _as_is
    seen = orders.filter(orders.ordered_at < as_of)
    # statuses as small numbers (0 for a missing one): two integer aggregates tell a settled
    # order from a mixed one for half the cost of comparing texts
    code = ibis.cases(
        *((seen.status == status, i + 1) for i, status in enumerate(ORDER_STATUSES)), else_=0
    ).cast("int8")
    per_order = keep(
        seen.group_by("order_id").aggregate(
            customer_id=seen.customer_id.max(),
            ordered_at=seen.ordered_at.min(),
            value=_line_value(seen).sum(),
            lines=seen.count(),
            _low=code.min(),
            _high=code.max(),
        )
    )
    settled = per_order.filter(per_order._low == per_order._high)
    settled = settled.mutate(
        status=ibis.cases(
            *((settled._high == i + 1, status) for i, status in enumerate(ORDER_STATUSES)),
            else_=ibis.null("string"),
        )
    ).drop("_low", "_high")
    mixed = per_order.filter(per_order._low != per_order._high).select("order_id")
    theirs = seen.semi_join(mixed, "order_id")
    groups = keep(
        theirs.group_by(["order_id", "status"]).aggregate(
            customer_id=theirs.customer_id.max(),
            ordered_at=theirs.ordered_at.min(),
            value=_line_value(theirs).sum(),
            lines=theirs.count(),
            ingested_at=theirs.ingested_at.max(),
        )
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
    resolved = latest.select(
        order_id=latest.order_id,
        customer_id=order.customer_id,
        ordered_at=order.ordered_at,
        value=order.value,
        lines=order.lines,
        status=order.status,
    )
    kept = resolved.select("order_id", "status")
    stale = groups.anti_join(kept, ["order_id", "status"]).select("order_id", "status")
    every = settled.select(*resolved.columns).union(resolved)
    valid = every.filter(~every.status.isin(VOID_STATUSES))
    # valid is not kept: a filter over the kept per-order rows costs less than copying them
    return _Orders(
        valid.select("customer_id", "order_id", "ordered_at", "value", "lines", "status"),
        keep(stale),
    )


def _as_is(t: ir.Table) -> ir.Table:
    return t


def _counted_lines(seen: ir.Table, stale: ir.Table) -> ir.Table:
    """The lines of seen that count, given the stale (order_id, status) pairs of _orders."""
    lines = seen.filter(~seen.status.isin(VOID_STATUSES))
    return lines.anti_join(stale, ["order_id", "status"])


def valid_lines(orders: ir.Table, as_of: datetime) -> ir.Table:
    """Order lines before as_of whose order's latest status is not cancelled or refunded
    (only the lines of that latest status: an earlier copy of a re-imported line goes)."""
    seen = orders.filter(orders.ordered_at < as_of)
    return _counted_lines(seen, _orders(orders, as_of).stale)


def orders_as_of(orders: ir.Table, as_of: datetime) -> ir.Table:
    """One row per valid order before as_of: customer_id, order_id, ordered_at, value, lines
    and status (its latest)."""
    return _orders(orders, as_of).valid


@dataclass(frozen=True)
class Purchases:
    """The valid orders before as_of (orders_as_of) and the purchase days they make, with
    the stale (order_id, status) pairs of re-imported lines that no longer count.

    A purchase day holds customer_id, day, at (its first order), last_at (its last), value
    (its total), orders, gap (days since the customer's previous purchase day, null for the
    first), and the value and count of its orders in the last `window_days` before as_of
    (recent_value, recent_orders) and in the window before (previous_value,
    previous_orders): what every order-based feature, the purchase gaps and the BTYD summary
    read, so a customer's totals are one aggregation over their days.

    `purchases(..., cache=True)` materialises the tables once, so a scoring run reads the
    order lines a single time however many features it derives from them.
    """

    as_of: datetime
    orders: ir.Table
    days: ir.Table
    stale: ir.Table
    window_days: int = 90


def purchases(
    orders: ir.Table, as_of: datetime, *, cache: bool = False, window_days: int = 90
) -> Purchases:
    made = _orders(orders, as_of, cache=cache)
    o = made.valid
    # the same windows as "age in days < window_days", compared as times: no arithmetic per order
    start = as_of - timedelta(days=window_days)
    recent = o.ordered_at > start
    previous = (o.ordered_at <= start) & (o.ordered_at > start - timedelta(days=window_days))
    days = o.group_by(["customer_id", o.ordered_at.date().name("day")]).aggregate(
        at=o.ordered_at.min(),
        last_at=o.ordered_at.max(),
        value=o.value.sum(),
        orders=o.count(),
        recent_value=o.value.sum(where=recent),
        previous_value=o.value.sum(where=previous),
        recent_orders=o.count(where=recent),
        previous_orders=o.count(where=previous),
    )
    previous_at = days.at.lag().over(group_by=days.customer_id, order_by=days.at)
    days = days.mutate(
        gap=(days.at.epoch_seconds().cast("float64") - previous_at.epoch_seconds().cast("float64"))
        / DAY
    )
    if cache:
        days = _materialise(days)
    return Purchases(as_of, o, days, made.stale, window_days)


def _materialise(t: ir.Table) -> ir.Table:
    """t computed once into a temporary table of its backend, gone with the connection.

    (Ibis's own .cache() cannot release its tables on DuckDB 2: its DROP fails to compile.)
    """
    backend = t._find_backend()
    return backend.create_table(f"_reengage_{uuid.uuid4().hex}", t, temp=True)


def purchase_features(p: Purchases) -> ir.Table:
    """Recency, frequency, monetary, tenure, inter-purchase times and trends per customer."""
    as_of, o, d = p.as_of, p.orders, p.days
    weekday = d.day.day_of_week.index()
    totals = d.group_by("customer_id").aggregate(
        purchase_days=d.count(),
        orders=d.orders.sum(),
        total_spent=d.value.sum(),
        first_order_at=d.at.min(),
        last_order_at=d.last_at.max(),
        recent_spent=d.recent_value.sum(),
        previous_spent=d.previous_value.sum(),
        recent_orders=d.recent_orders.sum(),
        previous_orders=d.previous_orders.sum(),
        ipt_median_days=d.gap.median(),
        ipt_p90_days=d.gap.quantile(0.9),
        # the pause before the latest purchase: a long one means the customer came back
        last_gap_days=d.gap.argmax(d.at),
        first_purchase_value=d.value.argmin(d.at),
        # an order's weekday is its purchase day's: orders per weekday, in the same pass
        **{f"_weekday{k}": d.orders.sum(where=weekday == k) for k in range(7)},
    )
    t = _attach(totals, _most_frequent(o, "preferred_hour", o.ordered_at.hour()))
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
        monetary=t.total_spent / t.orders.cast("float64"),
        ipt_median_days=t.ipt_median_days,
        ipt_p90_days=t.ipt_p90_days,
        last_gap_days=t.last_gap_days,
        first_purchase_value=t.first_purchase_value,
        spend_trend=(recent_spent - previous_spent) / (previous_spent + 1.0),
        frequency_trend=(t.recent_orders - t.previous_orders).cast("float64")
        / (t.previous_orders.cast("float64") + 1.0),
        first_order_at=t.first_order_at,
        last_order_at=t.last_order_at,
        preferred_weekday=_first_largest([t[f"_weekday{k}"] for k in range(7)]),
        preferred_hour=t.preferred_hour,
    )


def _first_largest(counts: list[ir.IntegerValue]) -> ir.IntegerValue:
    """The position of the largest count (the first on a tie)."""
    best, at = counts[0].fill_null(0), ibis.literal(0, "int64")
    for k, count in enumerate(counts[1:], start=1):
        count = count.fill_null(0)
        at = ibis.ifelse(count > best, k, at)
        best = ibis.greatest(best, count)
    return at


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
    o = _counted_lines(orders.filter(orders.ordered_at < p.as_of), p.stale)
    lines = o.join(products.select("product_id", "category"), "product_id")
    spend = lines.group_by(["customer_id", "category"]).aggregate(spent=_line_value(lines).sum())
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
    p = bought or purchases(orders, as_of, window_days=window_days)
    if p.window_days != window_days:
        raise ValueError(f"bought was made for a {p.window_days}-day window, not {window_days}")
    buying = purchase_features(p)
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
