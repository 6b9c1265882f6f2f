"""Conditions on contacts, their latest scores and their consents, as SQL over the state
store (SQLAlchemy Core: the same expressions run on SQLite and PostgreSQL).

Every expression here is true or false, never NULL: a comparison with a missing value is
false (`coalesce(..., false)`), so `not` means "not true" and a rule reads as it is written.
A JSON value (custom attributes, score details) is compared only when its JSON type matches
the literal's: `attributes.points > 100` is false for a points of "many".

Activities (`purchased within 30d`) are not computed here: `behaviour` counts them over the
facts and `matching` loads the result into a table this module reads one bit of per activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    FromClause,
    Table,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    true,
)

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
    walk,
)
from reengage.audience.fields import Field, Kind, Source
from reengage.state.schema import consents, contacts, scores

PURPOSE = "marketing"


@dataclass
class Scope:
    """What a condition is evaluated against: one row per contact, with the latest scores row
    (`score`, joined when some condition reads it) and the contact's activity bits."""

    dialect: str
    now: datetime
    contact: FromClause = field(default_factory=lambda: contacts)
    score: FromClause | None = None
    activity: Table | None = None
    # the column and bit of each activity in the activity table
    bits: dict[Activity, tuple[str, int]] = field(default_factory=dict)


def join_latest_scores(joined: FromClause, scope: Scope) -> FromClause:
    """Outer-join each contact's latest scores row dated no later than `scope.now` (by
    as_of: a rule evaluated as of a past date does not see scores computed for later ones)
    and set `scope.score` to it.

    SQLite looks the row up through the (contact_id, as_of) index, contact by contact;
    PostgreSQL hashes one GROUP BY over the table.
    """
    row = scores.alias("s")
    contact_id = scope.contact.c.id
    if scope.dialect == "sqlite":
        newest = (
            select(func.max(scores.c.as_of)).where(
                scores.c.contact_id == contact_id, scores.c.as_of <= scope.now
            )
        ).scalar_subquery()
        scope.score = row
        return joined.outerjoin(row, and_(row.c.contact_id == contact_id, row.c.as_of == newest))
    latest = (
        select(scores.c.contact_id, func.max(scores.c.as_of).label("as_of"))
        .where(scores.c.as_of <= scope.now)
        .group_by(scores.c.contact_id)
        .subquery("newest")
    )
    scope.score = row
    return joined.outerjoin(latest, latest.c.contact_id == contact_id).outerjoin(
        row, and_(row.c.contact_id == latest.c.contact_id, row.c.as_of == latest.c.as_of)
    )


def to_sql(condition: Condition, scope: Scope) -> ColumnElement[bool]:
    """The condition as a SQL boolean that is never NULL."""
    if isinstance(condition, And):
        return and_(*(to_sql(p, scope) for p in condition.parts))
    if isinstance(condition, Or):
        return or_(*(to_sql(p, scope) for p in condition.parts))
    if isinstance(condition, Not):
        return not_(to_sql(condition.part, scope))
    if isinstance(condition, Compare):
        return _compare(condition, scope)
    if isinstance(condition, InList):
        kind = _want(condition.field, condition.values[0])
        column = _value(condition.field, kind, scope)
        items = [_bind(condition.field, v, scope) for v in condition.values]
        test = column.not_in(items) if condition.negated else column.in_(items)
        return _known(test)
    if isinstance(condition, IsNull):
        column = _value(condition.field, "raw", scope)
        return column.is_not(None) if condition.negated else column.is_(None)
    if isinstance(condition, HasAddress):
        column = scope.contact.c[condition.address]
        return _known(and_(column.is_not(None), column != ""))
    if isinstance(condition, Consents):
        return _consents(condition.channel, scope)
    assert isinstance(condition, Did)
    return _did(condition.activity, scope)


def _known(test: ColumnElement[Any]) -> ColumnElement[bool]:
    return func.coalesce(test, false())


