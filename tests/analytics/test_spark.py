"""The feature expressions give the same answers on PySpark (local mode) as on DuckDB."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ibis
import pyarrow.parquet as pq
import pytest
import test_features as shop

from reengage.analytics.features import customer_features


def normal(value: Any) -> Any:
    if isinstance(value, datetime):  # Spark hands back naive UTC
        return (
            value.replace(tzinfo=None)
            if value.tzinfo is None
            else value.astimezone(UTC).replace(tzinfo=None)
        )
    if isinstance(value, float):
        return round(value, 9)
    return value


def rows(table: Any) -> list[dict[str, Any]]:
    return sorted(
        ({k: normal(v) for k, v in r.items()} for r in table.to_pylist()),
        key=lambda r: r["customer_id"],
    )


@pytest.mark.spark
def test_features_equal_on_pyspark_and_duckdb(tmp_path: Path, spark: Any) -> None:
    tables = {
        "orders": shop.orders_table(shop.ORDERS_A).to_pyarrow(),
        "events": shop.events_table(shop.EVENTS_A).to_pyarrow(),
        "products": shop.PRODUCTS.to_pyarrow(),
    }
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
    names = ("orders", "events", "products")
    duck = ibis.duckdb.connect()
    expected = customer_features(
        *(duck.read_parquet(tmp_path / f"{n}.parquet") for n in names), shop.AS_OF
    ).to_pyarrow()
    con = ibis.pyspark.connect(spark)
    got = customer_features(
        *(con.read_parquet(str(tmp_path / f"{n}.parquet")) for n in names), shop.AS_OF
    ).to_pyarrow()
    assert got.column_names == expected.column_names
    for mine, theirs in zip(rows(got), rows(expected), strict=True):
        for key in mine:
            a, b = mine[key], theirs[key]
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, rel_tol=1e-9), key
            else:
                assert a == b, (mine["customer_id"], key, a, b)
