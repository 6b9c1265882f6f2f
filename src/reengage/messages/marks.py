"""The writes a delivery run makes on the rows it claimed, each fenced by the claim: a row is
changed only while it is still `sending` with this worker's `claimed_at`, so a worker that
lost its lease cannot overwrite the new owner's outcome.

The two writes of every message — the hand-over mark and `sent` — run on each thread's own
driver connection: SQLAlchemy's statement and transaction machinery would cost ten times the
UPDATE itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from reengage.clock import as_utc
from reengage.messages.claims import Claimed
from reengage.state.schema import messages

log = logging.getLogger(__name__)

_MARK_SENT = (
    "UPDATE messages SET status = 'sent', reason = NULL, sent_at = %s, provider_id = %s, "
    "subject = %s WHERE id = %s AND status = 'sending' AND claimed_at = %s"
)
_MARK_HANDED = (
    "UPDATE messages SET handed_at = %s WHERE id = %s AND status = 'sending' AND claimed_at = %s"
)
# a killed client cannot lose the commit (the server has it); a server crash can, and then
# the row is sent again after the lease, as without the mark
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"


class ClaimLost(Exception):
    """The row was claimed by another worker (this one's lease ran out): do not send it."""


class Marks:
    """Fenced writes on claimed rows, for one run and its threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        # on SQLite, this process's writers take turns on a lock first: waiting on SQLite's
        # own lock means sleeping in its busy handler, milliseconds at a time, while the lock
        # may have been free long before
        self.turns: AbstractContextManager[Any] = threading.Lock() if self.sqlite else nullcontext()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._raws: list[Any] = []

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction (taking this process's turn on SQLite)."""
        with self.turns, self.engine.begin() as conn:
            yield conn

    def set(self, conn: Connection, row: Claimed, **values: Any) -> bool:
        """Update a claimed row, if this worker still holds it (the fence)."""
        result = conn.execute(
            messages.update()
            .where(
                messages.c.id == row.id,
                messages.c.status == "sending",
                messages.c.claimed_at == row.claimed_at,
            )
            .values(**values)
        )
        return bool(result.rowcount)

    def finish(self, row: Claimed, **values: Any) -> bool:
        with self.writing() as conn:
            return self.set(conn, row, **values)

    def release(self, rows: Sequence[Claimed], reason: str | None, due: datetime) -> int:
        """Put rows back in the queue as they were (their attempts not counted); how many."""
        released = 0
        if not rows:
            return released
        with self.writing() as conn:
            for r in rows:
                released += self.set(
                    conn,
                    r,
                    status="queued",
                    reason=reason,
                    due_at=due,
                    claimed_at=None,
                    attempts=r.attempts - 1,
                )
        return released

    def sent(
        self, row: Claimed, sent_at: datetime, provider: str | None, subject: str | None
    ) -> bool:
        """Mark the row `sent`; False when another worker holds it now."""
        return self._raw_update(_MARK_SENT, (sent_at, provider, subject, row.id), row) == 1

    def handed(self, row: Claimed, at: datetime) -> None:
        """Record, and commit, that the row is being handed to its provider: after a crash
        it is settled as sent, not sent again. ClaimLost when another worker holds it now."""
        if self._raw_update(_MARK_HANDED, (at, row.id), row, prelude=_ASYNC_COMMIT) != 1:
            raise ClaimLost(f"outbox {row.id} was claimed by another worker")

    def _raw_update(
        self, sql: str, values: tuple[Any, ...], row: Claimed, prelude: str | None = None
    ) -> int:
        """One fenced UPDATE (the row's claim appended) committed on this thread's driver
        connection; the number of rows it changed."""
        conn = self._raw()
        fence: datetime | str = row.claimed_at
        if self.sqlite:
            sql = sql.replace("%s", "?")
            values = tuple(sqlite_time(v) if isinstance(v, datetime) else v for v in values)
            fence = sqlite_time(row.claimed_at)
            prelude = None
        with self.turns:
            cursor = conn.cursor()
            try:
                if prelude is not None:
                    cursor.execute(prelude)
                cursor.execute(sql, (*values, fence))
                changed = int(cursor.rowcount)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
        return changed

    def _raw(self) -> Any:
        found = getattr(self._local, "connection", None)
        if found is None:
            found = self._local.connection = self.engine.raw_connection()
            with self._lock:
                self._raws.append(found)
        return found

    def close(self) -> None:
        """Give the threads' driver connections back to the pool."""
        for raw in self._raws:
            try:
                raw.close()
            except Exception:
                log.exception("closing a state connection failed")
        self._raws = []


def sqlite_time(moment: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect writes it (so that equality holds)."""
    return as_utc(moment).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
