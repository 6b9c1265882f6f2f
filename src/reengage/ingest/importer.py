"""`reengage import`: read a file, validate every row, keep the good ones, report the bad.

read = imported + duplicates + rejected, always. Exit code 0 when nothing was rejected, 3 when
some rows were (the good ones are kept), 2 when the file cannot be used at all (nothing is
written then).

The same path imports a table already in memory (`import_table`): the order webhooks build one
from a request's JSON and hand it over, so a webhook's rows are validated, deduplicated,
stored, counted in the `imports` history and their rejects written exactly as a file's.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from reengage.clock import Clock
from reengage.config import Home, Settings
from reengage.errors import EXIT_OK, EXIT_REJECTED_ROWS, InputError
from reengage.ingest.csvfile import CHUNK_BYTES, LINE_COLUMN, RawTable
from reengage.ingest.fields import ParseOptions, validate
from reengage.ingest.formats import Format, format_for
from reengage.ingest.stores import (
    Stored,
    store_customers,
    store_events,
    store_orders,
    store_products,
)
from reengage.state.schema import imports

Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)
Pieces = Iterable[tuple[RawTable, int, int]]  # (records, bytes done, bytes in all)


@dataclass
class ImportSummary:
    kind: str
    format: str
    read: int
    imported: int
    duplicates: int
    rejected: int
    rejects_file: str | None
    created_contacts: int = 0
    created_products: int = 0
    consents_recorded: int = 0
    # (line, reason) of each rejected row, by line: for answers that list them (the webhooks);
    # not part of as_dict, which is what `reengage import --json` prints
    reasons: list[tuple[int, str]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, object]:
        found = asdict(self)
        del found["reasons"]
        return found

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTED_ROWS if self.rejected else EXIT_OK


def import_file(
    home: Home,
    engine: Engine,
    kind: str,
    path: Path,
    *,
    clock: Clock,
    format: str = "generic",
    delimiter: str | None = None,
    decimal_comma: bool = False,
    date_format: str | None = None,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> ImportSummary:
    """Import a file piece by piece (each piece one state transaction with its facts), so
    memory stays bounded whatever the file's size; a crash midway leaves whole pieces, and
    importing the file again completes it without storing anything twice."""
    fmt = format_for(format, kind)
    return _import(
        home.settings,
        engine,
        fmt,
        kind,
        fmt.pieces(kind, path, delimiter, chunk_bytes),
        clock=clock,
        source=path,
        decimal_comma=decimal_comma,
        date_format=date_format,
        progress=progress,
    )


def import_table(
    home_or_settings: Home | Settings,
    engine: Engine,
    kind: str,
    raw: RawTable,
    *,
    clock: Clock,
    format: str = "generic",
    source_name: str = "table",
    decimal_comma: bool = False,
    date_format: str | None = None,
) -> ImportSummary:
    """Import records already in memory (string columns named as the format's file header,
    plus `__line`) as one piece: one state transaction with its facts.

    `source_name` stands for the file's name: in the `imports` history (`webhook:shopify`)
    and, made safe for a file name, in the rejects file's name. A required column absent from
    `raw.header` is an InputError and nothing is written, as for a file.
    """
    fmt = format_for(format, kind)
    settings = home_or_settings.settings if isinstance(home_or_settings, Home) else home_or_settings
    return _import(
        settings,
        engine,
        fmt,
        kind,
        [(raw, 0, 0)],
        clock=clock,
        source=Path(source_name),
        decimal_comma=decimal_comma,
        date_format=date_format,
        progress=None,
    )


def _import(
    settings: Settings,
    engine: Engine,
    fmt: Format,
    kind: str,
    pieces: Pieces,
    *,
    clock: Clock,
    source: Path,
    decimal_comma: bool,
    date_format: str | None,
    progress: Progress | None,
) -> ImportSummary:
    """Validate and store each piece, then write the rejects file and the history row."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if date_format:
        _check_date_format(con, date_format)
    opts = fmt.options(
        ParseOptions(zone=settings.timezone, decimal_comma=decimal_comma, date_format=date_format)
    )
    now = clock.now()
    total = Stored()
    read = 0
    header: list[str] = []
    rejected: list[tuple[int, str, list[str]]] = []
    try:
        for raw, done, size in pieces:
            if not header:
                fmt.check_columns(kind, raw, source)  # before anything is stored
                header = raw.header
            stored, bad = _import_piece(con, engine, fmt, kind, raw, opts, settings, now)
            read += raw.read
            rejected += bad
            total.imported += stored.imported
            total.duplicates += stored.duplicates
            total.created_contacts += stored.created_contacts
            total.created_products += stored.created_products
            total.consents += stored.consents
            if progress:
                progress(f"importing {kind}", done, size)
    finally:
        con.close()

    rejects_file = (
        _write_rejects(settings, kind, source.name, header, rejected, clock) if rejected else None
    )
    summary = ImportSummary(
        kind=kind,
        format=fmt.name,
        read=read,
        imported=total.imported,
        duplicates=total.duplicates,
        rejected=len(rejected),
        rejects_file=str(rejects_file) if rejects_file else None,
        created_contacts=total.created_contacts,
        created_products=total.created_products,
        consents_recorded=total.consents,
        reasons=sorted((line, reason) for line, reason, _ in rejected),
    )
    with engine.begin() as conn:
        conn.execute(
            imports.insert().values(
                kind=kind,
                format=fmt.name,
                file_name=source.name,
                started_at=now,
                finished_at=clock.now(),
                read=summary.read,
                imported=summary.imported,
                duplicates=summary.duplicates,
                rejected=summary.rejected,
                created_contacts=summary.created_contacts,
                created_products=summary.created_products,
                rejects_file=summary.rejects_file,
            )
        )
    return summary


