"""Customer features, RFM and lifecycle on small shops whose answers are known by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis
import pyarrow as pa
import pytest

from reengage.analytics.features import customer_features, purchase_gaps, purchases
from reengage.analytics.lifecycle import Thresholds, learn_thresholds, lifecycle_stages
from reengage.analytics.rfm import rfm_scores
from reengage.facts.kinds import EVENTS, ORDERS

D = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return D + timedelta(days=n)


def orders_table(rows: list[tuple]) -> ibis.Table:
    """(order_id, customer_id, day, product_id, quantity, unit_price, discount, status, ingested)"""
    data = [
        {
            "line_id": f"{o}-{p}-{s}-{i}",
            "order_id": o,
            "customer_id": c,
            "ordered_at": day(d),
            "product_id": p,
            "quantity": q,
            "unit_price": u,
            "currency": "EUR",
            "discount": disc,
            "coupon_code": None,
            "status": s,
            "ingested_at": day(i),
        }
        for (o, c, d, p, q, u, disc, s, i) in rows
    ]
    return ibis.memtable(pa.Table.from_pylist(data, schema=ORDERS.schema))


def events_table(rows: list[tuple]) -> ibis.Table:
    """(customer_id, type, day, product_id, session_id)"""
    data = [
        {
            "event_id": f"e{n}",
            "customer_id": c,
            "anonymous_id": None,
            "type": t,
            "occurred_at": day(d),
            "product_id": p,
            "session_id": s,
            "source": None,
            "device": None,
            "duration_s": None,
            "properties": None,
            "ingested_at": day(100),
        }
        for n, (c, t, d, p, s) in enumerate(rows)
    ]
    return ibis.memtable(pa.Table.from_pylist(data, schema=EVENTS.schema))


PRODUCTS = ibis.memtable(
    pa.table(
        {
            "product_id": ["P1", "P2", "P3"],
            "category": ["shoes", "socks", "shoes"],
            "price": [20.0, 5.0, 30.0],
        }
    )
)

ORDERS_A = [
    ("O1", "A", 0, "P1", 2, 10.0, 1.0, "paid", 0),
    ("O1", "A", 0, "P2", 1, 5.0, 0.0, "paid", 0),
    ("O2", "A", 0.5, "P2", 2, 5.0, 0.0, "paid", 0),  # same day: one purchase day
    ("O3", "A", 31, "P3", 1, 20.0, 0.0, "paid", 31),
    ("O4", "A", 61, "P3", 1, 30.0, 0.0, "paid", 61),
    ("O4", "A", 61, "P3", 1, 30.0, 0.0, "refunded", 70),  # refunded later: void
    ("O5", "A", 95, "P1", 1, 99.0, 0.0, "paid", 95),  # after as_of: unseen
]
EVENTS_A = [
    ("A", "product_view", 30, "P3", "s1"),
    ("A", "email_click", 80, None, "s2"),
    ("B", "product_view", 78, "P1", "s3"),
    ("B", "add_to_cart", 79, "P1", "s3"),
    ("B", "add_to_cart", 79.5, "P2", "s3"),
    ("B", "remove_from_cart", 79.6, "P2", "s3"),
    ("B", "add_to_cart", 92, "P3", "s4"),  # after as_of
]


def features(orders: list[tuple] = ORDERS_A, events: list[tuple] = EVENTS_A) -> dict:
    t = customer_features(orders_table(orders), events_table(events), PRODUCTS, AS_OF)
    return {r["customer_id"]: r for r in t.to_pyarrow().to_pylist()}


def test_purchase_features_by_hand() -> None:
    a = features()["A"]
    assert (a["orders"], a["purchase_days"], a["frequency"]) == (3, 2, 1)
    assert a["total_spent"] == pytest.approx(19 + 5 + 10 + 20)
    assert a["monetary"] == pytest.approx(54 / 3)
    assert a["recency_days"] == pytest.approx(90 - 31)
    assert a["tenure_days"] == pytest.approx(90)
    assert a["ipt_median_days"] == pytest.approx(31)
    assert a["last_gap_days"] == pytest.approx(31)
    assert a["top_category"] == "shoes"  # 19 + 20 on shoes against 15 on socks
    assert a["top_category_share"] == pytest.approx(39 / 54)  # the refunded order is void
    assert a["email_engagements"] == 1
    assert a["preferred_weekday"] == D.weekday()


def test_open_cart_and_prospects() -> None:
    b = features()["B"]
    assert b["orders"] == 0 and b["recency_days"] is None
    assert b["cart_items"] == 1 and b["cart_products"] == ["P1"]
    assert b["cart_value"] == pytest.approx(20.0)
    assert b["cart_since"] == day(79)


def test_nothing_at_or_after_as_of_is_seen() -> None:
    """Facts after as_of change nothing: the same answer as facts cut at as_of."""
    cut_orders = [o for o in ORDERS_A if day(o[2]) < AS_OF]
    cut_events = [e for e in EVENTS_A if day(e[2]) < AS_OF]
    assert features() == features(cut_orders, cut_events)


def test_trends_compare_the_last_window_with_the_one_before() -> None:
    rows = [
        ("X1", "X", 0, "P1", 1, 10.0, 0.0, "paid", 0),  # 90 days before as_of: previous window
        ("X2", "X", -5, "P1", 1, 10.0, 0.0, "paid", 0),
        ("X3", "X", 80, "P1", 1, 40.0, 0.0, "paid", 0),  # recent window
    ]
    x = features(rows, [])["X"]
    assert x["spend_trend"] == pytest.approx((40 - 20) / 21)
    assert x["frequency_trend"] == pytest.approx((1 - 2) / 3)


def test_rfm_quintiles_and_segments() -> None:
    """A 5 x 5 grid of recency and frequency levels: each level gets its own score."""
    rows = []
    for r in range(5):
        for f in range(5):
            rows.append(
                {
                    "customer_id": f"{r}{f}",
                    "orders": f + 1,
                    "recency_days": 100.0 - 20 * r,
                    "frequency": f,
                    "monetary": 10.0 * (r + f),
                }
            )
    rows.append(
        {
            "customer_id": "none",
            "orders": 0,
            "recency_days": None,
            "frequency": None,
            "monetary": None,
        }
    )
    got = {
        s["customer_id"]: s
        for s in rfm_scores(ibis.memtable(pa.Table.from_pylist(rows))).to_pyarrow().to_pylist()
    }
    assert "none" not in got
    for r in range(5):
        for f in range(5):
            s = got[f"{r}{f}"]
            assert (s["r"], s["f"]) == (r + 1, f + 1)
    expected = {
        "44": "Champions",
        "43": "Champions",
        "34": "Loyal",
        "23": "Loyal",
        "31": "Potential loyalist",
        "42": "Potential loyalist",
        "40": "New",
        "30": "Promising",
        "22": "Need attention",
        "21": "About to sleep",
        "12": "At risk",
        "03": "At risk",
        "14": "Can't lose them",
        "10": "Hibernating",
        "01": "Hibernating",
        "00": "Lost",
    }
    for cid, segment in expected.items():
        assert got[cid]["rfm_segment"] == segment, cid


def test_lifecycle_stages() -> None:
    rows = [
        ("p", 0, None, None, None, "shoes"),
        ("n", 1, 1, 10.0, None, "shoes"),
        ("r", 3, 3, 10.0, 20.0, "shoes"),
        ("l", 9, 6, 10.0, 20.0, "shoes"),
        ("back", 4, 4, 10.0, 150.0, "shoes"),
        ("risk", 3, 3, 70.0, 20.0, "shoes"),
        ("inact", 3, 3, 150.0, 20.0, "shoes"),
        ("lost", 3, 3, 250.0, 20.0, "shoes"),
        ("socks", 3, 3, 25.0, 20.0, "socks"),  # socks run out fast: its own threshold
    ]
    t = ibis.memtable(
        pa.Table.from_pylist(
            [
                {
                    "customer_id": c,
                    "orders": o,
                    "purchase_days": n,
                    "recency_days": d,
                    "last_gap_days": g,
                    "top_category": cat,
                }
                for c, o, n, d, g, cat in rows
            ]
        )
    )
    got = {
        r["customer_id"]: r["lifecycle"]
        for r in lifecycle_stages(t, Thresholds(100.0, {"socks": 40.0})).to_pyarrow().to_pylist()
    }
    assert got == {
        "p": "prospect",
        "n": "new",
        "r": "repeat",
        "l": "loyal",
        "back": "reactivated",
        "risk": "at_risk",
        "inact": "inactive",
        "lost": "lost",
        "socks": "at_risk",
    }


def test_threshold_is_learned_from_the_shops_own_gaps() -> None:
    few = purchase_gaps(purchases(orders_table(ORDERS_A), AS_OF))
    assert learn_thresholds(few).default_days == 180.0  # too few gaps: the classic fallback
    rows = [
        (f"O{c}-{k}", f"C{c}", k * (5 + c % 10), "P1", 1, 1.0, 0.0, "paid", 0)
        for c in range(60)
        for k in range(3)
    ]
    learned = learn_thresholds(
        purchase_gaps(purchases(orders_table(rows), datetime(2027, 1, 1, tzinfo=UTC)))
    )
    assert learned.learned_from_gaps == 120
    assert 12 <= learned.default_days <= 14  # the 90th percentile of gaps from 5 to 14 days
    assert learn_thresholds(few, fixed_days=60).default_days == 60
