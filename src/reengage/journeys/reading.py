"""Reading a journey file: durations and times of day, the problems found (each with its file,
line and field), and `Reader`, which checks a composed YAML document value by value so that
every mistake of a file is reported at once. `definition` builds the journey with it; the
readers of triggers and steps (`triggers`, `steps`) use it too."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from reengage.audience.conditions import Rule
from reengage.audience.rules import Origin, RuleError, parse
from reengage.errors import InputError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"


# --- durations ----------------------------------------------------------------------------

_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([+-]?)(\d+(?:\.\d+)?)(s|min|h|d|w)")


@dataclass(frozen=True, order=True)
class Duration:
    """A length of time, whole seconds, possibly negative (an offset before a date).

    Written as a number and a unit: `90s`, `30min`, `12h`, `3d`, `2w`, `1.5d`, `-3d`. `m` is
    refused as ambiguous (minutes or months?). `str()` gives the canonical form (the largest of
    d, h, min, s that divides it), and `Duration.parse(str(d)) == d`.
    """

    seconds: int

    @classmethod
    def parse(cls, text: str) -> Duration:
        """The duration `text` stands for; ValueError with a readable reason otherwise."""
        compact = text.strip().replace(" ", "")
        match = _DURATION.fullmatch(compact)
        if match is None:
            if re.fullmatch(r"[+-]?\d+(\.\d+)?m", compact):
                raise ValueError(
                    f"{text!r}: 'm' is ambiguous: write minutes as 30min, months as days (90d)"
                )
            if re.fullmatch(r"[+-]?\d+(\.\d+)?", compact):
                raise ValueError(f"{text!r} has no unit: write e.g. {compact}d or {compact}h")
            raise ValueError(f"{text!r} is not a duration: write e.g. 30min, 12h, 3d or 2w")
        sign, number, unit = match.groups()
        exact = float(number) * _UNITS[unit]
        if abs(exact - round(exact)) > 1e-6:
            raise ValueError(f"{text!r} is not a whole number of seconds")
        seconds = round(exact)
        return cls(-seconds if sign == "-" else seconds)

    @property
    def timedelta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __neg__(self) -> Duration:
        return Duration(-self.seconds)

    def __str__(self) -> str:
        magnitude = abs(self.seconds)
        sign = "-" if self.seconds < 0 else ""
        for unit in ("d", "h", "min"):
            if magnitude and magnitude % _UNITS[unit] == 0:
                return f"{sign}{magnitude // _UNITS[unit]}{unit}"
        return f"{sign}{magnitude}s" if magnitude else "0d"


def parse_time_of_day(text: str) -> time:
    """`"10:00"`, `"9:30"`: a wall-clock time (24 hours); ValueError otherwise."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f'{text!r} is not a time of day: write it as HH:MM, e.g. "10:00"')
    return time(int(match.group(1)), int(match.group(2)))


# --- problems -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One mistake in a journey file: where (file, line, column for rules, field) and what."""

    file: str
    line: int | None
    field: str
    message: str
    column: int | None = None
    excerpt: str = ""  # for a rule: the line, and a caret under the problem

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.column is not None:
            where += f", column {self.column}"
        if self.field:
            where += f" ({self.field})"
        return f"{where}: {self.message}" + (f"\n{self.excerpt}" if self.excerpt else "")


class JourneyError(InputError):
    """A journey file that cannot be used: every problem found in it, one per line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def suggest(word: str, options: Sequence[str]) -> str:
    """` (did you mean 'x'?)` when one option is close, else the options."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(options)})"


# --- reading YAML nodes, collecting problems ----------------------------------------------


@dataclass
class Document:
    """A file's root mapping, read far enough to know its name and description."""

    reader: Reader
    root: Any
    nodes: dict[str, Any]
    description: str


def open_document(
    source: str,
    *,
    name: str,
    shown: str,
    what: str,
    keys: Sequence[str],
    error: type[JourneyError] = JourneyError,
) -> Document:
    """The opening every definition file shares (a journey, a campaign): valid YAML, not
    empty, a mapping of known keys, a usable name that matches the file's, an optional
    description. A file that cannot be read further raises `error` at once; a bad name or
    description is recorded in the reader, so the rest of the file is still checked."""
    reader = Reader(shown, source)
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise error([Problem(shown, line, "", f"not valid YAML: {problem}")]) from None
    if root is None:
        raise error([Problem(shown, 1, "", f"the file is empty: a {what} is a mapping")])
    nodes = reader.mapping(root, "", keys, f"a {what}: a mapping with " + ", ".join(keys))
    if nodes is None:
        raise error(reader.problems)
    if not NAME.fullmatch(name):
        reader.fail(root, "", f"{what} name {name!r}: use letters, digits, - and _")
    if "name" in nodes:
        given = reader.text(nodes["name"], "name")
        if given is not None and given != name:
            reader.fail(nodes["name"], "name", f"{given!r} differs from the file name {name!r}")
    description = ""
    if "description" in nodes and not reader.is_null(nodes["description"]):
        description = reader.text(nodes["description"], "description") or ""
    return Document(reader, root, nodes, description)


