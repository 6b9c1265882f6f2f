"""The docs stay true: every command's help is in docs/cli.md as the CLI prints it, and every
setting, import kind, format, event type and error is documented.

Regenerate docs/cli.md after changing a command: REENGAGE_UPDATE_DOCS=1 pytest tests/test_docs.py
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

from reengage import errors
from reengage.config import FIELDS
from reengage.ingest.formats import CANONICAL, FORMATS
from reengage.ingest.vocabulary import EVENT_TYPES
from test_cli import COMMAND, all_commands

DOCS = Path(__file__).parent.parent / "docs"
CLI_MD = DOCS / "cli.md"
BEGIN, END = "<!-- begin generated help -->", "<!-- end generated help -->"


def _command(words: tuple[str, ...]) -> Any:
    cmd = COMMAND
    for word in words:
        cmd = cmd.commands[word]
    return cmd


def _reference(words: tuple[str, ...]) -> str:
    """A command's help as a Markdown section: built from the command itself, so it is the
    same whichever Typer or Rich release renders the terminal help."""
    cmd = _command(words)
    title = " ".join(("reengage", *words))
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    usage = " ".join(
        [title, "[OPTIONS]", *(p.name.upper() for p in arguments)]
        + (["COMMAND [ARGS]..."] if hasattr(cmd, "commands") else [])
    )
    lines = [f"## {title}", "", f"`{usage}`", "", inspect.cleandoc(cmd.help or ""), ""]
    rows = []
    for p in cmd.params:
        name = p.name.upper() if p.param_type_name == "argument" else ", ".join(p.opts)
        default = ""
        if p.param_type_name == "option" and p.default not in (None, False, ()):
            default = f" (default: `{p.default}`)"
        envvar = f" Env: `{p.envvar}`." if getattr(p, "envvar", None) else ""
        rows.append(f"| `{name}` | {(p.help or '').replace('|', '/')}{default}{envvar} |")
    if rows:
        lines += ["| argument or option | meaning |", "| --- | --- |", *rows, ""]
    if hasattr(cmd, "commands"):
        lines += ["| command | what it does |", "| --- | --- |"]
        for name, sub in cmd.commands.items():
            summary = inspect.cleandoc(sub.help or "").splitlines()[0] if sub.help else ""
            lines.append(f"| `{name}` | {summary} |")
        lines.append("")
    return "\n".join(lines)


def rendered_help() -> str:
    return "\n".join(_reference(words) for words in [(), *all_commands()])


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


def test_every_feature_rfm_segment_and_stage_is_documented() -> None:
    from reengage.analytics.lifecycle import STAGES
    from reengage.analytics.rfm import SEGMENTS

    text = (DOCS / "understanding.md").read_text(encoding="utf-8")
    for name in (*STAGES, *SEGMENTS):
        assert re.search(rf"^\| {re.escape(name)} \|", text, re.M), name
    for column in ("recency_days", "frequency", "monetary", "cart_value", "spend_trend"):
        assert f"`{column}`" in text
