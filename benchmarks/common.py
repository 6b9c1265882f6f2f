"""What every benchmark shares: a scratch folder, a timer, and a line of results."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from reengage.state.db import bulk_insert_columns
from reengage.state.schema import contacts

DATA = Path(__file__).parent / ".data"


def scratch(name: str) -> Path:
    folder = DATA / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """Seconds since the block began: call the yielded function at its end."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end or [time.perf_counter()])[0] - start
    end.append(time.perf_counter())


def best_of(runs: int, work: Callable[[], Any]) -> float:
    """The fastest of a few runs: the least disturbed by the other tenants of the machine."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM first: ru_maxrss carries over the
    peak of a parent across fork and exec, so a benchmark's child would report its parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": name, **figures}))


def insert_contacts(
    conn: Connection, n: int, zones: tuple[str | None, ...], now: datetime
) -> np.ndarray:
    """Contacts 1..n with an email, a language and a time zone each, made 400 days before
    `now` (the outbox benchmarks' people); their ids."""
    ids = np.arange(1, n + 1)
    stamp = [now - timedelta(days=400)] * n
    bulk_insert_columns(
        conn,
        contacts,
        {
            "id": ids.tolist(),
            "customer_id": [f"C{i:07d}" for i in ids],
            "email": [f"c{i}@example.com" for i in ids],
            "language": [("en", "it", "fr")[i % 3] for i in ids],
            "timezone": [zones[i % len(zones)] for i in ids],
            "created_at": stamp,
            "updated_at": stamp,
            "origin": ["benchmark"] * n,
            "attributes": ["{}"] * n,
        },
    )
    if conn.dialect.name == "postgresql":  # the ids were given: move the sequence past them
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('contacts', 'id'), "
            "(SELECT max(id) FROM contacts))"
        )
    return ids
