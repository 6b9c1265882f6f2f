"""Kill -9 during a load run: after a restart, every event the collector acknowledged (202)
is in the facts, and none twice — not even those sent again after the restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
from test_serve import WAIT_SECONDS, free_port

from reengage.config import load_settings
from reengage.home import init_home

CLIENTS = 4
BATCH = 50
ENOUGH = 3000  # acknowledged events before the kill (and at least one flush's worth of time)


def start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "reengage", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    _, err = server.communicate()
    raise AssertionError(f"serve did not answer on its port: {err}")


def batch(client: int, number: int) -> list[dict[str, Any]]:
    at = datetime.now(UTC).isoformat()
    return [
        {
            "event_id": f"c{client}-{number}-{k}",
            "type": "page_view",
            "anonymous_id": f"v{client}-{k % 7}",
            "occurred_at": at,
            "properties": {"n": k},
        }
        for k in range(BATCH)
    ]


class Load:
    """Client threads posting batches until the server goes away."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/t/events"
        self.lock = threading.Lock()
        self.acknowledged: list[list[dict[str, Any]]] = []
        self.in_doubt: list[list[dict[str, Any]]] = []  # sent, never answered
        self.threads = [threading.Thread(target=self.run, args=(c,)) for c in range(CLIENTS)]

    def run(self, client: int) -> None:
        with httpx.Client(timeout=30) as http:
            for number in range(1_000_000):
                events = batch(client, number)
                try:
                    answer = http.post(self.url, json={"events": events})
                except httpx.TransportError:
                    with self.lock:
                        self.in_doubt.append(events)
                    return
                assert answer.status_code == 202, answer.text
                assert answer.json() == {"accepted": BATCH, "rejected": []}
                with self.lock:
                    self.acknowledged.append(events)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged) * BATCH


def stored_counts(facts: Path) -> Counter[str]:
    files = [str(f) for f in (facts / "events").glob("day=*/part-*.parquet")]
    con = duckdb.connect()
    try:
        rows = con.sql(
            "SELECT event_id, count(*) FROM read_parquet($f) GROUP BY event_id", params={"f": files}
        ).fetchall()
    finally:
        con.close()
    return Counter({event_id: n for event_id, n in rows})


def test_every_acknowledged_event_survives_a_kill(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env["REENGAGE_HOME"] = str(tmp_path / "home")
    env["REENGAGE_COLLECTOR_RATE_PER_MINUTE"] = "0"
    init_home(load_settings(env))

    port = free_port()
    server = start(env, port)
    load = Load(port)
    try:
        began = time.monotonic()
        for thread in load.threads:
            thread.start()
        deadline = began + WAIT_SECONDS
        while time.monotonic() < deadline and (
            load.count() < ENOUGH or time.monotonic() - began < 2.0
        ):
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
        server.wait()
        for thread in load.threads:
            thread.join(timeout=WAIT_SECONDS)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    acknowledged = {e["event_id"] for events in load.acknowledged for e in events}
    assert len(acknowledged) >= ENOUGH

    port = free_port()
    server = start(env, port)
    try:
        # the clients send again what they never heard back about, and a batch already stored
        for events in [*load.in_doubt, load.acknowledged[0]]:
            answer = httpx.post(f"http://127.0.0.1:{port}/t/events", json={"events": events})
            assert answer.status_code == 202
        seen = 0
        deadline = time.monotonic() + WAIT_SECONDS
        while seen < len(acknowledged) and time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "reengage", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
            )
            assert status.returncode == 0, status.stderr
            seen = json.loads(status.stdout)["events"]
            time.sleep(0.2)
        assert seen >= len(acknowledged)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=WAIT_SECONDS)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    counts = stored_counts(tmp_path / "home" / "facts")
    assert acknowledged <= set(counts), f"lost: {len(acknowledged - set(counts))}"
    assert max(counts.values()) == 1, "an event was stored twice"
    resent = {e["event_id"] for events in load.in_doubt for e in events}
    assert resent <= set(counts)
