"""The facts store: day partitions, atomic files, stable ids, compaction, concurrent writers."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reengage.facts import reader
from reengage.facts.compact import compact
from reengage.facts.kinds import EVENTS, TS
from reengage.facts.layout import all_part_files, day_dir, write_part
from reengage.facts.writer import append

T0 = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)


def events(ids: list[str], start: datetime = T0, step: timedelta = timedelta(hours=1)) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "event_id": ids,
            "customer_id": [f"C{i % 3}" for i in range(n)],
            "anonymous_id": [None] * n,
            "type": ["page_view"] * n,
            "occurred_at": pa.array([start + i * step for i in range(n)], TS),
            "product_id": [None] * n,
            "session_id": ["s"] * n,
            "source": ["direct"] * n,
            "device": ["mobile"] * n,
            "duration_s": [1.0] * n,
            "properties": [None] * n,
        }
    )


def count(root: Path) -> int:
    return reader.counts(root)["events"]


def test_rows_land_in_one_file_per_day(tmp_path: Path) -> None:
    got = append(tmp_path, EVENTS, events(["a", "b", "c", "d"]), ingested_at=T0)
    assert got.written == 4
    days = sorted(p.parent.name for p in got.files)
    assert days == ["day=2026-03-01", "day=2026-03-02"]
    assert not list(tmp_path.rglob("*.tmp"))
    stored = pq.read_table(day_dir(tmp_path, EVENTS, "2026-03-01"))
    assert stored.column("event_id").to_pylist() == ["a", "b"]


def test_same_ids_are_stored_once(tmp_path: Path) -> None:
    first = append(tmp_path, EVENTS, events(["a", "b", "a"]), ingested_at=T0)
    assert (first.written, first.duplicates) == (2, 1)
    again = append(tmp_path, EVENTS, events(["a", "b", "c"]), ingested_at=T0)
    assert (again.written, again.duplicates) == (1, 2)
    assert count(tmp_path) == 3


def test_readers_keep_one_row_per_id_when_writers_race(tmp_path: Path) -> None:
    """Two writers that checked before either wrote both store the id: readers see it once."""
    folder = day_dir(tmp_path, EVENTS, "2026-03-01")
    table = events(["x", "y"]).append_column("ingested_at", pa.array([T0, T0], TS))
    write_part(folder, table)
    write_part(folder, table)
    assert count(tmp_path) == 2


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reengage.facts.layout as layout

    def broken(table: pa.Table, where: Path, **_: object) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(layout.pq, "write_table", broken)
    with pytest.raises(OSError):
        append(tmp_path, EVENTS, events(["a"]), ingested_at=T0)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_compact_merges_small_files_and_drops_duplicates(tmp_path: Path) -> None:
    for i in range(5):
        append(tmp_path, EVENTS, events([f"e{i}"], start=T0), ingested_at=T0)
    folder = day_dir(tmp_path, EVENTS, "2026-03-01")
    raced = events(["e0"]).append_column("ingested_at", pa.array([T0 + timedelta(1)], TS))
    write_part(folder, raced)
    assert len(all_part_files(tmp_path, EVENTS)) == 6
    [result] = compact(tmp_path, ["events"])
    assert (result.files_before, result.files_after, result.rows) == (6, 1, 5)
    assert result.duplicates_removed == 1
    assert count(tmp_path) == 5
    kept = pq.read_table(all_part_files(tmp_path, EVENTS)[0])
    first = [
        t
        for i, t in zip(kept["event_id"].to_pylist(), kept["ingested_at"].to_pylist(), strict=True)
        if i == "e0"
    ]
    assert first == [T0]  # the first-ingested copy is the one kept
    [nothing] = compact(tmp_path, ["events"])
    assert nothing.days == 0


def _writer(args: tuple[str, int]) -> int:
    root, worker = args
    numbers = [(worker * 50 + i) % 120 for i in range(100)]  # overlapping id ranges
    table = events([f"w{n}" for n in numbers])
    # an id's time comes with the id, as for real facts (it is part of what the id hashes)
    times = pa.array([T0 + timedelta(hours=n) for n in numbers], TS)
    table = table.set_column(table.schema.get_field_index("occurred_at"), "occurred_at", times)
    return append(Path(root), EVENTS, table, ingested_at=T0).written


def test_many_processes_write_at_once(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        written = pool.map(_writer, [(str(tmp_path), w) for w in range(4)])
    assert sum(written) >= 120
    assert count(tmp_path) == 120  # every id once, whatever the interleaving
    compact(tmp_path)
    assert count(tmp_path) == 120
    assert len(all_part_files(tmp_path, EVENTS)) == len(
        {p.parent for p in all_part_files(tmp_path, EVENTS)}
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=12), max_size=6))
def test_any_sequence_of_batches_stores_each_id_once(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[str]]
) -> None:
    root = tmp_path_factory.mktemp("facts")
    total_written = 0
    for batch in batches:
        # an id's time is fixed by the id, as it is for real facts
        table = events(batch)
        times = [T0 + timedelta(hours=ord(i) - ord("a")) for i in batch]
        table = table.set_column(4, "occurred_at", pa.array(times, TS))
        got = append(root, EVENTS, table, ingested_at=T0)
        assert got.written + got.duplicates == len(batch)
        total_written += got.written
    distinct = {i for batch in batches for i in batch}
    assert total_written == len(distinct) == count(root)
