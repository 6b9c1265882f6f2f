"""`reengage demo` and `reengage generate` from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from reengage.cli import app


def test_demo_runs_and_running_it_again_adds_nothing(cli: CliRunner, env: dict[str, str]) -> None:
    args = ["--now", "2026-11-01T09:00:00Z", "demo", "--customers", "300", "--json"]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    one = json.loads(first.stdout)
    held = one["status"]
    assert held["contacts"] >= 300
    assert held["order_lines"] > 0 and held["events"] > 0 and held["consents"] > 0
    assert all(s["rejected"] == 0 for s in one["imports"].values())
    assert one["highlights"]["buyers"] > 0
    assert one["scores"]["contacts"] == held["contacts"]
    assert set(one["scores"]["lifecycle"]) <= {
        "prospect",
        "new",
        "reactivated",
        "repeat",
        "loyal",
        "at_risk",
        "inactive",
        "lost",
    }
    # the built-in journeys ran over the last weeks: messages went out, some were blocked
    journeys = one["journeys"]
    assert journeys["post_purchase"]["entered"] > 0 and journeys["post_purchase"]["sent"] > 0
    assert sum(j["sent"] for j in journeys.values()) > 0
    assert sum(sum(j["blocked"].values()) for j in journeys.values()) > 0
    assert one["replay"]["queued"] == sum(
        j["sent"] + sum(j["blocked"].values()) + j["waiting"] for j in journeys.values()
    )

    # two campaigns ran on a simulated clock: the newsletter measured against its holdout,
    # the win-back's subject test decided
    campaigns = one["campaigns"]
    assert {c["status"] for c in campaigns.values()} == {"done"}
    for found in campaigns.values():
        assert found["messages"]["sent"] > 0 and found["messages"]["pending"] == 0
        assert found["holdout"] > 0 and found["lift"]["control"]["n"] == found["holdout"]
        assert found["engagement"]["clicked"] > 0
    decision = campaigns["winback_season"]["decision"]
    assert decision["winner"] in ("plain", "personal")
    assert [a["variant"] for a in decision["arms"]] == ["plain", "personal"]

    second = cli.invoke(app, args)
    assert second.exit_code == 0, second.output
    two = json.loads(second.stdout)
    assert all(s["imported"] == 0 for s in two["imports"].values())
    assert {k: two["status"][k] for k in ("contacts", "order_lines", "events", "consents")} == {
        k: held[k] for k in ("contacts", "order_lines", "events", "consents")
    }
    assert two["replay"]["queued"] == 0 and two["journeys"] == journeys  # nothing twice
    assert two["campaigns"] == campaigns


def test_demo_prints_a_readable_summary(cli: CliRunner, env: dict[str, str]) -> None:
    result = cli.invoke(app, ["--now", "2026-11-01T09:00:00Z", "demo", "--customers", "100"])
    assert result.exit_code == 0, result.output
    assert "Your demo shop" in result.output
    assert "abandoned carts" in result.output
    assert "Where customers stand" in result.output
    assert "Journeys over the last" in result.output and "post_purchase" in result.output
    assert "newsletter (done)" in result.output and "winner:" in result.output
    assert "simulated" in result.output


def test_generate_writes_the_generic_formats(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "shop"
    result = cli.invoke(
        app,
        [
            "generate",
            "--customers",
            "50",
            "--seed",
            "3",
            "--out",
            str(out),
            "--end",
            "2026-06-30",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert rows["customers"] == 50
    with open(out / "customers.csv", newline="") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 50
    bad = cli.invoke(app, ["generate", "--out", str(out), "--end", "June"])
    assert bad.exit_code == 2
