"""A rule as a tree of conditions: what `rules.parse` builds from the text and what
`predicates` (state SQL) and `behaviour` (DuckDB over the facts) compile.

Every condition is true or false for every contact, never unknown: a comparison with a
missing value is false, and `not` turns it true (docs/segments.md, "Missing values").
`render` writes a condition back as canonical rule text; parsing that text gives the same
condition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from reengage.audience.fields import Field


@dataclass(frozen=True)
class Ago:
    """An instant relative to the evaluation time: `30d ago`."""

    days: float


Literal = str | float | bool | datetime | date | Ago


@dataclass(frozen=True)
class Activity:
    """Something a contact did, counted over the facts: one of a rule's behavioural atoms.

    source: "orders" (valid orders), "events" (the event types in `types`) or "messages"
    (message events of `channel` whose type is in `types`: opened or clicked).
    """

    source: str
    types: tuple[str, ...] = ()
    channel: str | None = None
    category: str | None = None
    at_least: int = 1
    within_days: float | None = None


@dataclass(frozen=True)
class And:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Literal


@dataclass(frozen=True)
class InList:
    field: Field
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    field: Field
    negated: bool = False


@dataclass(frozen=True)
class HasAddress:
    address: str


@dataclass(frozen=True)
class Consents:
    channel: str


@dataclass(frozen=True)
class Did:
    activity: Activity


Condition = And | Or | Not | Compare | InList | IsNull | HasAddress | Consents | Did


@dataclass(frozen=True)
class Rule:
    text: str
    condition: Condition

    @property
    def activities(self) -> set[Activity]:
        return {c.activity for c in walk(self.condition) if isinstance(c, Did)}

    @property
    def fields(self) -> set[Field]:
        return {c.field for c in walk(self.condition) if isinstance(c, Compare | InList | IsNull)}

    def __str__(self) -> str:
        return render(self.condition)


def walk(condition: Condition) -> Iterator[Condition]:
    yield condition
    if isinstance(condition, And | Or):
        for part in condition.parts:
            yield from walk(part)
    elif isinstance(condition, Not):
        yield from walk(condition.part)


# --- the rule as text again ---------------------------------------------------------------


def render(condition: Condition) -> str:
    """The condition as canonical rule text: parsing it gives the same condition back."""
    if isinstance(condition, And | Or):
        word = " and " if isinstance(condition, And) else " or "
        return word.join(_wrapped(p, condition) for p in condition.parts)
    if isinstance(condition, Not):
        inner = condition.part
        text = render(inner)
        return f"not ({text})" if isinstance(inner, And | Or) else f"not {text}"
    if isinstance(condition, Compare):
        return f"{condition.field.name} {condition.op} {_literal(condition.value)}"
    if isinstance(condition, InList):
        word = " not in " if condition.negated else " in "
        return condition.field.name + word + "(" + ", ".join(map(_literal, condition.values)) + ")"
    if isinstance(condition, IsNull):
        return f"{condition.field.name} is {'not ' if condition.negated else ''}null"
    if isinstance(condition, HasAddress):
        return f"has {condition.address}"
    if isinstance(condition, Consents):
        return f"can {condition.channel}"
    return _activity(condition.activity)


def _wrapped(part: Condition, parent: And | Or) -> str:
    needs = isinstance(part, And | Or) and type(part) is not type(parent)
    return f"({render(part)})" if needs else render(part)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _literal(value: Literal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Ago):
        return f"{_number(value.days)}d ago"
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)


def _activity(a: Activity) -> str:
    if a.source == "orders":
        words = "purchased"
    elif a.source == "messages":
        words = f"{a.types[0]} {a.channel}"
    elif a.types == ("product_view",):
        words = "viewed product"
    else:
        words = a.types[0]
    if a.category is not None:
        words += f" in category {json.dumps(a.category, ensure_ascii=False)}"
    if a.at_least != 1:
        words += f" at least {a.at_least} times"
    if a.within_days is not None:
        words += f" within {_number(a.within_days)}d"
    return words
