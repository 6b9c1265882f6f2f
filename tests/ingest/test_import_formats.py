"""CDNOW's transaction files and Shopify's orders export."""

from __future__ import annotations

import json
from pathlib import Path

import lifetimes
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import Home
from reengage.facts import reader
from reengage.state.contacts import current_consent
from reengage.state.schema import contacts, identities

DATASETS = Path(lifetimes.__file__).parent / "datasets"


def test_cdnow_master_imports_every_customer(cli: CliRunner, home: Home, engine: Engine) -> None:
    master = DATASETS / "CDNOW_master.txt"
    records = sum(1 for line in master.read_text().splitlines()[1:] if line.strip())
    result = cli.invoke(app, ["import", "orders", str(master), "--format", "cdnow", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["read"] == records == 69_659
    assert summary["imported"] == records
    assert summary["created_contacts"] == 23_570
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 23_570
    con = reader.connect(home.settings.facts_path)
    [(customers, lines, dollars, first, last)] = con.sql(
        """SELECT count(DISTINCT customer_id), count(*), round(sum(quantity * unit_price), 2),
                  min(ordered_at)::DATE::VARCHAR, max(ordered_at)::DATE::VARCHAR FROM orders"""
    ).fetchall()
    con.close()
    assert (customers, lines) == (23_570, 69_659)
    expected = sum(float(line.split()[3]) for line in master.read_text().splitlines()[1:])
    assert dollars == pytest.approx(expected, abs=0.01)
    assert (first, last) == ("1997-01-01", "1998-06-30")

    again = cli.invoke(app, ["import", "orders", str(master), "--format", "cdnow", "--json"])
    assert json.loads(again.stdout)["imported"] == 0


def test_cdnow_sample_is_the_same_customers(cli: CliRunner, home: Home) -> None:
    """The sample's records (with the extra id column) are master records: same ids, same days."""
    sample = DATASETS / "CDNOW_sample.txt"
    result = cli.invoke(app, ["import", "orders", str(sample), "--format", "cdnow", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["imported"] == 6_919
    assert summary["created_contacts"] == 2_357
    con = reader.connect(home.settings.facts_path)
    [(first,)] = con.sql(
        "SELECT order_id FROM orders ORDER BY customer_id, ordered_at LIMIT 1"
    ).fetchall()
    con.close()
    assert first == "00004-19970101-1"


def test_cdnow_bad_records_are_reported_by_line(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_text(
        " 00001 19970101  1   11.77\n 00002 19971340  1   12.00\n 00003 19970102  x   1.00\n"
        " 00004 19970103\n 00005 19970104  2   20.00\n"
    )
    result = cli.invoke(app, ["import", "orders", str(path), "--format", "cdnow", "--json"])
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    assert (summary["imported"], summary["rejected"]) == (2, 3)
    lines = Path(summary["rejects_file"]).read_text().splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["2", "3", "4"]


SHOPIFY = """\
Name,Email,Financial Status,Paid at,Fulfillment Status,Accepts Marketing,Currency,Subtotal,\
Discount Code,Discount Amount,Created at,Lineitem quantity,Lineitem name,Lineitem price,\
Lineitem sku,Lineitem discount,Cancelled at,Vendor,Id
#1001,Anna.Rossi@example.com,paid,2026-03-01 10:15:00 +0100,fulfilled,yes,EUR,89.80,SPRING10,\
8.98,2026-03-01 10:14:02 +0100,2,Trail shoe,39.90,SHOE-42,8.98,,Alpina,5001
#1001,,,,,,,,,,,1,Socks,10.00,SOCK-1,0,,Alpina,
#1002,luc@example.org,refunded,2026-03-02 09:00:00 +0100,,no,EUR,25.00,,0,\
2026-03-02 08:59:00 +0100,1,Water bottle,25.00,,0,,Hydra,5002
#1003,anna.rossi@example.com,paid,2026-03-05 12:00:00 +0100,,yes,EUR,10.00,,0,\
2026-03-05 11:58:00 +0100,1,Socks,10.00,SOCK-1,0,,Alpina,5003
#1004,,paid,2026-03-06 12:00:00 +0100,,,EUR,10.00,,0,2026-03-06 11:00:00 +0100,1,Socks,\
10.00,SOCK-1,0,,Alpina,5004
"""


def test_shopify_export_matches_customers_by_email(
    cli: CliRunner, home: Home, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "orders_export.csv"
    path.write_text(SHOPIFY)
    result = cli.invoke(app, ["import", "orders", str(path), "--format", "shopify", "--json"])
    assert result.exit_code == 3, result.output  # #1004 has no email (a POS sale)
    summary = json.loads(result.stdout)
    assert summary == summary | {"read": 5, "imported": 4, "rejected": 1, "created_contacts": 2}
    rejects = Path(summary["rejects_file"]).read_text().splitlines()
    assert rejects[1].startswith("6,email: missing")

    con = reader.connect(home.settings.facts_path)
    rows = con.sql(
        """SELECT order_id, product_id, quantity, unit_price, discount, coupon_code, status,
                  strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M')
           FROM orders ORDER BY order_id, product_id"""
    ).fetchall()
    customers = con.sql(
        "SELECT order_id, customer_id FROM orders GROUP BY ALL ORDER BY order_id"
    ).fetchall()
    con.close()
    assert rows[0] == ("#1001", "SHOE-42", 2, 39.90, 8.98, "SPRING10", "paid", "2026-03-01 09:14")
    assert rows[1][:2] == ("#1001", "SOCK-1")
    assert rows[1][5:7] == ("SPRING10", "paid")  # order fields carried to the order's 2nd row
    assert rows[2][:2] == ("#1002", "shopify:water-bottle")
    assert rows[2][6] == "refunded"
    # one person whatever the case of the address
    assert customers[0][1] == customers[2][1] != customers[1][1]

    with engine.connect() as conn:
        anna = conn.execute(
            select(identities.c.contact_id).where(
                identities.c.kind == "email", identities.c.value == "anna.rossi@example.com"
            )
        ).scalar_one()
        luc = conn.execute(
            select(identities.c.contact_id).where(identities.c.value == "luc@example.org")
        ).scalar_one()
        assert current_consent(conn, anna, "email", "marketing") is True
        assert current_consent(conn, luc, "email", "marketing") is False
