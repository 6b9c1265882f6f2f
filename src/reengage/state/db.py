"""Engines and migrations for the state store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, Connection, Engine, Table, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from reengage.errors import ConfigError, StoreError

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
    columns = [c for c in table.columns if c.name in rows[0]]
    names = ", ".join(f'"{c.name}"' for c in columns)
    driver = conn.connection.driver_connection
    assert driver is not None  # a live connection inside the caller's transaction
    if conn.dialect.name == "postgresql":
        from psycopg.types.json import Json

        def pg(column: Column[Any], value: Any) -> Any:
            return Json(value) if isinstance(column.type, JSON) and value is not None else value

        with driver.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([pg(c, row.get(c.name)) for c in columns])
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), rows)
        return

    def lite(column: Column[Any], value: Any) -> Any:
        # the text SQLAlchemy's SQLite dialect writes, so it reads back the same
        if value is None:
            return None
        if isinstance(column.type, JSON):
            return json.dumps(value)
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value

    marks = ", ".join("?" for _ in columns)
    cursor = driver.cursor()
    try:
        cursor.executemany(
            f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})',
            ([lite(c, row.get(c.name)) for c in columns] for row in rows),
        )
    finally:
        cursor.close()
