"""`reengage experiments analyze` and `calibrate` as a user meets them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reengage.cli import app

ROW_KEYS = {
    "variant",
    "n",
    "conversions",
    "conversion_rate",
    "ci_low",
    "ci_high",
    "revenue_per_recipient",
    "rpr_ci_low",
    "rpr_ci_high",
}
VS_KEYS = {"lift_abs", "lift_abs_ci_low", "lift_abs_ci_high", "lift_rel", "p_value", "significant"}


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    # imported here, not at collection, so the CLI reference test (test_docs) sees the
    # command tree cli.py registers
    importlib.import_module("reengage.experiments.commands")
    return CliRunner()


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.csv"
    path.write_text(text, encoding="utf-8")
    return path


SMALL = """variant,converted,revenue
b,1,30
control,0,0
control,1,25.5
b,1,12
control,0,0
b,0,0
c,0,0
c,0,0
"""


def test_analyze_json(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["experiments", "analyze", str(_csv(tmp_path, SMALL)), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["variant"] for r in rows] == ["b", "control", "c"]
    control = rows[1]
    assert set(control) == ROW_KEYS
    assert (control["n"], control["conversions"]) == (3, 1)
    assert control["revenue_per_recipient"] == pytest.approx(8.5)
    b, c = rows[0], rows[2]
    assert set(b) == set(c) == ROW_KEYS | VS_KEYS
    assert b["lift_abs"] == pytest.approx(1 / 3)
    assert b["lift_rel"] == pytest.approx(1.0)
    assert b["significant"] is False
    assert c["conversion_rate"] == 0.0 and c["lift_rel"] == pytest.approx(-1.0)


def test_analyze_control_option_and_table(cli: CliRunner, tmp_path: Path) -> None:
    path = _csv(tmp_path, SMALL)
    rows = json.loads(
        cli.invoke(app, ["experiments", "analyze", str(path), "--control", "c", "--json"]).stdout
    )
    assert "lift_abs" not in rows[2] and rows[0]["lift_rel"] is None  # c converts no one
    table = cli.invoke(app, ["experiments", "analyze", str(path)])
    assert table.exit_code == 0 and "control" in table.stdout
    missing = cli.invoke(app, ["experiments", "analyze", str(path), "--control", "z"])
    assert missing.exit_code == 2 and "'z'" in missing.stderr


def test_first_variant_is_the_control_without_one_named_so(cli: CliRunner, tmp_path: Path) -> None:
    path = _csv(tmp_path, "variant,converted,revenue\nx,0,0\ny,1,5\n")
    rows = json.loads(cli.invoke(app, ["experiments", "analyze", str(path), "--json"]).stdout)
    assert "lift_abs" not in rows[0] and "lift_abs" in rows[1]
    assert rows[0]["rpr_ci_low"] is None  # one recipient: no interval


@pytest.mark.parametrize(
    ("row", "column"),
    [("b,2,10", "converted"), ("b,1,ten", "revenue"), (",1,10", "variant"), ("b,1,", "revenue")],
)
def test_a_bad_row_names_its_line_and_column(
    cli: CliRunner, tmp_path: Path, row: str, column: str
) -> None:
    path = _csv(tmp_path, f"variant,converted,revenue\na,0,0\na,1,3\n{row}\na,0,0\n")
    result = cli.invoke(app, ["experiments", "analyze", str(path)])
    assert result.exit_code == 2
    assert "line 4" in result.stderr and f"column {column}" in result.stderr
    assert result.stderr.count("error:") == 1


def test_missing_column_or_file(cli: CliRunner, tmp_path: Path) -> None:
    path = _csv(tmp_path, "variant,converted\na,0\n")
    result = cli.invoke(app, ["experiments", "analyze", str(path)])
    assert result.exit_code == 2 and "revenue" in result.stderr
    gone = cli.invoke(app, ["experiments", "analyze", str(tmp_path / "nope.csv")])
    assert gone.exit_code == 2


def test_calibrate_lands_near_alpha(cli: CliRunner) -> None:
    args = ["experiments", "calibrate", "--runs", "300", "--seed", "1", "--json"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"runs", "alpha", "false_positive_rate"}
    assert (data["runs"], data["alpha"]) == (300, 0.05)
    assert 0.02 <= data["false_positive_rate"] <= 0.09
    assert cli.invoke(app, args).stdout == result.stdout  # a seed repeats the run


def test_calibrate_table(cli: CliRunner) -> None:
    result = cli.invoke(app, ["experiments", "calibrate", "--runs", "20", "--seed", "2"])
    assert result.exit_code == 0 and "false positive rate" in result.stdout
