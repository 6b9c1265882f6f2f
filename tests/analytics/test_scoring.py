"""`reengage score`, `contacts export` and `contacts show` on SQLite and PostgreSQL state."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import Home
from reengage.state.schema import scores

ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price
O1,A,2026-01-01,P1,1,10
O2,A,2026-02-01,P1,2,10
O3,A,2026-03-01,P2,1,50
O4,B,2025-06-01,P2,1,50
O5,C,2026-03-20,P1,1,10
"""
CUSTOMERS = "customer_id,email,email_marketing\nA,a@example.com,yes\nD,d@example.com,no\n"


@pytest.fixture
def shop(cli: CliRunner, home: Home, tmp_path: Path) -> Home:
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    assert cli.invoke(app, ["import", "customers", str(tmp_path / "customers.csv")]).exit_code == 0
    assert cli.invoke(app, ["import", "orders", str(tmp_path / "orders.csv")]).exit_code == 0
    return home


def score(cli: CliRunner, as_of: str) -> dict:
    result = cli.invoke(app, ["--now", "2026-11-01T00:00:00Z", "score", "--as-of", as_of, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_score_stores_every_contact_with_its_date(
    cli: CliRunner, shop: Home, engine: Engine
) -> None:
    summary = score(cli, "2026-04-01")
    assert summary["contacts"] == 4  # D never ordered: a prospect, scored all the same
    assert summary["buyers"] == 3
    assert summary["lifecycle"]["prospect"] == 1
    assert summary["threshold_days"] == 180.0  # too few purchases to learn the shop's rhythm
    profile = json.loads(cli.invoke(app, ["contacts", "show", "A", "--json"]).stdout)
    s = profile["scores"]
    assert (s["orders"], s["frequency"], s["total_spent"]) == (3, 2, 80.0)
    assert s["recency_days"] == pytest.approx(31)
    assert s["lifecycle"] == "repeat"
    assert profile["consents"]["email"] is True
    b = json.loads(cli.invoke(app, ["contacts", "show", "B", "--json"]).stdout)["scores"]
    assert b["lifecycle"] == "inactive"  # 304 days silent: past 180, not yet past 360


def test_history_is_kept_and_a_date_is_replaced_not_doubled(
    cli: CliRunner, shop: Home, engine: Engine
) -> None:
    score(cli, "2026-02-15")
    score(cli, "2026-04-01")
    score(cli, "2026-04-01")
    with engine.connect() as conn:
        per_date = dict(
            conn.execute(select(scores.c.as_of, func.count()).group_by(scores.c.as_of)).all()
        )
    assert sorted(per_date.values()) == [4, 4]
    early = json.loads(cli.invoke(app, ["contacts", "show", "C", "--json"]).stdout)["scores"]
    assert early["lifecycle"] == "new"  # the latest date is shown


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_every_format(cli: CliRunner, shop: Home, tmp_path: Path, fmt: str) -> None:
    score(cli, "2026-04-01")
    out = tmp_path / f"contacts.{fmt}"
    result = cli.invoke(app, ["contacts", "export", "--out", str(out), "--format", fmt, "--json"])
    assert result.exit_code == 0, result.output
    reader = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json"}[fmt]
    rows = duckdb.sql(
        f"SELECT customer_id, lifecycle, r, f, rfm_segment FROM {reader}('{out}') ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in rows] == ["A", "B", "C", "D"]
    assert rows[3][1] == "prospect" and rows[3][2] is None


def test_export_before_scoring_and_unknown_contact_are_clear_errors(
    cli: CliRunner, shop: Home, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["contacts", "export", "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "run `reengage score`" in result.stderr
    result = cli.invoke(app, ["contacts", "show", "nobody"])
    assert result.exit_code == 2 and "no contact" in result.stderr


def test_models_fit_on_cdnow_matches_the_published_estimates(cli: CliRunner, home: Home) -> None:
    """Fader, Hardie & Lee (2005) on the CDNOW sample, calibration to 1997-09-30, in weeks:
    r = 0.243, alpha = 4.414, a = 0.793, b = 2.426; Gamma-Gamma p = 6.25, q = 3.74, v = 15.44."""
    import lifetimes

    sample = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    imported = cli.invoke(app, ["import", "orders", str(sample), "--format", "cdnow"])
    assert imported.exit_code == 0, imported.output
    result = cli.invoke(app, ["models", "fit", "--as-of", "1997-10-01", "--json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)
    assert fitted["customers"] == 2357
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert fitted["bgnbd"][name] == pytest.approx(value, rel=0.005), name
    assert fitted["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.5)
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert fitted["gamma_gamma"][name] == pytest.approx(value, rel=0.005), name


def test_score_carries_churn_and_value(cli: CliRunner, home: Home) -> None:
    import lifetimes

    sample = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    cli.invoke(app, ["import", "orders", str(sample), "--format", "cdnow"])
    assert cli.invoke(app, ["score", "--as-of", "1997-10-01"]).exit_code == 0
    s = json.loads(cli.invoke(app, ["contacts", "show", "00004", "--json"]).stdout)["scores"]
    assert 0 < s["p_alive"] <= 1
    assert s["expected_purchases_90d"] >= 0
    assert s["expected_order_value"] > 0 and s["clv"] > 0


def test_calibration_holdout_report_on_cdnow(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    """Fit to 1997-09-30, predict the 39 weeks after; actual holdout purchase days are counted
    here independently from the raw file."""
    from collections import defaultdict

    import lifetimes

    sample = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    cli.invoke(app, ["import", "orders", str(sample), "--format", "cdnow"])
    result = cli.invoke(
        app,
        [
            "models",
            "report",
            "--calibration-end",
            "1997-10-01",
            "--holdout-end",
            "1998-07-01",
            "--out",
            str(tmp_path / "report"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    calibration: dict[str, set[str]] = defaultdict(set)
    holdout: dict[str, set[str]] = defaultdict(set)
    for line in sample.read_text().splitlines():
        customer, _, day, _, _ = line.split()
        (calibration if day <= "19970930" else holdout)[customer].add(day)
    expected: dict[str, list[int]] = defaultdict(list)
    for customer, days in calibration.items():
        bucket = min(len(days) - 1, 7)
        expected["7+" if bucket == 7 else str(bucket)].append(len(holdout.get(customer, ())))
    got = {b["frequency"]: b for b in report["buckets"]}
    for bucket, counts in expected.items():
        assert got[bucket]["customers"] == len(counts)
        assert got[bucket]["actual"] == pytest.approx(sum(counts) / len(counts))
    assert report["total_actual"] == sum(len(d) for c, d in holdout.items() if c in calibration)
    assert got["0"]["predicted"] == pytest.approx(0.225, abs=0.005)  # FHL 2005, figure 4
    assert 0.8 < report["total_predicted"] / report["total_actual"] < 1.0
    assert Path(report["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(report["table"]).read_text().startswith('"frequency","customers"')


def test_a_crm_style_on_the_contact_wins(cli: CliRunner, shop: Home, engine: Engine) -> None:
    """attributes.style, set by a CRM sync or a journey's update step, is read by the
    database (a JSON field): only a non-empty text counts."""
    from sqlalchemy import update

    from reengage.state.schema import contacts

    with engine.begin() as conn:
        for customer_id, attributes in (
            ("A", {"style": "nurturer", "tier": "gold"}),
            ("D", {"style": ""}),
        ):
            conn.execute(
                update(contacts)
                .where(contacts.c.customer_id == customer_id)
                .values(attributes=attributes)
            )
    score(cli, "2026-04-01")
    a = json.loads(cli.invoke(app, ["contacts", "show", "A", "--json"]).stdout)["scores"]
    assert (a["style"], a["style_source"]) == ("nurturer", "crm")
    d = json.loads(cli.invoke(app, ["contacts", "show", "D", "--json"]).stdout)["scores"]
    assert d["style_source"] != "crm"
