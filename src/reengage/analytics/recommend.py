"""What to offer: cross-sell, up-sell and down-sell, per product and per contact.

- **cross-sell**: products bought in the same order as this one, ranked by lift,
  lift = P(both in an order) / (P(this) P(that)), kept when bought together in at least
  `min_together` orders and with lift > 1 (more often together than by chance);
- **up-sell**: the same category at a higher price (up to `max_up` times), most bought first;
- **down-sell**: the same category at a lower price (at least `min_down` times the price),
  most bought first.

Per contact, the candidates of the products they bought are pooled, what they already bought is
removed, and the best `k` of each kind are kept (up- and down-sell follow their latest purchase).
Popularity and pairs come from valid orders before as_of, as every other score.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from reengage.analytics.features import valid_lines


def product_pairs(orders: ir.Table, as_of: datetime, min_together: int = 3) -> ir.Table:
    """product_id, other_id, together (orders with both), lift."""
    lines = valid_lines(orders, as_of).select("order_id", "product_id").distinct()
    n_orders = lines.order_id.nunique().as_scalar()
    single = lines.group_by("product_id").aggregate(orders_with=lines.count())
    other = lines.select(order_id=lines.order_id, other_id=lines.product_id)
    both = lines.join(other, "order_id")
    both = both.filter(both.product_id != both.other_id)
    pairs = both.group_by(["product_id", "other_id"]).aggregate(together=both.count())
    pairs = pairs.filter(pairs.together >= min_together)
    a = single.select(product_id=single.product_id, n_a=single.orders_with)
    b = single.select(other_id=single.product_id, n_b=single.orders_with)
    scored = pairs.join(a, "product_id").join(b, "other_id")
    lift = (scored.together.cast("float64") * n_orders.cast("float64")) / (
        scored.n_a.cast("float64") * scored.n_b.cast("float64")
    )
    scored = scored.mutate(lift=lift)
    return scored.filter(scored.lift > 1).select("product_id", "other_id", "together", "lift")


def popularity(orders: ir.Table, as_of: datetime) -> ir.Table:
    lines = valid_lines(orders, as_of)
    return lines.group_by("product_id").aggregate(buyers=lines.customer_id.nunique())


def price_neighbours(
    products: ir.Table,
    orders: ir.Table,
    as_of: datetime,
    *,
    max_up: float = 2.0,
    min_down: float = 0.4,
) -> ir.Table:
    """product_id, other_id, kind ('up_sell' or 'down_sell'), buyers of the other product."""
    p = products.filter(products.category.notnull() & products.price.notnull())
    q = p.select(other_id=p.product_id, other_category=p.category, other_price=p.price)
    pairs = p.join(q, p.category == q.other_category)
    pairs = pairs.filter(pairs.product_id != pairs.other_id)
    up = (pairs.other_price > pairs.price) & (pairs.other_price <= pairs.price * max_up)
    down = (pairs.other_price < pairs.price) & (pairs.other_price >= pairs.price * min_down)
    pairs = pairs.filter(up | down).mutate(
        kind=ibis.ifelse(pairs.other_price > pairs.price, "up_sell", "down_sell")
    )
    pop = popularity(orders, as_of)
    pop = pop.select(other_id=pop.product_id, buyers=pop.buyers)
    pairs = pairs.left_join(pop, "other_id").drop("other_id_right")
    return pairs.select(
        "product_id", "other_id", "kind", buyers=pairs.buyers.fill_null(0), price=pairs.other_price
    )


def for_products(products: ir.Table, orders: ir.Table, as_of: datetime, k: int = 5) -> ir.Table:
    """product_id, kind, rank (0 = best), other_id: the best k of each kind per product."""
    cross = product_pairs(orders, as_of).select(
        "product_id", "other_id", kind=ibis.literal("cross_sell"), score=ibis._.lift
    )
    near = price_neighbours(products, orders, as_of)
    near = near.select("product_id", "other_id", "kind", score=near.buyers.cast("float64"))
    every = cross.union(near)
    ranked = every.mutate(
        rank=ibis.row_number().over(
            group_by=[every.product_id, every.kind],
            order_by=[ibis.desc(every.score), every.other_id],
        )
    )
    return ranked.filter(ranked["rank"] < k)


def for_contacts(products: ir.Table, orders: ir.Table, as_of: datetime, k: int = 5) -> ir.Table:
    """customer_id, kind, rank, product_id: offers for each buyer, never what they bought."""
    lines = valid_lines(orders, as_of)
    bought = lines.select("customer_id", "product_id").distinct()
    latest = lines.mutate(
        _rank=ibis.row_number().over(
            group_by=lines.customer_id, order_by=[ibis.desc(lines.ordered_at), lines.product_id]
        )
    )
    latest = latest.filter(latest._rank == 0).select("customer_id", "product_id")
    per_product = for_products(products, orders, as_of, k=max(k, 10))
    cross = bought.join(per_product.filter(per_product.kind == "cross_sell"), "product_id")
    price = latest.join(per_product.filter(per_product.kind != "cross_sell"), "product_id")
    pool = cross.select("customer_id", "kind", "other_id", "score").union(
        price.select("customer_id", "kind", "other_id", "score")
    )
    owned = bought.select(
        customer_id=bought.customer_id, other_id=bought.product_id, owned=ibis.literal(True)
    )
    pool = pool.left_join(owned, ["customer_id", "other_id"])
    pool = pool.filter(pool.owned.isnull())
    best = pool.group_by(["customer_id", "kind", "other_id"]).aggregate(score=pool.score.max())
    ranked = best.mutate(
        rank=ibis.row_number().over(
            group_by=[best.customer_id, best.kind],
            order_by=[ibis.desc(best.score), best.other_id],
        )
    )
    ranked = ranked.filter(ranked["rank"] < k)
    return ranked.select("customer_id", "kind", "rank", product_id=ranked.other_id)
