"""The schema migrations: applied by init, idempotent, and in step with the table definitions."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from reengage.config import Settings
from reengage.home import init_home
from reengage.state.db import current_revision, engine_for, head_revision
from reengage.state.schema import metadata


def test_init_migrates_and_is_idempotent(settings: Settings) -> None:
    first = init_home(settings)
    again = init_home(settings)
    assert first.created and not again.created
    engine = engine_for(settings.state_url)
    try:
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {"contacts", "identities", "consents", "products", "imports"} <= tables
    finally:
        engine.dispose()


def test_migrations_match_the_table_definitions(settings: Settings) -> None:
    """A change to schema.py without a migration would leave real databases behind."""
    init_home(settings)
    engine = engine_for(settings.state_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 's.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
