"""The docs stay true: every command's help is in docs/cli.md as the CLI prints it, and every
setting, import kind, format, event type and error is documented.

Regenerate docs/cli.md after changing a command: REENGAGE_UPDATE_DOCS=1 pytest tests/test_docs.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reengage import errors
from reengage.cli import app
from reengage.config import FIELDS
from reengage.ingest.formats import CANONICAL, FORMATS
from reengage.ingest.vocabulary import EVENT_TYPES
from test_cli import all_commands

DOCS = Path(__file__).parent.parent / "docs"
CLI_MD = DOCS / "cli.md"
BEGIN, END = "<!-- begin generated help -->", "<!-- end generated help -->"


def rendered_help() -> str:
    parts = []
    for words in [(), *all_commands()]:
        result = CliRunner().invoke(
            app, [*words, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
        )
        text = "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())
        parts.append(f"## reengage {' '.join(words)}".rstrip() + f"\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def test_cli_reference_is_current() -> None:
    doc = CLI_MD.read_text(encoding="utf-8")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    fresh = f"{head}{BEGIN}\n{rendered_help()}\n{END}{tail}"
    if os.environ.get("REENGAGE_UPDATE_DOCS"):
        CLI_MD.write_text(fresh, encoding="utf-8")
        doc = fresh
    assert doc == fresh, "docs/cli.md is stale: REENGAGE_UPDATE_DOCS=1 pytest tests/test_docs.py"


@pytest.mark.parametrize("setting", FIELDS)
def test_every_setting_is_documented(setting: str) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"### `{setting}`" in text
    assert f"REENGAGE_{setting.upper()}" in text


def test_every_event_type_and_column_is_documented() -> None:
    text = (DOCS / "formats.md").read_text(encoding="utf-8")
    for name in EVENT_TYPES:
        assert f"| `{name}` |" in text, name
    for kind, fields in CANONICAL.items():
        assert f"### {kind}" in text
        for field in fields:
            assert re.search(rf"^\| `?{field.name}`? \|", text, re.M), (kind, field.name)
    for name in FORMATS:
        assert f"`{name}`" in text


def test_every_error_is_in_the_error_tree() -> None:
    doc = errors.__doc__ or ""
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, errors.ReengageError):
            assert name in doc
            assert f"exit {value.exit_code}" in doc.split(name, 1)[1].splitlines()[0]
