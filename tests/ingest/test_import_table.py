"""`import_table`: records already in memory take the path of a file's records (validation,
dedup, the `imports` history, the rejects file), as the order webhooks use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from reengage.clock import FixedClock
from reengage.config import Home
from reengage.errors import InputError
from reengage.facts import reader
from reengage.ingest.csvfile import RawTable, Rejected, columns_table
from reengage.ingest.importer import import_file, import_table
from reengage.state.schema import imports

HEADER = ["order_id", "customer_id", "ordered_at", "product_id", "quantity", "unit_price"]
ROWS = [
    ["A1", "C1", "2026-10-01T10:00:00Z", "P1", "1", "10.00"],
    ["A1", "C1", "2026-10-01T10:00:00Z", "P2", "0", "5.00"],
    ["A2", "C2", "2026-10-02T10:00:00Z", "P1", "2", "ten"],
    ["A3", "C2", "2026-10-03T10:00:00Z", "P3", "1", "7.50"],
]


def table(rows: list[list[str]], rejected: list[Rejected] | None = None) -> RawTable:
    lines = list(range(1, len(rows) + 1))
    return RawTable(HEADER, columns_table(HEADER, rows, lines), rejected or [])


def history(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        got = conn.execute(
            select(imports.c.file_name, imports.c.read, imports.c.imported, imports.c.rejected)
        ).all()
    return [tuple(r) for r in got]


def test_a_table_imports_as_a_file_does(
    home: Home, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    raw = table(ROWS, [Rejected(5, "not a JSON object", [])])
    got = import_table(home.settings, engine, "orders", raw, clock=clock, source_name="webhook:x")
    assert (got.read, got.imported, got.duplicates, got.rejected) == (5, 2, 0, 3)
    assert got.reasons == [
        (2, "quantity: must be at least 1"),
        (3, "unit_price: not a number (like 12.50; for 12,50 use --decimal-comma)"),
        (5, "not a JSON object"),
    ]
    assert "reasons" not in got.as_dict()  # `reengage import --json` prints what it did
    assert got.rejects_file is not None
    rejects = Path(got.rejects_file)
    assert rejects.name == "orders-20261101T093000-webhook-x.csv"
    assert rejects.read_text().splitlines()[:2] == [
        "line,reason,order_id,customer_id,ordered_at,product_id,quantity,unit_price",
        "2,quantity: must be at least 1,A1,C1,2026-10-01T10:00:00Z,P2,0,5.00",
    ]
    assert history(engine) == [("webhook:x", 5, 2, 3)]

    # the same records from a file are the same facts: nothing new
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(",".join(r) for r in [HEADER, *ROWS]) + "\n")
    again = import_file(home, engine, "orders", path, clock=clock)
    assert (again.imported, again.duplicates, again.rejected) == (0, 2, 2)
    assert again.rejects_file is not None
    assert Path(again.rejects_file).name == "orders-20261101T093000-orders.csv"

    # a Home is taken as well as its settings; a second rejects file in the same second
    # does not write over the first
    third = import_table(home, engine, "orders", raw, clock=clock, source_name="webhook:x")
    assert third.duplicates == 2
    assert third.rejects_file is not None
    assert Path(third.rejects_file).name == "orders-20261101T093000-webhook-x-2.csv"
    assert rejects.read_text().count("\n") == 4

    con = reader.connect(home.settings.facts_path)
    assert con.sql("SELECT count(*) FROM orders").fetchall() == [(2,)]
    con.close()


def test_a_missing_required_column_writes_nothing(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    header = HEADER[:-1]
    raw = RawTable(header, columns_table(header, [r[:-1] for r in ROWS], [1, 2, 3, 4]))
    with pytest.raises(InputError, match="required column 'unit_price' is absent"):
        import_table(home.settings, engine, "orders", raw, clock=clock, source_name="webhook:x")
    assert history(engine) == []
