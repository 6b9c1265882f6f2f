"""Engines and migrations for the state store."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from reengage.errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

MIGRATIONS = Path(__file__).parent / "migrations"


def engine_for(url: str) -> Engine:
    """An engine for a state URL: SQLite in WAL mode with foreign keys on, or PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database_url: not a database URL: {redact(url)!r}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    raise ConfigError(f"database_url: {backend!r} is not supported (use sqlite or postgresql)")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def redact(url: str) -> str:
    """The URL without its password, for messages and status output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision; safe to run on an up-to-date store."""
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise StoreError(f"state store {redact(str(engine.url))}: {exc.orig}") from None
    return head_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one go, as `conn.execute(table.insert(), rows)` would store them:
    COPY on PostgreSQL, one driver-level executemany on SQLite (SQLAlchemy's per-row
    parameter processing is most of the cost of a large insert)."""
    if not rows:
        return
    names = [c.name for c in table.columns if c.name in rows[0]]
    bulk_insert_columns(conn, table, {n: [r.get(n) for r in rows] for n in names})


def bulk_insert_columns(conn: Connection, table: Table, data: Mapping[str, Sequence[Any]]) -> None:
    """bulk_insert for data held column by column (equal lengths). A JSON column takes Python
    values, or text that is JSON already (so an engine can serialise it in bulk)."""
    columns = [table.c[name] for name in data]
    values = [data[c.name] for c in columns]
    if not values or not len(values[0]):
        return
    names = ", ".join(f'"{c.name}"' for c in columns)
    driver = conn.connection.driver_connection
    assert driver is not None  # a live connection inside the caller's transaction
    if conn.dialect.name == "postgresql":
        from psycopg.types.json import Json

        def pg(value: Any) -> Any:
            return value if value is None or isinstance(value, str) else Json(value)

        fixed = [
            [pg(v) for v in vs] if isinstance(c.type, JSON) else vs
            for c, vs in zip(columns, values, strict=True)
        ]
        with driver.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in zip(*fixed, strict=True):
                copy.write_row(row)
        return
    if conn.dialect.name != "sqlite":
        rows = [dict(zip(data, row, strict=True)) for row in zip(*values, strict=True)]
        conn.execute(table.insert(), rows)
        return
    fixed = [_lite_column(c, vs) for c, vs in zip(columns, values, strict=True)]
    marks = ", ".join("?" for _ in columns)
    cursor = driver.cursor()
    try:
        cursor.executemany(
            f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})', zip(*fixed, strict=True)
        )
    finally:
        cursor.close()


#: how SQLAlchemy's SQLite dialect writes a UTC instant: an engine building rows for
#: bulk_insert_columns may hand SQLite instants as this text already
SQLITE_INSTANT = "%Y-%m-%d %H:%M:%S.%f"


def arrow_values(column: pa.Array) -> list[Any]:
    """An Arrow column as Python values for bulk_insert_columns. Numbers go through numpy,
    several times faster than Arrow's to_pylist on a million rows; missing ones stay None."""
    import pyarrow as pa  # here: state is imported by every command, Arrow only by some
    import pyarrow.compute as pc

    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column.to_pylist()
    if not column.null_count:
        return column.to_numpy().astype(object).tolist()
    values = pc.fill_null(column, 0).to_numpy().astype(object)
    values[column.is_null().to_numpy(zero_copy_only=False)] = None
    return values.tolist()


def _lite_column(column: Column[Any], values: Sequence[Any]) -> Sequence[Any]:
    """The text SQLAlchemy's SQLite dialect writes for these values, so they read back the same."""

    def lite(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(column.type, JSON):
            return value if isinstance(value, str) else json.dumps(value)
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value.strftime(SQLITE_INSTANT)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value

    sample = next((v for v in values if v is not None), None)
    if sample is None or (
        isinstance(sample, int | float | str)
        and not isinstance(sample, bool)
        and not isinstance(column.type, JSON)
    ):
        return values  # numbers and text go to SQLite as they are
    return [lite(v) for v in values]


def insert_new(conn: Connection, table: Table, values: Mapping[str, Any]) -> int | None:
    """Insert one row unless it breaks a unique constraint: its id, or None when it would.

    ON CONFLICT DO NOTHING rather than a savepoint: pysqlite starts no transaction before a
    SAVEPOINT, so releasing one that opens the transaction commits it, and a later rollback
    of the caller's transaction would not undo the row.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    statement = (
        postgresql.insert(table).values(**values).on_conflict_do_nothing()
        if conn.dialect.name == "postgresql"
        else sqlite.insert(table).values(**values).on_conflict_do_nothing()
    )
    found = conn.execute(statement.returning(table.c.id)).scalar_one_or_none()
    return None if found is None else int(found)


def insert_missing(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert the rows that break no unique constraint, skip the others (ON CONFLICT DO
    NOTHING, for the reason `insert_new` gives)."""
    from sqlalchemy.dialects import postgresql, sqlite

    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))


def bulk_update(
    conn: Connection, table: Table, key: str, data: Mapping[str, Sequence[Any]]
) -> None:
    """Set columns of many rows at once, row by row values held column by column: `data`
    has the `key` column (which rows) and the columns to set, of equal lengths. One
    driver-level executemany on SQLite; on PostgreSQL one UPDATE ... FROM unnest(arrays).
    Per-row parameter processing by SQLAlchemy is most of the cost of an executemany update
    of thousands of rows, as for inserts (`bulk_insert`)."""
    names = [n for n in data if n != key]
    if not names or not len(data[key]):
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql":
        columns = [key, *names]
        arrays = ", ".join(
            f"%s::{table.c[n].type.compile(dialect=conn.dialect)}[]" for n in columns
        )
        sets = ", ".join(f'"{n}" = v."{n}"' for n in names)
        listed = ", ".join(f'"{n}"' for n in columns)
        with driver.cursor() as cur:
            cur.execute(
                f'UPDATE "{table.name}" AS t SET {sets} '
                f"FROM unnest({arrays}) AS v({listed}) "
                f'WHERE t."{key}" = v."{key}"',
                [list(data[n]) for n in columns],
            )
        return
    if conn.dialect.name != "sqlite":
        raise NotImplementedError(conn.dialect.name)
    fixed = [_lite_column(table.c[n], data[n]) for n in (*names, key)]
    sets = ", ".join(f'"{n}" = ?' for n in names)
    cursor = driver.cursor()
    try:
        cursor.executemany(
            f'UPDATE "{table.name}" SET {sets} WHERE "{key}" = ?', zip(*fixed, strict=True)
        )
    finally:
        cursor.close()


def among(conn: Connection, column: Any, values: Iterable[Any]) -> Any:
    """`column IN (values)` for a query on `conn`; on PostgreSQL `column = ANY(array)`: one
    array parameter instead of one per value, which psycopg must not parse out of a long
    statement (five times faster for a thousand ids)."""
    listed = list(values)
    if conn.dialect.name == "postgresql":
        from sqlalchemy import any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, listed, type_=ARRAY(column.type)))
    return column.in_(listed)
