"""Which orders and lines count, against a plain reading of the rule, on random histories.

The rule (docs/understanding.md): an order's lines are imported again whenever its status
changes; the lines of its latest-ingested status count, unless that status is cancelled or
refunded, and nothing ordered at or after as_of is seen. The engine settles single-status
orders in one pass and resolves the others apart: these properties check both paths.
"""

from __future__ import annotations

from collections import defaultdict

import duckdb
import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_features import AS_OF, orders_table

from reengage.analytics.features import orders_as_of, purchases, valid_lines
from reengage.ingest.vocabulary import ORDER_STATUSES

VOID = {"cancelled", "refunded"}

# one import of an order: its status and the day it was ingested. Each import has its own
# day and status: the store keeps one copy of a line imported twice with the same status.
imports = st.lists(
    st.tuples(st.sampled_from((*ORDER_STATUSES, None)), st.integers(0, 200)),
    min_size=1,
    max_size=3,
    unique_by=(lambda i: i[0], lambda i: i[1]),
)
order = st.tuples(
    st.sampled_from(("A", "B", "C")),  # customer
    st.sampled_from((10.0, 50.5, 89.9, 95.0)),  # day ordered (as_of is day 90)
    st.lists(  # lines: product, quantity, unit price
        st.tuples(st.sampled_from(("P1", "P2", "P3")), st.integers(1, 3), st.floats(1, 50)),
        min_size=1,
        max_size=3,
        unique_by=lambda line: line[0],
    ),
    imports,
)
shops = st.lists(order, min_size=1, max_size=6)


def rows_of(shop: list) -> list[tuple]:
    rows = []
    for n, (customer, ordered, lines, history) in enumerate(shop):
        for status, ingested in history:
            for product, quantity, price in lines:
                rows.append(
                    (f"O{n}", customer, ordered, product, quantity, price, 0.0, status, ingested)
                )
    return rows


def expected(shop: list) -> tuple[dict[str, tuple], set[tuple]]:
    """Valid orders (order_id -> customer, value, lines, status) and counted lines."""
    orders, lines = {}, set()
    for n, (customer, ordered, bought, history) in enumerate(shop):
        if ordered >= 90:
            continue
        status, _ = max(history, key=lambda i: i[1])
        if status is None or status in VOID:
            continue
        value = sum(q * p for _, q, p in bought)
        orders[f"O{n}"] = (customer, pytest.approx(value), len(bought), status)
        lines |= {(f"O{n}", product, status) for product, _, _ in bought}
    return orders, lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shops)
def test_valid_orders_and_lines_follow_the_latest_status(shop: list) -> None:
    table = orders_table(rows_of(shop))
    want_orders, want_lines = expected(shop)
    got = {
        r["order_id"]: (r["customer_id"], r["value"], r["lines"], r["status"])
        for r in orders_as_of(table, AS_OF).to_pyarrow().to_pylist()
    }
    assert got == want_orders
    got_lines = {
        (r["order_id"], r["product_id"], r["status"])
        for r in valid_lines(table, AS_OF).to_pyarrow().to_pylist()
    }
    assert got_lines == want_lines


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shops)
def test_cached_purchases_see_the_same_orders(shop: list) -> None:
    # cache=True keeps its steps as tables of the backend the orders live in
    con = duckdb.connect()
    con.register("orders", orders_table(rows_of(shop)).to_pyarrow())
    table = ibis.duckdb.from_connection(con).table("orders")
    want, _ = expected(shop)
    days: dict[tuple, float] = defaultdict(float)
    for order_id, (customer, value, _, _) in want.items():
        ordered = shop[int(order_id[1:])][1]
        days[(customer, int(ordered))] += value.expected
    got = purchases(table, AS_OF, cache=True).days.to_pyarrow().to_pylist()
    assert len(got) == len(days)
    for r in got:
        key = (r["customer_id"], (r["day"] - AS_OF.date()).days + 90)
        assert r["value"] == pytest.approx(days[key])
