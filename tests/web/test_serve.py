"""`reengage serve` as a real process: it answers on its port and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

WAIT_SECONDS = 60  # a generous bound for a slow machine, not a speed requirement


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_then_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    env["REENGAGE_HOME"] = str(tmp_path / "home")
    reengage = [sys.executable, "-m", "reengage"]
    made = subprocess.run([*reengage, "init"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = subprocess.Popen(
        [*reengage, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        health = None
        deadline = time.monotonic() + WAIT_SECONDS
        while health is None and time.monotonic() < deadline:
            if server.poll() is not None:
                break
            try:
                health = httpx.get(f"{base}/healthz", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
        if health is None:
            server.kill()
            _, err = server.communicate()
            raise AssertionError(f"serve did not answer on its port: {err}")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert httpx.get(f"{base}/l/u/not.valid", timeout=5).status_code == 404

        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=WAIT_SECONDS)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert base in out and "reengage stopped" in out
    assert "not.valid" not in out + err  # no access log: it would hold every token
