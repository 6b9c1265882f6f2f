"""Fixtures: every state test runs on SQLite and on a real PostgreSQL server on loopback."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from postgres_server import Server, start_server
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.home import init_home
from reengage.state.db import engine_for

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    server: Server = request.getfixturevalue("pg_server")
    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """REENGAGE_* variables for a home in tmp_path on the backend under test."""
    for key in list(os.environ):
        if key.startswith("REENGAGE_"):
            monkeypatch.delenv(key)
    values = {"REENGAGE_HOME": str(tmp_path / "home"), "REENGAGE_DATABASE_URL": database_url}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


@pytest.fixture
def home(settings: Settings) -> Home:
    return init_home(settings).home


@pytest.fixture
def engine(home: Home) -> Iterator[Engine]:
    eng = engine_for(home.settings.state_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 1, 9, 30, tzinfo=UTC))


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local PySpark session for the whole run (starting the JVM is the slow part).

    Skipped without PySpark or Java, except in CI, where .ci/run installs both and sets
    REENGAGE_REQUIRE_SPARK so that a missing piece fails instead.
    """
    import shutil

    required = bool(os.environ.get("REENGAGE_REQUIRE_SPARK"))
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        if required:
            pytest.fail("PySpark is not installed")
        pytest.skip("PySpark is in the test extra")
    if shutil.which("java") is None:
        if required:
            pytest.fail("PySpark needs Java and none is installed")
        pytest.skip("PySpark needs Java (a JRE); .ci/run installs one")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("reengage-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()
