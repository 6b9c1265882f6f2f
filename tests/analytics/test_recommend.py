"""Cross-, up- and down-sell on a shop small enough to check by hand."""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa
import pytest
from test_features import AS_OF, orders_table
from typer.testing import CliRunner

from reengage.analytics.recommend import for_contacts, for_products, product_pairs
from reengage.config import Home

PRODUCTS = ibis.memtable(
    pa.table(
        {
            "product_id": ["P1", "P2", "P3", "P4", "P5"],
            "category": ["shoes", "shoes", "shoes", "socks", "socks"],
            "price": [50.0, 80.0, 30.0, 5.0, 8.0],
        }
    )
)
BASKETS = [  # order, customer, day, products
    ("o1", "c1", 1, ["P1", "P4"]),
    ("o2", "c2", 2, ["P1", "P4"]),
    ("o3", "c3", 3, ["P1", "P4"]),
    ("o4", "c4", 4, ["P2"]),
    ("o5", "c5", 5, ["P3"]),
    ("o6", "c6", 6, ["P5"]),
    ("o7", "c1", 7, ["P2"]),
    ("o8", "c7", 200, ["P3", "P5"]),  # after as_of: unseen
]
ORDERS = orders_table(
    [(o, c, d, p, 1, 10.0, 0.0, "paid", d) for o, c, d, ps in BASKETS for p in ps]
)


def offers(table: ibis.Table, key: str) -> dict[tuple[str, str], list[str]]:
    got: dict[tuple[str, str], list[str]] = {}
    for r in table.order_by([key, "kind", "rank"]).to_pyarrow().to_pylist():
        got.setdefault((r[key], r["kind"]), []).append(r.get("other_id") or r["product_id"])
    return got


def test_bought_together_by_lift() -> None:
    pairs = {
        (r["product_id"], r["other_id"]): r
        for r in product_pairs(ORDERS, AS_OF, min_together=2).to_pyarrow().to_pylist()
    }
    assert set(pairs) == {("P1", "P4"), ("P4", "P1")}
    assert pairs[("P1", "P4")]["lift"] == pytest.approx(3 * 7 / (3 * 3))


def test_per_product() -> None:
    got = offers(for_products(PRODUCTS, ORDERS, AS_OF), "product_id")
    assert got[("P1", "up_sell")] == ["P2"]  # same category, dearer, within twice the price
    assert got[("P1", "down_sell")] == ["P3"]  # same category, cheaper, at least 40% of it
    assert got[("P3", "up_sell")] == ["P1"]
    assert got[("P1", "cross_sell")] == ["P4"]  # together in 3 orders: the minimum
    assert ("P2", "cross_sell") not in got  # never bought with anything


def test_per_contact_never_offers_what_they_own() -> None:
    got = offers(for_contacts(PRODUCTS, ORDERS, AS_OF), "customer_id")
    assert got[("c2", "up_sell")] == ["P2"]
    assert got[("c2", "down_sell")] == ["P3"]
    assert got[("c5", "up_sell")] == ["P1"]
    for (customer, _kind), products in got.items():
        owned = {p for _o, c, d, ps in BASKETS if c == customer and d < 90 for p in ps}
        assert not owned & set(products)


def test_recommend_command(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    import json

    from reengage.cli import app

    (tmp_path / "p.csv").write_text(
        "product_id,title,category,price\nP1,A,shoes,50\nP2,B,shoes,80\nP3,C,shoes,30\n"
    )
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,ordered_at,product_id,quantity,unit_price\n"
        "o1,c1,2026-01-01,P1,1,50\no2,c2,2026-01-02,P2,1,80\n"
    )
    assert cli.invoke(app, ["import", "products", str(tmp_path / "p.csv")]).exit_code == 0
    assert cli.invoke(app, ["import", "orders", str(tmp_path / "o.csv")]).exit_code == 0
    result = cli.invoke(app, ["recommend", "--contact", "c1", "--as-of", "2026-02-01", "--json"])
    assert result.exit_code == 0, result.output
    got = {(r["kind"], r["product_id"]) for r in json.loads(result.stdout)}
    assert got == {("up_sell", "P2"), ("down_sell", "P3")}
    both = cli.invoke(app, ["recommend", "--contact", "c1", "--product", "P1"])
    assert both.exit_code == 2
