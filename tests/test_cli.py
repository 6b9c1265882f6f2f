"""The command line as a user meets it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from postgres_server import Server
from reengage.cli import app
from reengage.config import Home

COMMAND = typer.main.get_command(app)


def all_commands(group: Any = COMMAND, prefix: tuple[str, ...] = ()) -> list[tuple]:
    """Every command path, subcommands included (groups are the ones with `commands`)."""
    found = []
    for name, cmd in group.commands.items():
        found.append((*prefix, name))
        if hasattr(cmd, "commands"):
            found += all_commands(cmd, (*prefix, name))
    return found


@pytest.mark.parametrize("words", all_commands(), ids=" ".join)
def test_every_command_has_help(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_commands_outside_a_home_say_what_to_do(tmp_path: Path) -> None:
    env = {"REENGAGE_HOME": str(tmp_path / "nowhere")}
    for args in (["status"], ["import", "orders", "x.csv"], ["facts", "compact"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, args
        assert "run `reengage init`" in result.stderr


def test_init_then_status(cli: CliRunner, env: dict[str, str]) -> None:
    first = cli.invoke(app, ["init"])
    assert first.exit_code == 0 and "Created" in first.output
    again = cli.invoke(app, ["init"])
    assert again.exit_code == 0 and "Updated" in again.output
    result = cli.invoke(app, ["status", "--json"])
    data = json.loads(result.stdout)
    for key in ("contacts", "products", "orders", "order_lines", "events", "consents"):
        assert data[key] == 0
    assert "password" not in result.stdout


@pytest.mark.postgres
def test_status_hides_the_database_password(
    cli: CliRunner, pg_server: Server, tmp_path: Path
) -> None:
    env = {
        "REENGAGE_HOME": str(tmp_path),
        "REENGAGE_DATABASE_URL": pg_server.url().replace("postgres@", "postgres:s3cret@"),
    }
    assert cli.invoke(app, ["init"], env=env).exit_code == 0
    result = cli.invoke(app, ["status", "--json"], env=env)
    assert "s3cret" not in result.output
    assert "***" in json.loads(result.stdout)["database"]


def test_facts_compact_lists_as_json(cli: CliRunner, home: Home) -> None:
    result = cli.invoke(app, ["facts", "compact", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {r["kind"] for r in rows} == {"orders", "events", "message_events"}
    bad = cli.invoke(app, ["facts", "compact", "--kind", "tweets"])
    assert bad.exit_code == 2


def test_now_option_fixes_the_clock(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("product_id,title,price\nP1,Shoe,1\nP2,,1\n")
    result = cli.invoke(app, ["--now", "2030-01-02T03:04:05Z", "import", "products", str(path)])
    assert result.exit_code == 3
    assert "products-20300102T030405-p.csv" in result.output
    bad = cli.invoke(app, ["--now", "yesterday", "status"])
    assert bad.exit_code == 2


def test_history_lists_imports_newest_first(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    path = tmp_path / "incoming" / "p.csv"
    path.write_text("product_id,title,price\nP1,Shoe,1\nP2,,1\n")
    cli.invoke(app, ["import", "products", str(path)])
    cli.invoke(app, ["import", "products", str(path)])
    result = cli.invoke(app, ["history", "--json"])
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert [(r["imported"], r["duplicates"], r["rejected"]) for r in runs] == [(0, 1, 1), (1, 0, 1)]
    assert runs[0]["file_name"] == "p.csv"
    assert "incoming" not in result.stdout  # the file's name only, not where it was
    table = cli.invoke(app, ["history"])
    assert "p.csv" in table.output


def test_unreachable_database_is_one_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    env = {"REENGAGE_HOME": str(tmp_path)}
    assert cli.invoke(app, ["init"], env=env).exit_code == 0
    env["REENGAGE_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    result = cli.invoke(app, ["status"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach the state store")
