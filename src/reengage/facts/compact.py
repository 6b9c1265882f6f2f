"""Merge the small files of each day into one, dropping rows whose id is already there.

Safe while writers run: only the files read are removed, and the merged file is in place
before they go, so a reader sees every row at every moment (possibly twice for an instant,
which the readers' one-row-per-id rule hides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reengage.facts.kinds import KINDS, FactKind
from reengage.facts.layout import day_dirs, part_files, sync_dirs, write_part
from reengage.facts.writer import first_of_each_id


@dataclass
class CompactResult:
    kind: str
    days: int = 0
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    duplicates_removed: int = 0


def compact(
    root: Path,
    kinds: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CompactResult]:
    chosen = [KINDS[k] for k in kinds] if kinds else list(KINDS.values())
    plan = [
        (kind, folder, files)
        for kind in chosen
        for _, folder in day_dirs(root, kind)
        if len(files := part_files(folder)) > 1
    ]
    results = {kind.name: CompactResult(kind.name) for kind in chosen}
    for done, (kind, folder, files) in enumerate(plan, start=1):
        _compact_day(kind, folder, files, results[kind.name])
        if progress:
            progress(done, len(plan))
    return list(results.values())


def _compact_day(kind: FactKind, folder: Path, files: list[Path], result: CompactResult) -> None:
    table = pa.concat_tables(
        [pq.read_table(f).select(kind.columns).cast(kind.schema) for f in files]
    )
    table = table.take(pc.sort_indices(table, sort_keys=[("ingested_at", "ascending")]))
    merged = first_of_each_id(table, kind.id_column)
    write_part(folder, merged)
    sync_dirs({folder})
    for f in files:
        f.unlink()
    sync_dirs({folder})
    result.days += 1
    result.files_before += len(files)
    result.files_after += 1
    result.rows += merged.num_rows
    result.duplicates_removed += table.num_rows - merged.num_rows