def _import_piece(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    fmt: Format,
    kind: str,
    raw: RawTable,
    opts: ParseOptions,
    settings: Settings,
    now: datetime,
) -> tuple[Stored, list[tuple[int, str, list[str]]]]:
    """Validate and store one piece; its rejected rows with line, reason and fields."""
    table = raw.table
    if (prepare := fmt.prepare_sql(kind)) is not None:
        con.register("__raw", table)
        table = con.sql(prepare).to_arrow_table()
        con.unregister("__raw")
    good, bad = validate(con, table, fmt.fields(kind), opts, fmt.row_checks(kind))
    con.register("__typed", good)
    canonical = con.sql(fmt.canonical_sql(kind, settings.currency)).to_arrow_table()
    con.unregister("__typed")

    with engine.begin() as conn:
        stored: Stored
        if kind == "customers":
            stored = store_customers(conn, canonical, now)
        elif kind == "products":
            stored = store_products(conn, canonical, now)
        elif kind == "orders":
            stored = store_orders(conn, con, canonical, settings.facts_path, now)
        else:
            stored = store_events(conn, con, canonical, settings.facts_path, now)

    rejected = [(r.line, r.reason, r.fields) for r in raw.rejected]
    reasons = dict(zip(bad.column(LINE_COLUMN).to_pylist(), bad.column(1).to_pylist(), strict=True))
    reasons.update(dict(stored.rejected))
    return stored, rejected + _raw_fields(raw, reasons)


def _check_date_format(con: duckdb.DuckDBPyConnection, date_format: str) -> None:
    if "%" not in date_format:
        raise InputError(f"--date-format {date_format!r}: use strftime codes such as %d/%m/%Y")
    try:
        con.sql("SELECT try_strptime('2000-01-01', $fmt)", params={"fmt": date_format}).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"--date-format {date_format!r}: {exc}") from None


def _raw_fields(raw: RawTable, reasons: dict[int, str]) -> list[tuple[int, str, list[str]]]:
    if not reasons:
        return []
    lines = raw.table.column(LINE_COLUMN)
    rows = raw.table.filter(pc.is_in(lines, value_set=pa.array(list(reasons), pa.int64())))
    names = [n for n in raw.header if n in rows.column_names]
    out = []
    for row in rows.to_pylist():
        out.append((row[LINE_COLUMN], reasons[row[LINE_COLUMN]], [row[n] or "" for n in names]))
    return out


def _write_rejects(
    settings: Settings,
    kind: str,
    source_name: str,
    header: list[str],
    rejected: list[tuple[int, str, list[str]]],
    clock: Clock,
) -> Path:
    folder = settings.rejects_path
    folder.mkdir(parents=True, exist_ok=True)
    stamp = clock.now().strftime("%Y%m%dT%H%M%S")
    stem = UNSAFE_IN_NAMES.sub("-", Path(source_name).stem)
    target = _reserve(folder, f"{kind}-{stamp}-{stem}")
    tmp = target.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "reason", *header])
        for line, reason, fields in sorted(rejected, key=lambda r: r[0]):
            writer.writerow([line, reason, *fields])
    tmp.replace(target)
    return target


UNSAFE_IN_NAMES = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def _reserve(folder: Path, name: str) -> Path:
    """A new file `name.csv` in folder, or `name-2.csv`, `name-3.csv`...: two imports in the
    same second (webhooks, often) never write over each other's rejects."""
    number = 1
    while True:
        target = folder / (f"{name}.csv" if number == 1 else f"{name}-{number}.csv")
        try:
            with open(target, "x", encoding="utf-8"):
                return target
        except FileExistsError:
            number += 1
