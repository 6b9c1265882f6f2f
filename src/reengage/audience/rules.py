"""The segment rule language: parse a rule and check every name and literal against what a
contact has, into a tree of conditions (`conditions`).

    lifecycle = "at_risk" and clv > 200 and not purchased within 30d

A rule that cannot be used raises RuleError, whose message names the place (a YAML file or
`--rule`), line and column, and shows the line with a caret under the problem.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken

from reengage.audience.conditions import (
    Activity,
    Ago,
    And,
    Compare,
    Condition,
    Consents,
    Did,
    HasAddress,
    InList,
    IsNull,
    Literal,
    Not,
    Or,
    Rule,
)
from reengage.audience.fields import ADDRESSES, FIELDS, PREFIXES, Field, Kind, lookup
from reengage.errors import InputError
from reengage.ingest.vocabulary import EVENT_TYPES
from reengage.state.schema import CHANNELS

# words a person may write for an event type
EVENT_ALIASES = {"added_to_cart": "add_to_cart"}
# channels whose messages can be opened or clicked
MESSAGE_CHANNELS = ("email", "sms", "push", "whatsapp")
OPS = ("=", "!=", "<", "<=", ">", ">=")
UNITS = {"d": 1.0, "h": 1 / 24, "w": 7.0}


# --- where a rule's text is, for errors ---------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a rule's text comes from, so that an error points at what a person edits: the
    rule itself (`--rule`), or its place in a YAML file."""

    name: str = "rule"
    lines: tuple[str, ...] = ()
    # for each character of the rule text, its (line, column) in the file, both from 1
    places: tuple[tuple[int, int], ...] = ()

    @classmethod
    def in_file(cls, name: str, source: str, text: str, start: int, end: int) -> Origin:
        """The rule `text` as a YAML scalar found between `start` and `end` of `source`.

        YAML may fold lines, indent a block or quote the rule, but it never changes the order
        of its visible characters: each one is matched to the next equal character of the file.
        """
        line_starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n"]

        def place(index: int) -> tuple[int, int]:
            line = bisect.bisect_right(line_starts, index)
            return line, index - line_starts[line - 1] + 1

        places: list[tuple[int, int]] = []
        i, last = start, place(start)
        for ch in text:
            if not ch.isspace():
                j = source.find(ch, i, end)
                if j >= 0:
                    last, i = place(j), j + 1
                places.append(last)
            else:
                places.append((last[0], last[1] + 1) if places else last)
        return cls(name, tuple(source.split("\n")), tuple(places))

    def locate(self, text: str, offset: int) -> tuple[int, int, str]:
        """(line, column, the line's text) of a character of the rule, or of its end."""
        if self.places and self.lines:
            if offset < len(self.places):
                line, column = self.places[offset]
            else:
                line, column = self.places[-1]
                column += 1
            return line, column, self.lines[line - 1]
        before = text[:offset]
        start = before.rfind("\n") + 1
        stop = text.find("\n", offset)
        shown = text[start:] if stop < 0 else text[start:stop]
        return before.count("\n") + 1, offset - start + 1, shown


class RuleError(InputError):
    """A rule that cannot be used: its message names the place, the line and the column, and
    shows the line with a caret under the problem."""

    def __init__(self, origin: Origin, text: str, offset: int, reason: str) -> None:
        line, column, shown = origin.locate(text, offset)
        self.line, self.column, self.reason = line, column, reason
        pad = "".join(c if c == "\t" else " " for c in shown[: column - 1])
        super().__init__(
            f"{origin.name} line {line}, column {column}: {reason}\n  {shown}\n  {pad}^"
        )


# --- parsing ------------------------------------------------------------------------------


@cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


_SHOWN = {
    "NAME": "a field or event name",
    "NUMBER": "a number",
    "STRING": 'a "text"',
    "DURATION": "a duration such as 30d, 12h or 2w",
    "OP": "a comparison (=, !=, <, <=, >, >=)",
    "BOUND": "least or most",
    "TIMES": "times",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "the end of the rule",
}


def _expected(names: set[str]) -> str:
    shown = sorted({_SHOWN.get(n, n.lower()) for n in names})
    if not shown:
        return ""
    if len(shown) == 1:
        return f": expected {shown[0]}"
    return f": expected one of: {', '.join(shown)}"


def _accepted(text: str, offset: int) -> set[str]:
    """What the parser would take at `offset`: the exact set, which LALR's error tables
    (shared between similar states) only approximate."""
    interactive = _parser().parse_interactive(text[:offset])
    try:
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except UnexpectedInput:
        return set()


def parse(text: str, origin: Origin | None = None) -> Rule:
    """Parse and check a rule; a RuleError points at the first problem."""
    origin = origin or Origin()
    if not text.strip():
        raise RuleError(origin, text, 0, "the rule is empty")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, origin, text) from None
    return Rule(text, _Checker(origin, text).condition(tree))


