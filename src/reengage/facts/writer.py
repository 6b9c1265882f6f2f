"""Append batches of facts: one Parquet file per day touched, deduplicated by stable id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reengage.facts.kinds import TS, FactKind
from reengage.facts.layout import day_dir, part_files, sync_dirs, write_part


@dataclass
class AppendResult:
    written: int = 0
    duplicates: int = 0
    files: list[Path] = field(default_factory=list)


def first_of_each_id(table: pa.Table, id_column: str) -> pa.Table:
    """Keep the first row of each id, in the original order."""
    if table.num_rows == 0:
        return table
    indexed = table.select([id_column]).append_column(
        "__row", pa.array(np.arange(table.num_rows, dtype=np.int64))
    )
    firsts = indexed.group_by(id_column, use_threads=False).aggregate([("__row", "min")])
    keep = np.sort(firsts.column("__row_min").to_numpy())
    if len(keep) == table.num_rows:
        return table
    return table.take(pa.array(keep))


def day_keys(table: pa.Table, time_column: str) -> pa.Array:
    return pc.strftime(table.column(time_column), format="%Y-%m-%d").combine_chunks()


def stored_ids(folders: list[Path], id_column: str) -> pa.Array:
    files = [str(f) for folder in folders for f in part_files(folder)]
    if not files:
        return pa.array([], type=pa.string())
    con = duckdb.connect()
    try:
        got = con.sql(
            f'SELECT DISTINCT "{id_column}" FROM read_parquet($files)', params={"files": files}
        ).to_arrow_table()
    finally:
        con.close()
    return got.column(0).combine_chunks()


def append(root: Path, kind: FactKind, table: pa.Table, *, ingested_at: datetime) -> AppendResult:
    """Store the rows whose ids the store does not hold yet; report how many were duplicates.

    `table` has the kind's columns except `ingested_at`, which is stamped here. Ids are checked
    against the day partitions the batch touches (a stable id always falls on the same day,
    because the time is part of what the id is derived from or comes with the source's id).
    """
    columns = [c for c in kind.columns if c != "ingested_at"]
    table = table.select(columns)
    stamp = pa.array([ingested_at] * table.num_rows, type=TS)
    table = table.append_column("ingested_at", stamp).cast(kind.schema)
    result = AppendResult()
    unique = first_of_each_id(table, kind.id_column)
    result.duplicates = table.num_rows - unique.num_rows
    if unique.num_rows == 0:
        return result

    days = day_keys(unique, kind.time_column)
    distinct_days = pc.unique(days).to_pylist()
    folders = {d: day_dir(root, kind, d) for d in distinct_days}
    known = stored_ids(list(folders.values()), kind.id_column)
    if len(known):
        fresh = pc.invert(pc.is_in(unique.column(kind.id_column), value_set=known))
        result.duplicates += unique.num_rows - pc.sum(fresh).as_py()
        unique = unique.filter(fresh)
        days = days.filter(fresh)
    if unique.num_rows == 0:
        return result

    order = pc.sort_indices(days)
    unique = unique.take(order)
    days = days.take(order)
    day_values = days.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, day_values[1:] != day_values[:-1]])
    ends = np.r_[starts[1:], len(day_values)]
    touched: set[Path] = set()
    for start, end in zip(starts, ends, strict=True):
        folder = folders[str(day_values[start])]
        result.files.append(write_part(folder, unique.slice(int(start), int(end - start))))
        touched.update((folder, folder.parent))
    sync_dirs(touched)
    result.written = unique.num_rows
    return result
