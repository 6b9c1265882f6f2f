"""The web collector on loopback: events per second accepted *and durable*, and the pixel's
rate against a bare "hello" endpoint of the same server in the same run.

`reengage serve` runs as a child process on a fresh SQLite home; `wrk` (a C load generator:
`apt-get install wrk`) drives it over keep-alive connections, so the client is not what
limits the figures.

- hello vs pixel: `GET /t/hello` (answers "ok", nothing else) and `GET /t/p.gif?e=...`
  (validates, journals with fsync, answers the GIF), alternated, best of `--rounds` each;
  the goal is a ratio of at least 0.5;
- events: `POST /t/events` with batches of 50 distinct events (unique event ids made by the
  Lua script); the goal is 20,000 acknowledged events per second;
- durable: the server is killed with SIGKILL straight after the events run (the last second
  of events is still only in the journal), restarted, and the events in the facts are
  counted: every acknowledged event must be there, once.

    python -m benchmarks.collector [--seconds 10] [--connections 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from benchmarks.common import report, scratch

BATCH = 50
WAIT_SECONDS = 120

DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
end
"""

EVENTS = """
local next_thread = 1
function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end
local counter = 0
function request()
  counter = counter + 1
  local parts = {}
  for k = 1, %(batch)d do
    parts[k] = string.format(
      '{"event_id":"b%%d-%%d-%%d","type":"product_view","anonymous_id":"v%%d",' ..
      '"product_id":"P%%d","occurred_at":"%(at)s","properties":{"list":"home"}}',
      tid, counter, k, (counter * 7 + k) %% 5000, k %% 100)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/t/events", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`reengage serve` on a home, as a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reengage", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"reengage serve did not start (see {self.log})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=WAIT_SECONDS)


def wrk(url: str, script: str, seconds: int, connections: int, folder: Path) -> dict[str, Any]:
    lua = folder / "script.lua"
    lua.write_text(script + DONE)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["per_second"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def stored(facts: Path) -> tuple[int, int]:
    """(events of the benchmark's batches in the facts, distinct event ids among them)."""
    files = [str(f) for f in (facts / "events").glob("day=*/part-*.parquet")]
    if not files:
        return 0, 0
    con = duckdb.connect()
    try:
        [(rows, ids)] = con.sql(
            "SELECT count(*), count(DISTINCT event_id) FROM read_parquet($f) "
            "WHERE starts_with(event_id, 'b')",
            params={"f": files},
        ).fetchall()
    finally:
        con.close()
    return int(rows), int(ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("this benchmark needs wrk (apt-get install wrk)")

    folder = scratch("collector")
    home = folder / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env |= {"REENGAGE_HOME": str(home), "REENGAGE_COLLECTOR_RATE_PER_MINUTE": "0"}
    subprocess.run([sys.executable, "-m", "reengage", "init"], env=env, check=True, **_quiet())
    server = Server(env, folder / "serve.log")
    server.start()
    try:
        hello: list[float] = []
        pixel: list[float] = []
        pixel_url = f"{server.url}/t/p.gif?e=page_view&aid=bench-visitor&pid=P1"
        for _ in range(args.rounds):
            got = wrk(f"{server.url}/t/hello", "", args.seconds, args.connections, folder)
            hello.append(got["per_second"])
            got = wrk(pixel_url, "", args.seconds, args.connections, folder)
            pixel.append(got["per_second"])
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        script = EVENTS % {"batch": BATCH, "at": at}
        events = wrk(f"{server.url}/t/events", script, args.seconds, args.connections, folder)
        server.stop(signal.SIGKILL)  # the journal holds what was not flushed yet
    finally:
        server.stop(signal.SIGKILL)
    acknowledged = (events["requests"] - events["status_errors"]) * BATCH
    server.start()  # stores what the journal kept before it answers
    try:
        rows, ids = stored(home / "facts")
    finally:
        server.stop()
    report(
        "collector",
        {
            "connections": args.connections,
            "seconds": args.seconds,
            "hello_per_s": round(max(hello)),
            "pixel_per_s": round(max(pixel)),
            "pixel_vs_hello": round(max(pixel) / max(hello), 2),
            "events_per_s": round(acknowledged / (events["duration_us"] / 1e6)),
            "event_requests_failed": events["status_errors"] + events["socket_errors"],
            "acknowledged": acknowledged,
            "stored_after_kill": rows,
            "stored_twice": rows - ids,
            "lost": max(0, acknowledged - ids),
        },
    )


def _quiet() -> dict[str, Any]:
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


if __name__ == "__main__":
    main()