class Reader:
    """Reads a composed YAML document value by value: each method checks one value and
    returns it, or records a problem (file, line, field) and returns None, so that every
    mistake of a file is found in one pass."""

    def __init__(self, shown: str, source: str) -> None:
        self.shown = shown
        self.source = source
        self.problems: list[Problem] = []

    def fail(self, node: Any, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(self.shown, line, path, message))

    @staticmethod
    def is_null(node: Any) -> bool:
        return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL)

    def mapping(
        self, node: Any, path: str, keys: Sequence[str], what: str = "a mapping"
    ) -> dict[str, Any] | None:
        """The values of a mapping by key; unknown and repeated keys are problems."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"expected {what}")
            return None
        found: dict[str, Any] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            inner = f"{path}.{name}" if path else name
            if name not in keys:
                self.fail(key, inner, f"unknown key {name!r}" + suggest(name, keys))
            elif name in found:
                self.fail(key, inner, f"{name} is given twice")
            else:
                found[name] = value
        return found

    def required(self, nodes: Mapping[str, Any], key: str, parent: Any, path: str) -> Any:
        node = nodes.get(key)
        if node is None:
            self.fail(parent, f"{path}.{key}" if path else key, f"{key} is missing")
        return node

    def sequence(self, node: Any, path: str, what: str = "a list") -> list[Any] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"expected {what}")
            return None
        return list(node.value)

    def raw(self, node: Any, path: str, what: str) -> str | None:
        """A scalar's text as written (so `10:00` stays a time, not YAML 1.1's sexagesimal)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, path, f"expected {what}")
            return None
        return str(node.value)

    def text(self, node: Any, path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            self.fail(node, path, "must be text")
            return None
        return str(node.value)

    def name(self, node: Any, path: str, what: str) -> str | None:
        value = self.raw(node, path, what)
        if value is not None and not NAME.fullmatch(value):
            self.fail(node, path, f"{what} {value!r}: use letters, digits, - and _ (at most 100)")
            return None
        return value

    def choice(self, node: Any, path: str, options: Sequence[str], what: str) -> str | None:
        value = self.raw(node, path, what)
        if value is not None and value not in options:
            self.fail(node, path, f"unknown {what} {value!r}" + suggest(value, options))
            return None
        return value

    def integer(self, node: Any, path: str, low: int, high: int | None = None) -> int | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            self.fail(node, path, "must be a whole number")
            return None
        value = int(yaml.SafeLoader("").construct_object(node))
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.fail(node, path, f"must be {bounds} (found {value})")
            return None
        return value

    def share(self, node: Any, path: str, *, zero: bool) -> float | None:
        """A share of contacts: a number in [0, 1) (or (0, 1)), or a percentage `10%`."""
        value: float | None = None
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(yaml.SafeLoader("").construct_object(node))
        elif isinstance(node, yaml.ScalarNode) and re.fullmatch(r"\d+(\.\d+)?%", node.value):
            value = float(node.value[:-1]) / 100
        if value is None or not (0 <= value < 1) or (value == 0 and not zero):
            low = "0" if zero else "more than 0"
            self.fail(node, path, f"must be a share from {low} to less than 1 (0.1 or 10%)")
            return None
        return value

    def number(self, node: Any, path: str) -> float | None:
        if isinstance(node, yaml.ScalarNode) and node.tag in (_INT, _FLOAT):
            value = float(yaml.SafeLoader("").construct_object(node))
            if value > 0 and value != float("inf"):
                return value
        self.fail(node, path, "must be a number greater than 0")
        return None

    def duration(
        self, node: Any, path: str, *, signed: bool = False, default: str | None = None
    ) -> Duration | None:
        """A duration; a missing node (None) gives `default`, when there is one."""
        if node is None and default is not None:
            return Duration.parse(default)
        text = self.raw(node, path, "a duration such as 30min, 12h, 3d or 2w")
        if text is None:
            return None
        try:
            value = Duration.parse(text)
        except ValueError as exc:
            self.fail(node, path, str(exc))
            return None
        if not signed and value.seconds <= 0:
            self.fail(node, path, f"must be longer than zero (found {text!r})")
            return None
        return value

    def time_of_day(self, node: Any, path: str) -> time | None:
        text = self.raw(node, path, 'a time of day such as "10:00"')
        if text is None:
            return None
        try:  # the text as written: YAML 1.1 alone would read 10:00 as 600 (sexagesimal)
            return parse_time_of_day(text)
        except ValueError as exc:
            self.fail(node, path, str(exc))
            return None

    def scalar(self, node: Any, path: str) -> str | int | float | bool | None:
        """A JSON scalar value: text, number, true/false or null."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, path, "must be text, a number, true, false or null")
            return None
        if node.tag in (_INT, _FLOAT, _BOOL, _NULL):
            value = yaml.SafeLoader("").construct_object(node)
            if isinstance(value, float) and value != value:  # .nan
                self.fail(node, path, "must be a finite number")
                return None
            return value
        return str(node.value)

    def rule(self, node: Any, path: str) -> Rule | None:
        """A segment rule (docs/segments.md), located in the file for its errors."""
        text = self.text(node, path)
        if text is None:
            return None
        origin = Origin.in_file(
            self.shown, self.source, text, node.start_mark.index, node.end_mark.index
        )
        try:
            return parse(text, origin)
        except RuleError as exc:
            excerpt = str(exc).split("\n", 1)[1] if "\n" in str(exc) else ""
            self.problems.append(
                Problem(self.shown, exc.line, path, exc.reason, exc.column, excerpt)
            )
            return None
