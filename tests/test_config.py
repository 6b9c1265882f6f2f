"""Settings: defaults, the home's reengage.toml, REENGAGE_* variables, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import load_settings
from reengage.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"REENGAGE_HOME": str(tmp_path)})
    assert s.state_url == f"sqlite:///{tmp_path.resolve() / 'state.db'}"
    assert s.facts_path == tmp_path.resolve() / "facts"
    assert (s.timezone, s.currency) == ("UTC", "EUR")
    assert load_settings({}).home == Path("reengage-data")


def test_env_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "reengage.toml").write_text('timezone = "Europe/Rome"\ncurrency = "gbp"\n')
    s = load_settings({"REENGAGE_HOME": str(tmp_path), "REENGAGE_CURRENCY": "chf"})
    assert (s.timezone, s.currency) == ("Europe/Rome", "CHF")
    s = load_settings({"REENGAGE_HOME": str(tmp_path), "REENGAGE_FACTS_URL": "/srv/f"})
    assert s.facts_path == Path("/srv/f")


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('timezone = "Mars/Olympus"', {}, "reengage.toml [timezone]: unknown time zone"),
        ("", {"REENGAGE_TIMEZONE": "Nowhere"}, "REENGAGE_TIMEZONE: unknown time zone"),
        ('currency = "euro"', {}, "[currency]: currency must be a 3-letter"),
        ('colour = "blue"', {}, "unknown setting 'colour'"),
        ("timezone = ", {}, "not valid TOML"),
        ("scoring_memory_mb = 100", {}, "[scoring_memory_mb]: must be at least 256"),
        ("", {"REENGAGE_SCORING_MEMORY_MB": "lots"}, "REENGAGE_SCORING_MEMORY_MB"),
    ],
)
def test_bad_values_name_where_and_what(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "reengage.toml").write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings({"REENGAGE_HOME": str(tmp_path), **env})


def test_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["status"], env={"REENGAGE_HOME": str(tmp_path), "REENGAGE_TIMEZONE": "Nowhere"}
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: REENGAGE_TIMEZONE")
    assert "Traceback" not in result.output
