"""Where facts live on disk: `<root>/<kind>/day=YYYY-MM-DD/part-<uuid>.parquet`.

A file is visible only once complete: it is written under a hidden temporary name in the same
folder, synced, then renamed into place (a rename within one folder is atomic on POSIX).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reengage.facts.kinds import FactKind

PART_GLOB = "part-*.parquet"


def kind_dir(root: Path, kind: FactKind) -> Path:
    return root / kind.name


def day_dir(root: Path, kind: FactKind, day: str) -> Path:
    return kind_dir(root, kind) / f"day={day}"


def day_dirs(root: Path, kind: FactKind) -> Iterator[tuple[str, Path]]:
    base = kind_dir(root, kind)
    if not base.is_dir():
        return
    for entry in sorted(base.iterdir()):
        if entry.is_dir() and entry.name.startswith("day="):
            yield entry.name.removeprefix("day="), entry


def part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(PART_GLOB)) if folder.is_dir() else []


def all_part_files(root: Path, kind: FactKind) -> list[Path]:
    return [f for _, d in day_dirs(root, kind) for f in part_files(d)]


def write_part(folder: Path, table: pa.Table) -> Path:
    """Write one Parquet file atomically into folder and return its final path."""
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    tmp = folder / f".{name}.parquet.tmp"
    final = folder / f"part-{name}.parquet"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def sync_dirs(folders: set[Path]) -> None:
    """Make the renames durable: a rename is in the folder's entry, not in the file."""
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
