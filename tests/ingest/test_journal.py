"""The collector's journal: what was acknowledged is stored once, whatever happens between
the append and the flush — a line cut short by a crash is skipped, a segment replayed after a
crash mid-flush stores nothing twice, and the open segment of a dead process is adopted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from reengage.config import Home, Settings, load_settings
from reengage.home import init_home
from reengage.ingest import journal
from reengage.ingest.collected import store_records
from reengage.ingest.events_in import check_event
from reengage.state.db import engine_for

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def record(event_id: str, minutes: int = 0) -> dict[str, object]:
    at = (NOW - timedelta(minutes=minutes)).isoformat()
    checked = check_event(
        {"event_id": event_id, "type": "page_view", "anonymous_id": "v", "occurred_at": at},
        NOW,
        UTC,
    )
    assert isinstance(checked, dict)
    return checked


def stored_ids(settings: Settings) -> list[str]:
    files = [str(f) for f in (settings.facts_path / "events").glob("day=*/part-*.parquet")]
    if not files:
        return []
    con = duckdb.connect()
    try:
        got = con.sql("SELECT event_id FROM read_parquet($f)", params={"f": files}).fetchall()
    finally:
        con.close()
    return sorted(i for (i,) in got)


def store_in(settings: Settings, engine: Engine) -> Callable[[pa.Table], None]:
    def store(records: pa.Table) -> None:
        store_records(settings, engine, records, NOW)

    return store


def dead_segment(folder: Path, name: str, data: bytes) -> Path:
    """What a process killed while writing leaves: an open segment nobody holds a lock on."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{journal.OPEN_PREFIX}{name}{journal.SUFFIX}"
    path.write_bytes(data)
    return path


def test_a_torn_last_line_is_skipped(home: Home, engine: Engine) -> None:
    settings = home.settings
    whole = journal.encode([record("a"), record("b")])
    torn = journal.encode([record("c")])[:-9]
    dead_segment(settings.journal_path, "1-dead", whole + torn)
    assert journal.flush(settings.journal_path, store_in(settings, engine)) == 2
    assert stored_ids(settings) == ["a", "b"]
    assert list(settings.journal_path.glob("*.jsonl")) == []


def test_a_damaged_line_inside_a_segment_loses_only_itself(tmp_path: Path) -> None:
    data = (
        journal.encode([record("a")]) + b'{"event_id": "x", "ty\n' + journal.encode([record("b")])
    )
    path = dead_segment(tmp_path, "2-dead", data)
    assert journal.read_segment(path).column("event_id").to_pylist() == ["a", "b"]


def test_replaying_a_stored_segment_stores_nothing_twice(home: Home, engine: Engine) -> None:
    settings = home.settings
    data = journal.encode([record("a"), record("b", minutes=60 * 24)])  # two days
    dead_segment(settings.journal_path, "3-dead", data)
    store = store_in(settings, engine)
    journal.flush(settings.journal_path, store)
    dead_segment(settings.journal_path, "3-again", data)  # as if the delete never happened
    assert journal.flush(settings.journal_path, store) == 2
    assert stored_ids(settings) == ["a", "b"]


def test_a_live_writers_segment_is_not_taken(tmp_path: Path) -> None:
    writer = journal.JournalWriter(tmp_path)
    writer.write(journal.encode([record("a")]))
    seen: list[str] = []
    journal.flush(tmp_path, lambda t: seen.extend(t.column("event_id").to_pylist()))
    assert seen == [] and writer.path.exists()  # the live process seals it itself
    writer.seal()
    journal.flush(tmp_path, lambda t: seen.extend(t.column("event_id").to_pylist()))
    assert seen == ["a"]
    writer.close()
    assert list(tmp_path.glob("*.jsonl")) == []


