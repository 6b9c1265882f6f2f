"""The collector's journal: accepted events are on disk before the collector answers.

Each `reengage serve` process appends to its own *open segment*, `open-<pid>-<random>.jsonl`
in the journal folder, one JSON object per event and line. An append is acknowledged only
after the bytes are written and `fdatasync`ed; concurrent requests share one sync (group
commit, `GroupCommit`). The flusher *seals* the open segment now and then (renames it to
`sealed-<time>-<pid>-<random>.jsonl` and starts a new one) and stores the sealed segments in
the facts (`flush`), deleting each once stored. Storing is idempotent (every record carries
its final event id and the facts drop ids they hold), so a crash anywhere in between only
means a segment is stored again, never that an event is lost or doubled.

Several processes on one home: each holds an exclusive `flock` on its open segment for as
long as it writes to it, and `flush` runs under an exclusive lock on `flush.lock`, so one
flush at a time takes the sealed segments of every process. An open segment whose lock can be
taken belongs to a process that died (kill -9, power loss): the flush seals and stores it.

A line cut short by a crash was never acknowledged: it is skipped. A write that fails midway
(a full disk) is cut off again before anything else is written, so a later line never joins
a broken one.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

log = logging.getLogger(__name__)

OPEN_PREFIX = "open-"
SEALED_PREFIX = "sealed-"
SUFFIX = ".jsonl"
FLUSH_LOCK = "flush.lock"
# events stored per state transaction and Parquet write when a backlog is flushed
FLUSH_BATCH = 500_000
# how soon a pixel's event, written at once, is synced to disk
SYNC_SOON_S = 0.1
# a hidden segment older than this was left by a crash between creating and naming it
HIDDEN_AGE_S = 600

# What a journal line holds (see reengage.ingest.events_in); absent keys are nulls.
RECORD_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("type", pa.string()),
        ("occurred_us", pa.int64()),
        ("product_id", pa.string()),
        ("session_id", pa.string()),
        ("source", pa.string()),
        ("device", pa.string()),
        ("duration_s", pa.float64()),
        ("properties", pa.string()),
        ("email", pa.string()),
    ]
)
REQUIRED = ("event_id", "type", "occurred_us")

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def encode(records: Iterable[dict[str, Any]]) -> bytes:
    """The journal lines of some records."""
    return "".join(_encode(r) + "\n" for r in records).encode("ascii")


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class JournalWriter:
    """One process's open segment: durable appends and sealing. Synced writes, seals and
    syncs run on one thread (GroupCommit's worker); unsynced writes may come from another,
    and a lock keeps every line whole."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = -1
        self._size = 0
        self._lock = threading.RLock()  # a failed write seals under it
        self._dirty = False  # lines written that no sync has covered yet
        self.path = self._start()

    def _start(self) -> Path:
        """A fresh open segment, locked before it gets the name other processes look for."""
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        hidden = self.folder / f".new-{name}"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.folder / f"{OPEN_PREFIX}{name}"
            os.rename(hidden, path)
            _sync_dir(self.folder)  # the file's name must survive a crash with its lines
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._fd, self._size = fd, 0
        return path

    def write(self, data: bytes, *, sync: bool = True) -> None:
        """Append whole lines and, with `sync`, make them durable (with every line written
        before them); on failure nothing of them remains. Without `sync` the lines are in
        the kernel when this returns: they survive the process, not a power cut, until the
        next sync."""
        if not data:
            return
        with self._lock:
            view = memoryview(data)
            try:
                while view:
                    done = os.write(self._fd, view)
                    view = view[done:]
            except OSError:
                self._cut_back()
                raise
            self._size += len(data)
            self._dirty = True
            fd = self._fd
        if sync:
            self._sync(fd)

    def _cut_back(self) -> None:
        try:  # a partial line must not swallow the next append's first line
            os.ftruncate(self._fd, self._size)
        except OSError:
            log.exception("the journal segment could not be cut back after a failed write")
            self._replace()

    def _sync(self, fd: int) -> None:
        self._dirty = False  # before the sync: a line written during it marks it again
        try:
            os.fdatasync(fd)
        except OSError:
            self._dirty = True
            raise

    def sync(self) -> None:
        """Make the unsynced lines durable."""
        if self._dirty:
            self._sync(self._fd)

    def _replace(self) -> None:
        """Seal a segment that may end in a broken line and go on in a fresh one (the
        broken line is skipped when the sealed segment is read)."""
        self.seal(force=True)

    def seal(self, *, force: bool = False) -> Path | None:
        """Close the open segment under its sealed name and open a fresh one; None (and
        nothing changes) when the segment is empty."""
        if self._size == 0 and not force:
            return None
        self.sync()
        with self._lock:
            old_fd, old_path = self._fd, self.path
            self.path = self._start()
        sealed = _sealed_name(old_path)
        os.rename(old_path, sealed)
        os.close(old_fd)
        return sealed

    def close(self) -> None:
        """Stop writing; an empty segment is removed, a written one is sealed for a flush."""
        if self._fd < 0:
            return
        self.sync()
        if self._size == 0:
            self.path.unlink(missing_ok=True)
        else:
            os.rename(self.path, _sealed_name(self.path))
        os.close(self._fd)
        self._fd = -1


def _sealed_name(path: Path) -> Path:
    """The sealed name of an open segment: sealed segments sort in the order they were sealed."""
    return path.parent / f"{SEALED_PREFIX}{time.time_ns():020d}-{path.name[len(OPEN_PREFIX) :]}"


class GroupCommit:
    """Async appends to a JournalWriter: requests that arrive while a write and its sync are
    under way wait together for the next one, so many requests cost one write and one sync.
    The writes run on one thread of their own, in order, with the seals between them."""

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._idle: asyncio.Event | None = None
        self._sync_due = False
        self._closed = False

    def append_soon_durable(self, data: bytes) -> None:
        """Write data now, and sync it within SYNC_SOON_S: for the pixel, whose single
        events are cheap to lose in a power cut but must survive a crash of the server,
        and should cost no more than a write. Raises OSError when it could not be written."""
        self.writer.write(data, sync=False)
        if not self._sync_due:
            self._sync_due = True
            asyncio.get_running_loop().call_later(SYNC_SOON_S, self._sync_soon)

    def _sync_soon(self) -> None:
        self._sync_due = False
        if self._closed:
            return  # closing synced it

        def logged(job: Future[None]) -> None:
            if job.exception() is not None:
                log.error("could not sync the journal: %r", job.exception())

        self._thread.submit(self.writer.sync).add_done_callback(logged)

    async def append(self, data: bytes) -> None:
        """Return once data is durable; raise OSError when it could not be written."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._pending.append(data)
        self._waiters.append(waiter)
        if self._idle is None or self._idle.is_set():
            self._idle = asyncio.Event()
            self._write_pending(loop)
        await waiter

    def _write_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand what waits to the writer thread; its end comes back to the loop."""
        data, self._pending = b"".join(self._pending), []
        waiters, self._waiters = self._waiters, []

        def written(job: Future[None]) -> None:
            loop.call_soon_threadsafe(self._written, loop, job, waiters)

        self._thread.submit(self.writer.write, data).add_done_callback(written)

    def _written(
        self,
        loop: asyncio.AbstractEventLoop,
        job: Future[None],
        waiters: list[asyncio.Future[None]],
    ) -> None:
        error = job.exception()
        for w in waiters:
            if w.done():  # its request was cancelled (the client went away)
                continue
            if error is None:
                w.set_result(None)
            else:
                w.set_exception(error)
        if self._pending:
            self._write_pending(loop)
        elif self._idle is not None:
            self._idle.set()

    async def seal(self) -> Path | None:
        """Seal the open segment, in turn with the writes."""
        return await asyncio.wrap_future(self._thread.submit(self.writer.seal))

    async def close(self) -> None:
        """Wait for the appends under way, then seal and stop."""
        if self._idle is not None:
            await self._idle.wait()
        self._closed = True
        await asyncio.wrap_future(self._thread.submit(self.writer.close))
        self._thread.shutdown(wait=True)


# ---- reading and flushing ------------------------------------------------------------------


def read_segment(path: Path) -> pa.Table:
    """The records of a segment (RECORD_SCHEMA); a cut-off last line and any line that is not
    a whole record are skipped."""
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]  # a line without its newline was never acknowledged
    if not data:
        return RECORD_SCHEMA.empty_table()
    options = pa_json.ParseOptions(
        explicit_schema=RECORD_SCHEMA, unexpected_field_behavior="ignore"
    )
    try:
        table = pa_json.read_json(io.BytesIO(data), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = _read_lines(data)
    else:
        table = table.select(RECORD_SCHEMA.names)
    mask = pc.and_(
        pc.and_(table.column(REQUIRED[0]).is_valid(), table.column(REQUIRED[1]).is_valid()),
        table.column(REQUIRED[2]).is_valid(),
    )
    return table.filter(mask)


def _read_lines(data: bytes) -> pa.Table:
    """The slow path: line by line, for a segment with a damaged line in it."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in data.splitlines():
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError("not a record")
            rows.extend(pa.Table.from_pylist([row], schema=RECORD_SCHEMA).to_pylist())
        except (ValueError, TypeError, pa.ArrowException):
            skipped += 1
    if skipped:
        log.warning("skipped %d damaged line(s) in a journal segment", skipped)
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def _adopt_orphans(folder: Path) -> None:
    """Seal the open segments of processes that are gone (their lock is free)."""
    for path in sorted(folder.glob(f"{OPEN_PREFIX}*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if not _try_lock(fd):
                continue  # a live writer: its own process seals it
            if os.fstat(fd).st_size == 0:
                path.unlink()
            else:
                os.rename(path, _sealed_name(path))
        except FileNotFoundError:
            continue  # its writer sealed or removed it after all, just now
        finally:
            os.close(fd)
    # a crash between creating and naming a segment leaves a hidden, empty file
    for hidden in folder.glob(f".new-*{SUFFIX}"):
        try:
            if time.time() - hidden.stat().st_mtime > HIDDEN_AGE_S:
                hidden.unlink()
        except FileNotFoundError:
            continue


def sealed_segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{SEALED_PREFIX}*{SUFFIX}"))


def flush(folder: Path, store: Callable[[pa.Table], None]) -> int:
    """Store every sealed segment (and the open ones of dead processes) with `store`, then
    delete them; how many records were handed to `store`. One flush at a time per folder,
    across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder / FLUSH_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _adopt_orphans(folder)
        total = 0
        for group in _groups(sealed_segments(folder)):
            tables = [read_segment(p) for p in group]
            table = pa.concat_tables(tables) if tables else RECORD_SCHEMA.empty_table()
            if table.num_rows:
                store(table)
            total += table.num_rows
            for path in group:
                path.unlink()
            _sync_dir(folder)
        return total
    finally:
        os.close(lock)  # closing releases the lock


def _groups(paths: Sequence[Path]) -> Iterable[list[Path]]:
    """Segments in groups of about FLUSH_BATCH events (guessed from their size)."""
    group: list[Path] = []
    size = 0
    for path in paths:
        group.append(path)
        size += path.stat().st_size
        if size >= FLUSH_BATCH * 200:  # a stored event takes some 200 bytes of journal
            yield group
            group, size = [], 0
    if group:
        yield group
