"""Segment definitions: YAML files in `<home>/segments/`, one per segment.

    # segments/lapsed.yaml
    name: lapsed
    description: Valuable customers slipping away
    rule: lifecycle = "at_risk" and clv > 200 and not purchased within 30d

The file name is the segment's name. Errors name the file, line and column: those of the rule
inside the YAML, whatever the style the rule is written in.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from reengage.audience.conditions import Rule
from reengage.audience.rules import Origin, parse
from reengage.audience.tables import NAME_LENGTH
from reengage.config import Home
from reengage.errors import InputError

FOLDER = "segments"
SUFFIX = ".yaml"
KEYS = ("name", "description", "rule")
NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{NAME_LENGTH - 1}}}")


@dataclass(frozen=True)
class Segment:
    name: str
    description: str | None
    rule: Rule
    path: Path


def folder(home: Home) -> Path:
    return home.path / FOLDER


def display_path(home: Home, path: Path) -> str:
    """How a message names a file: relative to the home when inside it."""
    try:
        return str(path.relative_to(home.path))
    except ValueError:
        return str(path)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InputError(
            f"segment name {name!r}: use letters, digits, - and _ (starting with a letter or "
            f"digit), at most {NAME_LENGTH} characters"
        )
    return name


def load_segment(home: Home, path: Path) -> Segment:
    """Read and check one segment file; an InputError names the file, line and column."""
    shown = display_path(home, path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{shown}: cannot be read as UTF-8 text ({exc})") from None

    def fail(mark: Any, reason: str) -> InputError:
        return InputError(f"{shown} line {mark.line + 1}, column {mark.column + 1}: {reason}")

    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise InputError(f"{shown}: not valid YAML: {problem}") from None
        raise fail(mark, f"not valid YAML: {problem}") from None
    if not isinstance(root, yaml.MappingNode):
        wanted = f"a segment file is a mapping with {', '.join(KEYS)}"
        if root is None:  # an empty file
            raise InputError(f"{shown} line 1, column 1: {wanted}")
        raise fail(root.start_mark, wanted)
    nodes: dict[str, yaml.Node] = {}
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in KEYS:
            raise fail(key.start_mark, f"unknown key {key.value!r}: use {', '.join(KEYS)}")
        if key.value in nodes:
            raise fail(key.start_mark, f"{key.value} is given twice")
        nodes[key.value] = value

    def text(key: str) -> str | None:
        node = nodes.get(key)
        if node is None or (node.tag == "tag:yaml.org,2002:null"):
            return None
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            raise fail(node.start_mark, f"{key} must be text")
        return str(node.value)

    name = path.stem
    given = text("name")
    if given is not None and given != name:
        raise fail(nodes["name"].start_mark, f"name {given!r} differs from the file name {name!r}")
    try:
        check_name(name)
    except InputError as exc:
        raise InputError(f"{shown}: {exc}") from None
    rule_text = text("rule")
    if rule_text is None:
        raise fail(root.start_mark, "rule is missing")
    node = nodes["rule"]
    origin = Origin.in_file(shown, source, rule_text, node.start_mark.index, node.end_mark.index)
    rule = parse(rule_text, origin)
    return Segment(name, text("description"), rule, path)


def load_segments(home: Home, names: Iterable[str] | None = None) -> dict[str, Segment]:
    """Every segment defined in the home (or the named ones), by name."""
    base = folder(home)
    if names is None:
        paths = sorted(base.glob("*" + SUFFIX)) if base.is_dir() else []
    else:
        paths = []
        for name in dict.fromkeys(names):
            path = base / (check_name(name) + SUFFIX)
            if not path.is_file():
                known = sorted(p.stem for p in base.glob("*" + SUFFIX)) if base.is_dir() else []
                raise InputError(
                    f"no segment named {name!r} (in {display_path(home, base)}/: "
                    f"{', '.join(known) or 'none'})"
                )
            paths.append(path)
    loaded = [load_segment(home, p) for p in paths]
    return {s.name: s for s in loaded}


def create_segment(
    home: Home,
    name: str,
    rule: str,
    *,
    description: str | None = None,
    replace: bool = False,
) -> Segment:
    """Check the rule and write the segment's YAML file (atomically)."""
    check_name(name)
    parse(rule, Origin("--rule"))
    path = folder(home) / (name + SUFFIX)
    if path.exists() and not replace:
        raise InputError(f"{display_path(home, path)} exists: give --replace to overwrite it")
    content = _yaml(name, description, rule.strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return load_segment(home, path)


def _yaml(name: str, description: str | None, rule: str) -> str:
    """The file a person would write: the rule as a literal block, easy to edit."""
    lines = [f"name: {name}"]
    if description is not None:
        lines.append(yaml.safe_dump({"description": description}, allow_unicode=True).rstrip())
    body = "\n".join(("  " + line) if line.strip() else "" for line in rule.splitlines())
    lines.append("rule: |-\n" + body)
    content = "\n".join(lines) + "\n"
    expected = {"name": name, "description": description, "rule": rule}
    loaded = yaml.safe_load(content)
    if {k: loaded.get(k) for k in expected} != expected:  # an odd rule: let YAML quote it
        content = yaml.safe_dump(
            {"name": name, "description": description, "rule": rule},
            allow_unicode=True,
            sort_keys=False,
        )
    return content
