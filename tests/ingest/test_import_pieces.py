"""A large file is imported piece by piece; the pieces never change what is imported."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.facts import reader
from reengage.home import init_home
from reengage.ingest.csvfile import open_delimited, read_chunks
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for

CLOCK = FixedClock.parse("2026-11-01T00:00:00Z")
HEADER = ["event_id", "customer_id", "type", "occurred_at", "properties"]

TIMES = ["2026-01-01T10:00:00Z", "2026-01-02 11:00", "not a date"]


def with_its_time(event: tuple) -> list[str]:
    """The row, its time set by its id. A source's id names one event at one time: the store
    looks ids up day by day, so an id sent again with a time on another day in a later piece
    or file is stored again (docs/formats.md), which is not what this property is about."""
    n, customer, kind, bad_time, properties = event
    time = "not a date" if bad_time else TIMES[n % 2]
    return [f"e{n}", customer, kind, time, properties]


row = st.one_of(
    st.tuples(
        st.integers(0, 30),
        st.sampled_from(["C1", "C2", ""]),
        st.sampled_from(["page_view", "search", "teleport"]),
        st.booleans(),  # a time that is no date
        st.sampled_from(["", '{"q": "a, \\"b\\""}', '{"note": "two\\nlines"}', "{bad"]),
    ).map(with_its_time),
    st.just(["e99", "C1"]),  # too few fields
)


def write(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(HEADER)
    for r in rows:
        out.writerow(r)
        if r[0] == "e7":
            buffer.write("\n")  # a blank line now and then
    path.write_text(buffer.getvalue().replace('"two\\nlines"', '"two\nlines"'), encoding="utf-8")


def run(root: Path, path: Path, chunk_bytes: int) -> tuple[dict, list[str], list]:
    s = load_settings({"REENGAGE_HOME": str(root)})
    home = init_home(s).home
    engine = engine_for(s.state_url)
    try:
        got = import_file(home, engine, "events", path, clock=CLOCK, chunk_bytes=chunk_bytes)
    finally:
        engine.dispose()
    rejects = Path(got.rejects_file).read_text().splitlines() if got.rejects_file else []
    con = reader.connect(s.facts_path)
    stored = con.sql("SELECT event_id, type, properties FROM events ORDER BY ALL").fetchall()
    con.close()
    counts = {k: v for k, v in got.as_dict().items() if k != "rejects_file"}
    return counts, rejects, stored


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(row, max_size=30), chunk=st.integers(1, 400))
def test_pieces_of_any_size_import_the_same(rows: list[list[str]], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "events.csv"
        write(path, rows)
        whole = run(root / "whole", path, chunk_bytes=1 << 30)
        pieces = run(root / "pieces", path, chunk_bytes=chunk)
        assert pieces == whole


def test_pieces_end_on_line_breaks_outside_quotes(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('a,b\n1,"x\ny\nz"\n2,w\n3,"v"\n', encoding="utf-8")
    source = open_delimited(path)
    bodies = [raw.table.to_pylist() for raw, _ in read_chunks(source, chunk_bytes=3)]
    assert [r for body in bodies for r in body] == [
        {"__line": 2, "a": "1", "b": "x\ny\nz"},
        {"__line": 5, "a": "2", "b": "w"},
        {"__line": 6, "a": "3", "b": "v"},
    ]
    assert len(bodies) == 3


def test_progress_reports_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    write(path, [["e1", "C1", "page_view", "2026-01-01T10:00:00Z", ""]] * 50)
    s = load_settings({"REENGAGE_HOME": str(tmp_path / "home")})
    home = init_home(s).home
    engine = engine_for(s.state_url)
    seen: list[tuple[int, int]] = []
    import_file(
        home,
        engine,
        "events",
        path,
        clock=CLOCK,
        chunk_bytes=200,
        progress=lambda _what, done, total: seen.append((done, total)),
    )
    engine.dispose()
    size = path.stat().st_size
    assert len(seen) > 5
    assert seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
