"""Typed fields and their validation, run as one DuckDB query over a file's string columns.

Each field turns its text into a typed value or NULL; a value that was present but did not
parse is the row's reason for rejection, named after the field. Reasons name the field and
what was expected, never the value (the rejects file shows the value beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from reengage.ingest.csvfile import LINE_COLUMN

FieldType = Literal[
    "id", "text", "email", "amount", "count", "datetime", "date", "boolean", "json", "choice"
]

TRUE_WORDS = ("yes", "y", "true", "t", "1", "si", "sì", "oui", "ja")
FALSE_WORDS = ("no", "n", "false", "f", "0", "non", "nein")
ISO_EXAMPLE = "ISO 8601 such as 2026-03-01T14:05:00Z"
REASON_COLUMN = "__reason"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = False
    choices: tuple[str, ...] = ()
    expected: str | None = None  # what to say when a value does not parse, if not the default


@dataclass(frozen=True)
class ParseOptions:
    """How the file writes its values."""

    zone: str = "UTC"
    decimal_comma: bool = False
    date_format: str | None = None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(_lit(w) for w in words)


def _timestamp(v: str, opts: ParseOptions) -> str:
    """A TIMESTAMPTZ from text: explicit offsets are honoured, the rest is shop-local time."""
    zone = _lit(opts.zone)
    if opts.date_format:
        fmt = _lit(opts.date_format)
        if "%z" in opts.date_format or "%Z" in opts.date_format:
            ts = f"TRY_STRPTIME({v}, {fmt})"
        else:
            ts = f"timezone({zone}, TRY_STRPTIME({v}, {fmt}))"
    else:
        # "2024-01-15 10:23:45 +0100" (Shopify) loses the space DuckDB does not accept
        offset = f"regexp_replace({v}, '\\s+([+-]\\d\\d:?\\d\\d)$', '\\1')"
        ts = (
            f"CASE WHEN regexp_matches({v}, '(Z|[+-]\\d\\d:?\\d\\d)$') "
            f"THEN TRY_CAST({offset} AS TIMESTAMPTZ) "
            f"ELSE timezone({zone}, TRY_CAST({v} AS TIMESTAMP)) END"
        )
    # years outside this range are typing slips (0202, 20024), not history
    return f"(SELECT CASE WHEN year(t) BETWEEN 1970 AND 2100 THEN t END FROM (SELECT {ts} AS t))"


def _parse(field: Field, v: str, opts: ParseOptions) -> tuple[str, str]:
    """(SQL that yields the typed value or NULL, what was expected when it is NULL)."""
    match field.type:
        case "id" | "text":
            return v, "text"
        case "email":
            return (
                f"CASE WHEN regexp_full_match({v}, '[^@\\s,;<>]+@[^@\\s,;<>]+\\.[^@\\s,;<>]+') "
                f"THEN lower({v}) END",
                "not an email address",
            )
        case "amount":
            if opts.decimal_comma:
                pattern = r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"
                text = f"replace(replace({v}, '.', ''), ',', '.')"
                expected = "not a number with a decimal comma (like 12,50 or 1.234,50)"
            else:
                pattern = r"[+-]?\d+(\.\d+)?"
                text = v
                expected = "not a number (like 12.50; for 12,50 use --decimal-comma)"
            return (
                f"CASE WHEN regexp_full_match({v}, '{pattern}') "
                f"THEN TRY_CAST({text} AS DOUBLE) END",
                expected,
            )
        case "count":
            return (
                f"CASE WHEN regexp_full_match({v}, '[+-]?\\d{{1,9}}') "
                f"THEN TRY_CAST({v} AS BIGINT) END",
                "not a whole number",
            )
        case "datetime":
            return _timestamp(v, opts), _date_expected(opts)
        case "date":
            if opts.date_format:
                fmt = _lit(opts.date_format)
                return f"CAST(TRY_STRPTIME({v}, {fmt}) AS DATE)", _date_expected(opts)
            return f"TRY_CAST({v} AS DATE)", _date_expected(opts)
        case "boolean":
            return (
                f"CASE WHEN lower({v}) IN ({_words(TRUE_WORDS)}) THEN true "
                f"WHEN lower({v}) IN ({_words(FALSE_WORDS)}) THEN false END",
                "not yes or no",
            )
        case "json":
            return (
                f"CASE WHEN json_valid({v}) AND json_type({v}) = 'OBJECT' THEN {v} END",
                "not a JSON object",
            )
        case "choice":
            return (
                f"CASE WHEN lower({v}) IN ({_words(field.choices)}) THEN lower({v}) END",
                f"unknown value (known: {', '.join(field.choices)})",
            )
    raise AssertionError(field.type)


def _date_expected(opts: ParseOptions) -> str:
    if opts.date_format:
        return f"not a date in the format {opts.date_format}"
    return f"not a date ({ISO_EXAMPLE}; see --date-format)"


def validate(
    con: duckdb.DuckDBPyConnection,
    raw: pa.Table,
    fields: list[Field],
    opts: ParseOptions,
    row_checks: tuple[tuple[str, str], ...] = (),
) -> tuple[pa.Table, pa.Table]:
    """Split raw string columns into (typed good rows, rejected rows with line and reason).

    `row_checks` are (SQL condition over typed fields that makes a row bad, reason) pairs,
    checked after every field parsed.
    """
    present = set(raw.column_names)
    con.register("__raw", raw)
    try:
        trimmed = ", ".join(
            f"nullif(trim({_q(f.name)}), '') AS {_q(f.name)}"
            if f.name in present
            else f"NULL::VARCHAR AS {_q(f.name)}"
            for f in fields
        )
        parsed, reasons = [], []
        for f in fields:
            v = _q(f.name)
            expr, expected = _parse(f, v, opts)
            expected = f.expected or expected
            parsed.append(f"{expr} AS {v}")
            if f.required:
                reasons.append(f"WHEN __t.{v} IS NULL THEN {_lit(f.name + ': missing')}")
            reasons.append(
                f"WHEN __t.{v} IS NOT NULL AND __p.{v} IS NULL "
                f"THEN {_lit(f.name + ': ' + expected)}"
            )
            if f.type == "amount":
                reasons.append(f"WHEN __p.{v} < 0 THEN {_lit(f.name + ': negative amount')}")
        reasons += [f"WHEN {cond} THEN {_lit(reason)}" for cond, reason in row_checks]
        names = ", ".join(f"__p.{_q(f.name)}" for f in fields)
        sql = f"""
            WITH __t AS (SELECT {LINE_COLUMN}, {trimmed} FROM __raw),
            __p AS (SELECT {LINE_COLUMN}, {", ".join(parsed)} FROM __t)
            SELECT __t.{LINE_COLUMN}, CASE {" ".join(reasons)} END AS {REASON_COLUMN}, {names}
            FROM __t JOIN __p USING ({LINE_COLUMN})
            ORDER BY __t.{LINE_COLUMN}
        """
        checked = con.sql(sql).to_arrow_table()
    finally:
        con.unregister("__raw")
    bad_mask = checked.column(REASON_COLUMN).is_valid()
    bad = checked.filter(bad_mask).select([LINE_COLUMN, REASON_COLUMN])
    good = checked.filter(pc.invert(bad_mask)).drop_columns([REASON_COLUMN])
    return good, bad