def test_concurrent_appends_share_a_sync(tmp_path: Path) -> None:
    writer = journal.JournalWriter(tmp_path)
    writes: list[int] = []
    write = writer.write

    def counting(data: bytes) -> None:
        writes.append(len(data))
        write(data)

    writer.write = counting  # type: ignore[method-assign]

    async def run() -> None:
        group = journal.GroupCommit(writer)
        await asyncio.gather(*(group.append(journal.encode([record(f"e{i}")])) for i in range(100)))
        await group.close()

    asyncio.run(run())
    assert 1 <= len(writes) < 100
    [sealed] = journal.sealed_segments(tmp_path)
    assert journal.read_segment(sealed).num_rows == 100


def test_a_pixels_line_is_in_the_file_when_the_call_returns_and_synced_soon(
    tmp_path: Path,
) -> None:
    writer = journal.JournalWriter(tmp_path)
    syncs: list[int] = []
    sync = writer.sync

    def counting() -> None:
        syncs.append(1)
        sync()

    writer.sync = counting  # type: ignore[method-assign]

    async def run() -> None:
        group = journal.GroupCommit(writer)
        for i in range(20):
            group.append_soon_durable(journal.encode([record(f"p{i}")]))
        # in the kernel already: what another process (the flush after a kill -9) reads
        assert journal.read_segment(writer.path).num_rows == 20
        await asyncio.sleep(journal.SYNC_SOON_S * 3)
        assert len(syncs) == 1  # twenty writes, one sync
        await group.append(journal.encode([record("e1")]))  # a synced append in between
        await group.close()

    asyncio.run(run())
    [sealed] = journal.sealed_segments(tmp_path)
    assert journal.read_segment(sealed).num_rows == 21


# ---- the property ------------------------------------------------------------------------

Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(st.just("seal"), st.just(0)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("crash"), st.integers(0, 1)),  # 1: with a torn line at the end
        st.tuples(st.just("fail_store"), st.just(0)),
    ),
    max_size=12,
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=ops, repeats=st.lists(st.integers(0, 30), max_size=6))
def test_every_acknowledged_event_is_stored_exactly_once(
    scratch: Path, steps: list[Op], repeats: list[int]
) -> None:
    """Any sequence of appends (some re-sending earlier ids), seals, flushes, crashes (with
    or without a torn line) and failed stores ends, after a last flush, with every
    acknowledged event stored once and nothing else."""
    root = Path(tempfile.mkdtemp(dir=scratch))
    home = load_settings(
        {"REENGAGE_HOME": str(root / "home"), "REENGAGE_DATABASE_URL": f"sqlite:///{root}/s.db"}
    )
    init_home(home)
    engine = engine_for(home.state_url)
    folder = home.journal_path
    store = store_in(home, engine)
    acknowledged: set[str] = set()
    counter = 0
    writer = journal.JournalWriter(folder)
    try:
        for op, n in steps:
            if op == "append":
                batch = []
                for _ in range(n):
                    # now and then an id sent before (a client's retry)
                    if repeats and counter % 3 == 2:
                        event_id = f"e{repeats.pop() % max(counter, 1)}"
                    else:
                        event_id = f"e{counter}"
                    counter += 1
                    batch.append(record(event_id, minutes=counter % 2 * 60 * 24))
                writer.write(journal.encode(batch))
                acknowledged.update(str(r["event_id"]) for r in batch)
            elif op == "seal":
                writer.seal()
            elif op == "flush":
                journal.flush(folder, store)
            elif op == "fail_store":

                def broken(_: pa.Table) -> None:
                    raise OSError("disk full")

                writer.seal()
                with contextlib.suppress(OSError):  # the segments stay for the next flush
                    journal.flush(folder, broken)
            else:  # the process dies: its lock goes, its segment stays as it was
                os.close(writer._fd)
                if n:
                    with open(writer.path, "ab") as fh:
                        fh.write(journal.encode([record("torn")])[:-5])
                writer = journal.JournalWriter(folder)
        writer.close()
        journal.flush(folder, store)
        assert stored_ids(home) == sorted(acknowledged)
        assert list(folder.glob("*.jsonl")) == []
    finally:
        engine.dispose()