def _syntax_error(exc: UnexpectedInput, origin: Origin, text: str) -> RuleError:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            end = len(text.rstrip())
            accepts = _accepted(text, len(text))
            return RuleError(origin, text, end, "the rule ends too soon" + _expected(accepts))
        offset = token.start_pos if token.start_pos is not None else 0
        accepts = _accepted(text, offset)
        return RuleError(origin, text, offset, f"unexpected {token.value!r}" + _expected(accepts))
    offset = exc.pos_in_stream or 0
    ch = text[offset] if offset < len(text) else ""
    if ch in "\"'":
        return RuleError(origin, text, offset, f"this text has no closing {ch}")
    accepts = _accepted(text, offset)
    return RuleError(origin, text, offset, f"unexpected {ch!r}" + _expected(accepts))


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/"}


def _unquote(token: str) -> str:
    def one(m: re.Match[str]) -> str:
        s = m.group(1)
        if len(s) == 5:
            return chr(int(s[1:], 16))
        return _SIMPLE_ESCAPES.get(s, s)

    return _ESCAPE.sub(one, token[1:-1])


def _days(duration: str) -> float:
    return float(duration[:-1]) * UNITS[duration[-1].lower()]


def _tok(node: object) -> Token:
    assert isinstance(node, Token)
    return node


