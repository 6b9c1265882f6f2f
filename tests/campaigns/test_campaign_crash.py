"""A campaign's sender killed with SIGKILL again and again: `reengage campaigns deliver` runs
as a real process against a real SMTP server (aiosmtpd in this process, a little slow on
purpose so that a kill lands mid-campaign), and is killed after a random delay, then each
time a few more messages have arrived. Each restart comes 11 minutes later by the clock
(`--now`), past the 10-minute leases a dead process leaves on its campaign and its claimed
rows. In the end the server has received the audience minus the holdout and the policy's
blocks, each exactly once.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select

from reengage.audience.segments import refresh_segments
from reengage.campaigns import lifecycle
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.state.schema import campaign_recipients, consents, contacts, messages

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
PEOPLE = 400
KILLS = 5


@dataclass
class Inbox:
    received: list[str] = field(default_factory=list)  # the To of each message
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.01)  # a relay taking its time: the sender is caught mid-way
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(str(message["To"]).lower())
            return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _shop(home: Home, engine: Engine) -> dict[int, tuple[str, bool]]:
    """PEOPLE contacts in the audience; every seventh has not opted in."""
    people: dict[int, tuple[str, bool]] = {}
    with engine.begin() as conn:
        for i in range(PEOPLE):
            address = f"p{i}@example.com"
            key = conn.execute(
                insert(contacts).values(
                    customer_id=f"C{i}",
                    email=address,
                    country="IT",
                    created_at=T0 - timedelta(days=100),
                    updated_at=T0 - timedelta(days=100),
                    origin="customers",
                    attributes={},
                )
            ).inserted_primary_key
            assert key is not None
            allowed = i % 7 != 0
            if allowed:
                conn.execute(
                    insert(consents).values(
                        contact_id=int(key[0]),
                        channel="email",
                        purpose="marketing",
                        granted=True,
                        source="test",
                        recorded_at=T0 - timedelta(days=100),
                    )
                )
            people[int(key[0])] = (address, allowed)
    folder = home.path / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "italy.yaml").write_text("rule: 'country = \"IT\"'\n", encoding="utf-8")
    refresh_segments(home, engine, FixedClock(T0), ["italy"])
    return people


def test_a_sender_killed_again_and_again_delivers_each_message_once(
    home: Home, engine: Engine, env: dict[str, str], smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    people = _shop(home, engine)
    clock = FixedClock(T0)
    lifecycle.write(
        home,
        engine,
        clock,
        "news",
        "audience: {segments: [italy]}\nmessage: {intent: winback_reminder}\nholdout: 10%\n",
    )
    lifecycle.schedule(home, engine, clock, "news", T0)

    values = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
    values.update(env)
    values.update(
        REENGAGE_SMTP_URL=f"smtp://127.0.0.1:{port}",
        REENGAGE_QUIET_HOURS="off",
        REENGAGE_SHOP_URL="https://shop.example.com",
    )
    rng = random.Random(20261206)
    kills = 0
    now = T0
    for attempt in range(KILLS + 3):
        values["REENGAGE_NOW"] = now.isoformat()
        log = tmp_path / f"deliver{attempt}.err"
        with open(log, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "reengage", "campaigns", "deliver", "news", "--json"],
                env=values,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        if kills < KILLS:
            # the first time at a random moment (starting, freezing, queueing or sending),
            # then once a few more messages have arrived
            target = inbox.count() + rng.randint(15, 60)
            deadline = time.monotonic() + (rng.uniform(0.5, 3.0) if attempt == 0 else 60)
            while process.poll() is None and time.monotonic() < deadline:
                if attempt and inbox.count() >= target:
                    break
                time.sleep(0.002)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
        else:
            assert process.wait(timeout=120) == 0, log.read_text()
            break
        now += timedelta(minutes=11)  # past the leases the dead process left
    assert kills == KILLS

    with engine.connect() as conn:
        frozen = {
            r.contact_id: r.grp
            for r in conn.execute(
                select(campaign_recipients).where(campaign_recipients.c.campaign == "news")
            )
        }
        statuses = Counter(
            conn.execute(select(messages.c.status).where(messages.c.campaign == "news")).scalars()
        )
    assert len(frozen) == PEOPLE
    expected = {people[c][0] for c, grp in frozen.items() if grp != "holdout" and people[c][1]}
    blocked = sum(1 for c, grp in frozen.items() if grp != "holdout" and not people[c][1])
    assert statuses == Counter({"sent": len(expected), "blocked": blocked}), statuses
    received = Counter(inbox.received)
    assert max(received.values()) == 1, "a message arrived twice"
    assert set(received) == expected