def _compare(c: Compare, scope: Scope) -> ColumnElement[bool]:
    want = _want(c.field, c.value)
    column = _value(c.field, want, scope)
    value = _bind(c.field, c.value, scope)
    as_text = want == "text" and (
        c.field.kind in (Kind.TEXT, Kind.ANY) or c.field.source is Source.DETAIL
    )
    if as_text and c.op not in ("=", "!=") and scope.dialect == "postgresql":
        # text in code-point order, as SQLite and Python compare it, whatever the locale
        column = column.collate("C")
    tests = {
        "=": lambda: column == value,
        "!=": lambda: column != value,
        "<": lambda: column < value,
        "<=": lambda: column <= value,
        ">": lambda: column > value,
        ">=": lambda: column >= value,
    }
    return _known(tests[c.op]())


def _want(field: Field, value: Literal) -> str:
    """How a JSON value must be read to compare with this literal: number, text or bool."""
    if field.kind is Kind.ANY:
        if isinstance(value, bool):
            return "bool"
        return "number" if isinstance(value, float) else "text"
    return "number" if field.kind in (Kind.NUMBER, Kind.DAYS) else "text"


def _bind(field: Field, value: Literal, scope: Scope) -> Any:
    """The literal as the stored value is kept: times in UTC, JSON times as ISO text."""
    if isinstance(value, Ago):
        moment = scope.now - timedelta(days=value.days)
        value = moment.date() if field.kind is Kind.DATE else moment
    if isinstance(value, datetime):
        value = value.astimezone(UTC)
        if field.source is Source.DETAIL:
            return value.isoformat()
    if isinstance(value, date) and field.source is Source.DETAIL:
        return value.isoformat()
    return value


def _value(field: Field, want: str, scope: Scope) -> ColumnElement[Any]:
    if field.source is Source.CONTACT:
        return scope.contact.c[field.key]
    if field.source is Source.SCORE:
        assert scope.score is not None
        return scope.score.c[field.key]
    if field.source is Source.DETAIL:
        assert scope.score is not None
        document = scope.score.c.details
    else:
        document = scope.contact.c.attributes
    return _json(document, field.keys, want, scope.dialect)


def _json(document: Any, keys: tuple[str, ...], want: str, dialect: str) -> ColumnElement[Any]:
    """A key (or a nested one: keys outermost first) of a JSON column read as a number, text
    or boolean, NULL when it holds another JSON type ("raw": its text, NULL when it is missing
    or null)."""
    if dialect == "postgresql":
        item = document[keys[0]] if len(keys) == 1 else document[keys]
        text = item.as_string()
        if want == "raw":
            return text
        typeof = func.json_typeof(item)
        if want == "number":
            return case((typeof == "number", cast(text, Float)))
        if want == "bool":
            return case((typeof == "boolean", text == "true"))
        return case((typeof == "string", text))
    path = "$" + "".join('."' + key + '"' for key in keys)  # identifiers: nothing to escape
    value = func.json_extract(document, path)
    if want == "raw":
        return value
    typeof = func.json_type(document, path)
    if want == "number":
        return case((typeof.in_(("integer", "real")), value))
    if want == "bool":
        return case((typeof.in_(("true", "false")), typeof == "true"))
    return case((typeof == "text", value))


def _consents(channel: str, scope: Scope) -> ColumnElement[bool]:
    """The contact's latest marketing consent on the channel is a grant."""
    given, later = consents.alias("given"), consents.alias("later")
    superseded = exists().where(
        later.c.contact_id == given.c.contact_id,
        later.c.channel == given.c.channel,
        later.c.purpose == given.c.purpose,
        later.c.recorded_at > given.c.recorded_at,
    )
    return exists().where(
        given.c.contact_id == scope.contact.c.id,
        given.c.channel == channel,
        given.c.purpose == PURPOSE,
        given.c.granted == true(),
        ~superseded,
    )


def _did(activity: Activity, scope: Scope) -> ColumnElement[bool]:
    assert scope.activity is not None
    column, bit = scope.bits[activity]
    flags = func.coalesce(scope.activity.c[column], 0)
    return flags.op("&", return_type=BigInteger)(literal_column(str(1 << bit), BigInteger)) != 0


def reads_scores(conditions: list[Condition]) -> bool:
    """Whether any condition needs the latest scores row joined."""
    return any(
        isinstance(c, Compare | InList | IsNull) and c.field.source in (Source.SCORE, Source.DETAIL)
        for condition in conditions
        for c in walk(condition)
    )