def _tree(node: object) -> Tree:
    assert isinstance(node, Tree)
    return node


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Checker:
    """Turns the parse tree into conditions, checking names and literals as it goes."""

    def __init__(self, origin: Origin, text: str) -> None:
        self.origin, self.text = origin, text

    def fail(self, where: Token | Tree, reason: str) -> RuleError:
        if isinstance(where, Token):
            offset = where.start_pos or 0
        else:
            offset = where.meta.start_pos if not where.meta.empty else 0
        return RuleError(self.origin, self.text, offset, reason)

    def condition(self, tree: Tree) -> Condition:
        kind = tree.data
        if kind in ("and_", "or_"):
            parts: list[Condition] = []
            for child in tree.children:
                part = self.condition(child)
                same = And if kind == "and_" else Or
                parts.extend(part.parts if isinstance(part, same) else [part])
            return And(tuple(parts)) if kind == "and_" else Or(tuple(parts))
        if kind == "not_":
            return Not(self.condition(tree.children[0]))
        if kind == "compare":
            name, op, value = tree.children
            return self.compare(self.field(_tok(name)), _tok(op), _tree(value))
        if kind in ("in_list", "not_in_list"):
            name, values = tree.children
            items = [_tree(v) for v in _tree(values).children]
            return self.in_list(self.field(_tok(name)), items, kind == "not_in_list")
        if kind in ("is_null", "is_not_null"):
            return IsNull(self.field(_tok(tree.children[0])), kind == "is_not_null")
        if kind == "has":
            word = _tok(tree.children[0])
            if word.lower() not in ADDRESSES:
                raise self.fail(word, f"has takes {' or '.join(ADDRESSES)}, not {str(word)!r}")
            return HasAddress(word.lower())
        if kind == "consent":
            word = _tok(tree.children[0])
            if word.lower() not in CHANNELS:
                raise self.fail(
                    word,
                    f"unknown channel {str(word)!r}{_suggest(word, list(CHANNELS))}; "
                    f"channels: {', '.join(CHANNELS)}",
                )
            return Consents(word.lower())
        return self.activity(tree)

    def field(self, name: Token) -> Field:
        found = lookup(str(name))
        if found is not None:
            return found
        if str(name) in EVENT_TYPES or str(name) in EVENT_ALIASES:
            raise self.fail(name, f"{str(name)!r} is an event type: write {name} within 7d")
        head = str(name).split(".", 1)[0]
        if head in PREFIXES:
            raise self.fail(name, f"write {head}.NAME, with one name after the dot")
        hint = _suggest(str(name), [*FIELDS, *PREFIXES])
        raise self.fail(name, f"unknown field {str(name)!r}{hint}")

    def literal(self, tree: Tree) -> Literal | tuple[str, float]:
        kind, token = tree.data, (tree.children[0] if tree.children else None)
        if kind == "number":
            return float(str(token))
        if kind == "string":
            return _unquote(str(token))
        if kind in ("true", "false"):
            return kind == "true"
        if kind == "duration":
            return ("duration", _days(str(token)))
        return Ago(_days(str(token)))

    def value(self, field: Field, op: str, tree: Tree) -> Literal:
        raw = self.literal(tree)
        name, kind = field.name, field.kind
        if isinstance(raw, tuple):  # a duration
            if kind is Kind.DAYS:
                return raw[1]
            raise self.fail(tree, f"{name} is {_article(kind)}, not a duration")
        if isinstance(raw, bool):
            if kind is Kind.ANY:
                if op not in ("=", "!="):
                    raise self.fail(tree, "true and false compare with = or != only")
                return raw
            raise self.fail(tree, f"{name} is {_article(kind)}, not true or false")
        if isinstance(raw, Ago):
            if kind in (Kind.TIME, Kind.DATE):
                return raw
            raise self.fail(tree, f"{name} is {_article(kind)}: `ago` is for times")
        if kind in (Kind.NUMBER, Kind.DAYS):
            if isinstance(raw, str):
                raise self.fail(tree, f"{name} is a number: compare it with a number")
            return raw
        if kind is Kind.TEXT:
            if not isinstance(raw, str):
                raise self.fail(tree, f'{name} is text: compare it with a "text"')
            if field.values and op in ("=", "!=") and raw not in field.values:
                raise self.fail(
                    tree,
                    f"{name} is never {raw!r}{_suggest(raw, list(field.values))}; "
                    f"its values: {', '.join(field.values)}",
                )
            return raw
        if kind is Kind.TIME:
            moment = _instant(raw) if isinstance(raw, str) else None
            if moment is None:
                raise self.fail(
                    tree, f'{name} is a time: write "2026-01-01", an ISO 8601 instant or 30d ago'
                )
            return moment
        if kind is Kind.DATE:
            day = _day(raw) if isinstance(raw, str) else None
            if day is None:
                raise self.fail(tree, f'{name} is a date: write "2026-01-01" or 30d ago')
            return day
        return raw  # Kind.ANY: a number or a string

    def compare(self, field: Field, op: Token, tree: Tree) -> Condition:
        symbol = "=" if op == "==" else str(op)
        return Compare(field, symbol, self.value(field, symbol, tree))

    def in_list(self, field: Field, items: list[Tree], negated: bool) -> Condition:
        values = tuple(self.value(field, "=", item) for item in items)
        if field.kind is Kind.ANY:
            # a JSON value is compared by the type of each literal: one comparison each
            parts = tuple(Compare(field, "!=" if negated else "=", v) for v in values)
            return parts[0] if len(parts) == 1 else (And(parts) if negated else Or(parts))
        return InList(field, values, negated)

    def activity(self, tree: Tree) -> Condition:
        kind, children = tree.data, list(tree.children)
        head = _tok(children.pop(0)) if kind in ("event", "opened", "clicked") else None
        options = {c.data: c for c in children if isinstance(c, Tree)}
        if kind == "purchased":
            activity = Activity("orders")
        elif kind == "viewed_product":
            activity = Activity("events", ("product_view",))
        elif kind == "event":
            assert head is not None
            field = lookup(str(head))
            if not options and field is not None and field.kind is Kind.ANY:
                return Compare(field, "=", True)  # `attributes.vip`: the attribute is true
            activity = Activity("events", (self.event_type(head),))
        else:
            assert head is not None
            if head.lower() not in MESSAGE_CHANNELS:
                raise self.fail(
                    head,
                    f"unknown channel {str(head)!r}{_suggest(head, list(MESSAGE_CHANNELS))}; "
                    f"messages go by {', '.join(MESSAGE_CHANNELS)}",
                )
            activity = Activity("messages", (str(kind),), channel=head.lower())
        negate = False
        if "category" in options:
            activity = replace(activity, category=_unquote(str(options["category"].children[0])))
        if "count" in options:
            bound, number = (_tok(c) for c in options["count"].children[:2])
            n = float(str(number))
            if n != int(n) or n < (1 if bound.lower() == "least" else 0):
                low = "at least 1" if bound.lower() == "least" else "0 or more"
                raise self.fail(number, f"a count is a whole number, {low}")
            if bound.lower() == "least":
                activity = replace(activity, at_least=int(n))
            else:  # at most n times: not at least n + 1 times
                activity, negate = replace(activity, at_least=int(n) + 1), True
        if "window" in options:
            token = _tok(options["window"].children[0])
            days = _days(str(token))
            if days <= 0:
                raise self.fail(token, "a window is longer than nothing")
            activity = replace(activity, within_days=days)
        return Not(Did(activity)) if negate else Did(activity)

    def event_type(self, name: Token) -> str:
        word = EVENT_ALIASES.get(str(name), str(name))
        if word in EVENT_TYPES:
            return word
        field = lookup(str(name))
        if field is not None:
            raise self.fail(name, f"{name} is a field: compare it, e.g. {name} {_example(field)}")
        known = [*EVENT_TYPES, *EVENT_ALIASES, *FIELDS]
        raise self.fail(name, f"unknown field or event type {str(name)!r}{_suggest(name, known)}")


def _article(kind: Kind) -> str:
    return {
        Kind.TEXT: "text",
        Kind.NUMBER: "a number",
        Kind.DAYS: "a number of days",
        Kind.TIME: "a time",
        Kind.DATE: "a date",
        Kind.ANY: "an attribute",
    }[kind]


def _example(field: Field) -> str:
    if field.values:
        return f"= {json.dumps(field.values[0])}"
    return {
        Kind.TEXT: '= "text"',
        Kind.NUMBER: "> 100",
        Kind.DAYS: "> 30d",
        Kind.TIME: "< 30d ago",
        Kind.DATE: '> "2000-01-01"',
        Kind.ANY: "= true",
    }[field.kind]
