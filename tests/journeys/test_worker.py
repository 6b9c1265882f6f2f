"""`reengage worker` as a real process: it runs passes on the wall clock, picks up a journey
enabled while it runs, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

WAIT_SECONDS = 60  # a generous bound for a slow machine, not a speed requirement


def _cursors(home: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(home / "state.db") as db:
        return [r[0] for r in db.execute("SELECT journey FROM journey_cursors ORDER BY journey")]


def test_worker_runs_passes_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    home = tmp_path / "home"
    env["REENGAGE_HOME"] = str(home)
    reengage = [sys.executable, "-m", "reengage"]
    made = subprocess.run([*reengage, "init"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    worker = subprocess.Popen(
        [*reengage, "worker", "--interval", "1s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        enabled = subprocess.run(
            [*reengage, "journeys", "enable", "post_purchase"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert enabled.returncode == 0, enabled.stderr
        # the journey, enabled while the worker runs, is picked up at its next pass: its
        # trigger starts being read from then on
        deadline = time.monotonic() + WAIT_SECONDS
        while _cursors(home) != ["post_purchase"] and time.monotonic() < deadline:
            assert worker.poll() is None, worker.communicate()[1]
            time.sleep(0.2)
        assert _cursors(home) == ["post_purchase"]
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=WAIT_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "a pass every 1s" in err
