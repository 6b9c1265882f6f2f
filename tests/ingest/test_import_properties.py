"""Whatever mix of good, broken and repeated rows a file holds, the counts add up and every
good row is kept exactly once."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_import_orders import HEADER

from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.facts import reader
from reengage.home import init_home
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for

CLOCK_AT = "2026-11-01T00:00:00+00:00"

good_row = st.tuples(
    st.sampled_from(["A1", "A2", "A3", "B7"]),
    st.sampled_from(["C1", "C2", "C3"]),
    st.sampled_from(["2026-01-05", "2026-01-05T10:00:00Z", "2026-02-28 23:59"]),
    st.sampled_from(["P1", "P2"]),
    st.integers(1, 5).map(str),
    st.decimals(0, 500, places=2).map(str),
).map(lambda t: [*t, "EUR", "", "", "paid"])

BREAKAGES = [
    (2, "2026-13-45"),  # impossible date
    (1, ""),  # missing customer
    (5, "-1.00"),  # negative price
    (4, "1.5"),  # fractional quantity
    (9, "lost"),  # unknown status
]


@st.composite
def rows(draw: st.DrawFn) -> tuple[list[list[str]], int, int]:
    """(rows, how many broken, how many distinct good rows)."""
    made: list[list[str]] = []
    broken = 0
    good: set[tuple[str, ...]] = set()
    for _ in range(draw(st.integers(0, 25))):
        row = draw(good_row)
        choice = draw(st.integers(0, len(BREAKAGES) + 3))
        if choice < len(BREAKAGES):
            column, value = BREAKAGES[choice]
            row[column] = value
            broken += 1
        elif choice == len(BREAKAGES) and made:
            row = list(draw(st.sampled_from(made)))  # an exact repeat
            if tuple(row) not in good:
                broken += 1  # it repeats a broken row
        else:
            good.add(tuple(row))
        made.append(row)
    return made, broken, len(good)


@settings(max_examples=20, deadline=None)
@given(data=rows(), delimiter=st.sampled_from([",", ";", "\t"]), bom=st.booleans())
def test_counts_add_up(data: tuple[list[list[str]], int, int], delimiter: str, bom: bool) -> None:
    made, broken, distinct_good = data
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings_ = load_settings({"REENGAGE_HOME": str(root / "home")})
        home = init_home(settings_).home
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(HEADER.split(","))
        writer.writerows(made)
        path = root / "orders.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())
        engine = engine_for(settings_.state_url)
        try:
            clock = FixedClock.parse(CLOCK_AT)
            summary = import_file(home, engine, "orders", path, clock=clock)
            assert summary.read == len(made)
            assert summary.read == summary.imported + summary.duplicates + summary.rejected
            assert summary.rejected == broken
            assert summary.imported == distinct_good
            assert reader.counts(settings_.facts_path)["order_lines"] == distinct_good
            again = import_file(home, engine, "orders", path, clock=clock)
            assert again.imported == 0
        finally:
            engine.dispose()
