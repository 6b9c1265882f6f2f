"""What every benchmark shares: a scratch folder, a timer, and a line of results."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": name, **figures}))
