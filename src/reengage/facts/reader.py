"""Read facts with DuckDB: one view per kind, one row per stable id."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from reengage.clock import as_utc
from reengage.facts.kinds import KINDS, FactKind
from reengage.facts.layout import all_part_files, day_dirs, part_files


def connect(root: Path, *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view named after each kind of facts.

    The views keep the first-ingested row of each id, so two writers that raced on the same
    batch never count twice. The file list is taken now: files written later need a new
    connection (or `refresh_views`).
    """
    con = duckdb.connect()
    # Ibis reads epochs through naive timestamps: a session in UTC keeps them true UTC
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    refresh_views(con, root)
    return con


def refresh_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    for kind in KINDS.values():
        _define_view(con, root, kind)


def _listing(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _define_view(con: duckdb.DuckDBPyConnection, root: Path, kind: FactKind) -> None:
    by_day: dict[Path, list[str]] = {}
    for f in all_part_files(root, kind):
        by_day.setdefault(f.parent, []).append(str(f))
    con.register(f"__empty_{kind.name}", pa.table({n: [] for n in kind.columns}, kind.schema))
    con.execute(f"CREATE OR REPLACE VIEW {kind.name} AS {_rows(kind, by_day)}")


MEMORY = "__memory_"


def materialise(con: duckdb.DuckDBPyConnection) -> None:
    """Copy every kind of facts into tables of the connection's own in-memory database, and
    point the views at them: for a replay, which reads the same facts hundreds of times
    and must not pay for opening every day's file each time. Only for facts that fit in
    memory, and that will not change while the connection is used."""
    for kind in KINDS.values():
        con.execute(f"CREATE OR REPLACE TABLE {MEMORY}{kind.name} AS SELECT * FROM {kind.name}")
        con.execute(f"CREATE OR REPLACE VIEW {kind.name} AS SELECT * FROM {MEMORY}{kind.name}")


def materialised(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = $name",
        {"name": f"{MEMORY}orders"},
    ).fetchall()
    return bool(found[0][0])


def size_on_disk(root: Path) -> int:
    """Bytes of Parquet the facts hold."""
    return sum(f.stat().st_size for kind in KINDS.values() for f in all_part_files(root, kind))


def between(
    root: Path,
    name: str,
    low: datetime,
    high: datetime,
    con: duckdb.DuckDBPyConnection | None = None,
) -> str:
    """SQL for the facts of one kind whose day partitions can hold times in [low, high], for
    a connection made by `connect`: a query over a stretch of time opens those files only,
    not every day of the history (`FROM {between(...)} AS e`; the caller still filters on
    the time column). On a `materialise`d connection `con`, the view itself."""
    kind = KINDS[name]
    if con is not None and materialised(con):
        return kind.name
    first = (as_utc(low) - timedelta(days=1)).date().isoformat()
    last = (as_utc(high) + timedelta(days=1)).date().isoformat()
    by_day: dict[Path, list[str]] = {}
    for day, folder in day_dirs(root, kind):
        if first <= day <= last:
            for f in part_files(folder):
                by_day.setdefault(f.parent, []).append(str(f))
    return f"({_rows(kind, by_day)})"


def _rows(kind: FactKind, by_day: dict[Path, list[str]]) -> str:
    """The rows of these files, one per id."""
    if not by_day:
        return f"SELECT * FROM __empty_{kind.name}"
    # A file never repeats an id (the writer and compaction see to it), and an id always falls
    # on the same day, so only days of several files can hold a repeat: only they pay for the
    # one-row-per-id window. After `facts compact`, no day does.
    single = [fs[0] for fs in by_day.values() if len(fs) == 1]
    several = [f for fs in by_day.values() if len(fs) > 1 for f in fs]
    columns = ", ".join(f'"{c}"' for c in kind.columns)
    parts = []
    if single:
        parts.append(
            f"SELECT {columns} FROM read_parquet({_listing(single)}, union_by_name = true)"
        )
    if several:
        parts.append(
            f"""SELECT {columns} FROM read_parquet({_listing(several)}, union_by_name = true)
                QUALIFY row_number() OVER (
                    PARTITION BY "{kind.id_column}" ORDER BY ingested_at) = 1"""
        )
    return " UNION ALL ".join(parts)


def counts(root: Path) -> dict[str, int]:
    """Rows per kind of facts, and distinct orders."""
    con = connect(root)
    try:
        out: dict[str, int] = {}
        [(orders, lines)] = con.sql(
            "SELECT count(DISTINCT order_id), count(*) FROM orders"
        ).fetchall()
        out["orders"], out["order_lines"] = int(orders), int(lines)
        for name in ("events", "message_events"):
            [(count,)] = con.sql(f"SELECT count(*) FROM {name}").fetchall()
            out[name] = int(count)
        return out
    finally:
        con.close()
