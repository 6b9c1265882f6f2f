"""Importing orders: good rows kept, bad rows reported by line, nothing stored twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.facts import reader
from reengage.ingest.importer import import_file
from reengage.state.schema import consents, contacts, products

HEADER = (
    "order_id,customer_id,ordered_at,product_id,quantity,unit_price,currency,discount,"
    "coupon_code,status"
)
GOOD = [
    "A1,C1,2026-01-05T10:00:00Z,P1,2,10.50,EUR,1.00,WELCOME,paid",
    "A1,C1,2026-01-05T10:00:00Z,P2,1,1234.50,EUR,,,paid",
    "A2,C2,2026-01-06 18:30,P1,1,10.50,EUR,,,paid",
    "A3,C3,2026-02-01,P3,3,7.25,EUR,0.75,,refunded",
]
# (line in the file, what is wrong with it)
DIRTY = [
    ("A4,C4,2026-31-01,P1,1,10.50,EUR,,,paid", "ordered_at: not a date"),
    ("A5,,2026-01-07,P1,1,10.50,EUR,,,paid", "customer_id: missing"),
    ("A6,C6,2026-01-08,P1,1,-3,EUR,,,paid", "unit_price: negative amount"),
    ("A7,C7,2026-01-08,P1,1", "expected 10 fields, found 5"),
    ("A8,C8,2026-01-08,P1,two,3.00,EUR,,,paid", "quantity: not a whole number"),
    ("A9,C9,2026-01-08,P1,1,abc,EUR,,,paid", "unit_price: not a number"),
    (",C9,2026-01-08,P1,1,3.00,EUR,,,paid", "order_id: missing"),
    ("A10,C9,2026-01-08,P1,1,3.00,EUR,,,shipped?", "status: unknown value"),
]


def dirty_file(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """A BOM, good rows, bad rows and an exact duplicate of a good row, with expected reasons."""
    lines = [HEADER, *GOOD[:2]]
    expected: dict[int, str] = {}
    for row, reason in DIRTY:
        lines.append(row)
        expected[len(lines)] = reason
    lines += [*GOOD[2:], GOOD[0]]  # the last line repeats the first order line exactly
    path = tmp_path / "orders.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode())
    return path, expected


def italian(tmp_path: Path) -> Path:
    """The same good rows as a European spreadsheet exports them: `;`, decimal comma, dd/mm/yyyy."""
    rows = [
        "A1;C1;05/01/2026 11:00;P1;2;10,50;EUR;1,00;WELCOME;paid",
        "A1;C1;05/01/2026 11:00;P2;1;1.234,50;EUR;;;paid",
        "A2;C2;06/01/2026 19:30;P1;1;10,50;EUR;;;paid",
        "A3;C3;01/02/2026 01:00;P3;3;7,25;EUR;0,75;;refunded",
    ]
    path = tmp_path / "ordini.csv"
    path.write_text(HEADER.replace(",", ";") + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def run(cli: CliRunner, *args: str) -> tuple[int, dict]:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def test_dirty_file_keeps_good_rows_and_reports_each_bad_one(
    cli: CliRunner, home: Home, tmp_path: Path
) -> None:
    path, expected = dirty_file(tmp_path)
    code, summary = run(cli, "import", "orders", str(path))
    assert code == 3
    assert summary["read"] == len(GOOD) + len(DIRTY) + 1
    assert summary["imported"] == len(GOOD)
    assert summary["duplicates"] == 1
    assert summary["rejected"] == len(DIRTY)
    assert summary["read"] == summary["imported"] + summary["duplicates"] + summary["rejected"]

    rejects = Path(summary["rejects_file"]).read_text().splitlines()
    assert rejects[0].startswith("line,reason,order_id")
    got = {int(line.split(",")[0]): line for line in rejects[1:]}
    assert set(got) == set(expected)
    for line, reason in expected.items():
        assert reason in got[line], (line, got[line])

    counts = reader.counts(home.settings.facts_path)
    assert counts["order_lines"] == len(GOOD)
    assert counts["orders"] == 3


def test_importing_again_adds_nothing(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    path, _ = dirty_file(tmp_path)
    run(cli, "import", "orders", str(path))
    before = reader.counts(home.settings.facts_path)
    code, summary = run(cli, "import", "orders", str(path))
    assert code == 3
    assert summary["imported"] == 0
    assert summary["duplicates"] == len(GOOD) + 1
    assert summary["rejected"] == len(DIRTY)
    assert reader.counts(home.settings.facts_path) == before


def test_unknown_customers_and_products_are_created_without_consent(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path, _ = dirty_file(tmp_path)
    _, summary = run(cli, "import", "orders", str(path))
    assert summary["created_contacts"] == 3
    assert summary["created_products"] == 3
    with engine.connect() as conn:
        ids = set(conn.execute(select(contacts.c.customer_id)).scalars())
        assert ids == {"C1", "C2", "C3"}
        assert conn.execute(select(func.count()).select_from(consents)).scalar_one() == 0
        price = conn.execute(
            select(products.c.price).where(products.c.product_id == "P2")
        ).scalar_one()
        assert float(price) == 1234.50


def test_italian_export_imports_the_same_data(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    """With the options, the Italian file is the same facts: after the generic file, it adds
    nothing; amounts and instants (Rome time, UTC+1 in winter) agree."""
    path, _ = dirty_file(tmp_path)
    run(cli, "import", "orders", str(path))
    con = reader.connect(home.settings.facts_path)
    generic = con.sql("SELECT * EXCLUDE (ingested_at) FROM orders ORDER BY line_id").fetchall()
    con.close()

    result = cli.invoke(
        app,
        [
            "import",
            "orders",
            str(italian(tmp_path)),
            "--decimal-comma",
            "--date-format",
            "%d/%m/%Y %H:%M",
            "--json",
        ],
        env={"REENGAGE_TIMEZONE": "Europe/Rome"},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == summary | {"read": 4, "imported": 0, "duplicates": 4, "rejected": 0}
    con = reader.connect(home.settings.facts_path)
    assert con.sql("SELECT * EXCLUDE (ingested_at) FROM orders ORDER BY line_id").fetchall() == (
        generic
    )
    con.close()


def test_italian_export_on_its_own(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    result = cli.invoke(
        app,
        [
            "import",
            "orders",
            str(italian(tmp_path)),
            "--decimal-comma",
            "--date-format",
            "%d/%m/%Y %H:%M",
            "--delimiter",
            ";",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 4
    con = reader.connect(home.settings.facts_path)
    [(total,)] = con.sql("SELECT sum(quantity * unit_price - discount) FROM orders").fetchall()
    con.close()
    assert total == pytest.approx(2 * 10.5 - 1 + 1234.5 + 10.5 + 3 * 7.25 - 0.75)


def test_decimal_point_in_a_decimal_comma_file_is_rejected_not_misread(
    cli: CliRunner, home: Home, tmp_path: Path
) -> None:
    path = tmp_path / "o.csv"
    path.write_text(HEADER + "\nA1,C1,2026-01-05,P1,1,12.50,EUR,,,paid\n")
    result = cli.invoke(app, ["import", "orders", str(path), "--decimal-comma", "--json"])
    assert result.exit_code == 3
    assert json.loads(result.stdout)["rejected"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orders", "missing.csv"], "no such file"),
        (["orders", "{file}", "--format", "excel"], "unknown format"),
        (["customers", "{file}", "--format", "cdnow"], "holds orders"),
        (["orders", "{nocol}"], "required column 'unit_price' is absent"),
        (["orders", "{file}", "--date-format", "dd/mm/yyyy"], "--date-format"),
    ],
)
def test_unusable_input_exits_2_and_writes_nothing(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path, args: list[str], message: str
) -> None:
    path, _ = dirty_file(tmp_path)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("order_id,customer_id,ordered_at,product_id,quantity\nA1,C1,2026-01-01,P1,1\n")
    argv = [a.format(file=path, nocol=nocol) for a in args]
    result = cli.invoke(app, ["import", *argv])
    assert result.exit_code == 2
    assert message in result.stderr
    assert reader.counts(home.settings.facts_path)["order_lines"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 0
    assert not any(home.settings.rejects_path.iterdir())


def test_a_failure_while_storing_leaves_nothing_half_written(
    home: Home, engine: Engine, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contacts created for the orders are rolled back when the facts cannot be written."""
    import reengage.facts.writer as writer

    def full_disk(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "write_part", full_disk)
    path, _ = dirty_file(tmp_path)
    with pytest.raises(OSError):
        import_file(home, engine, "orders", path, clock=clock)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(products)).scalar_one() == 0
    assert reader.counts(home.settings.facts_path)["order_lines"] == 0


def test_shop_time_zone_applies_to_times_without_offset(
    home: Home, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        HEADER + "\nA1,C1,2026-07-01 12:00,P1,1,1,EUR,,,paid\nA2,C1,2026-07-01T12:00:00+02:00,"
        "P1,1,1,EUR,,,paid\nA3,C1,2026-07-01T12:00:00Z,P1,1,1,EUR,,,paid\n"
    )
    rome = Home(home.settings.model_copy(update={"timezone": "Europe/Rome"}))
    import_file(rome, engine, "orders", path, clock=clock)
    con = reader.connect(home.settings.facts_path)
    got = dict(
        con.sql(
            "SELECT order_id, strftime(ordered_at AT TIME ZONE 'UTC', '%H:%M') FROM orders"
        ).fetchall()
    )
    con.close()
    assert got == {"A1": "10:00", "A2": "10:00", "A3": "12:00"}
