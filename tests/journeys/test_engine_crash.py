"""Crash tests of the journey engine: `reengage run` killed with SIGKILL mid-replay many times,
and four `reengage worker` processes on PostgreSQL killed at random while they share a
backlog. After the restarts, the outbox, the step log and the enrollments equal those of a
run that was never interrupted — no message lost, none repeated — and what reaches a real
SMTP server is every allowed message once.

The processes are the real command line, started through a small probe (`PROBE`) that logs
each state transaction's begin and end and each batch of enrollments to a file before it runs
`reengage`: after a kill the log says whether the process died inside a transaction, inside
a batch of the advancing step, and whether that batch had written its effects. The kills
come at random moments after a process is at work; some wait for a batch on purpose, so that
every run of the tests kills inside one.

Enrollment ids are not compared between two databases (a sequence is not rolled back on
PostgreSQL, and entering order is free): messages and steps are compared by what they are,
the enrollment's (journey, customer, trigger key) and the step.
"""

from __future__ import annotations

import email
import email.policy
import os
import random
import re
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

import psycopg
import pyarrow as pa
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, insert, select

from reengage.channels.mail import outbox_id_from_message_id
from reengage.clock import FixedClock, as_utc
from reengage.config import Home, load_settings
from reengage.facts.kinds import EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.journeys import enable_journey, enabled_journeys
from reengage.journeys.advancing import Services
from reengage.journeys.entering import enter
from reengage.journeys.runner import run_until, work
from reengage.messages.dispatch import deliver_due
from reengage.state.db import engine_for
from reengage.state.schema import (
    consents,
    contacts,
    enrollment_steps,
    enrollments,
    messages,
    offers,
    products,
)

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ZONES = [None, "Europe/Rome", "America/New_York", "Asia/Tokyo"]
WAIT_SECONDS = 120  # a generous bound for one process on a slow machine
MAX_STARTS = 60  # a replay that needs more restarts than this is stuck, not slow

# Runs `reengage` with its arguments, logging "<pid> <time> <word>" lines to $CRASH_PROBE_LOG:
# begin, commit and rollback of every state transaction; `batch` when a batch of claimed
# enrollments starts its steps, `written` when all its effects are written (not committed
# yet). Each line reaches the file before the process goes on (line buffering), so the last
# lines of a killed process say where it died. $CRASH_PROBE_PAUSE seconds of sleep before and
# after a batch's steps stretch the time a worker holds its claim, and so the chance that a
# kill lands inside a batch; the steps themselves run unchanged.
PROBE = """
import os, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
import reengage.journeys.advancing as advancing

log = open(os.environ["CRASH_PROBE_LOG"], "a", buffering=1, encoding="utf-8")
pause = float(os.environ.get("CRASH_PROBE_PAUSE") or 0)
pid = os.getpid()

def note(word):
    log.write(f"{pid} {time.time():.6f} {word}\\n")

for name in ("begin", "commit", "rollback"):
    event.listen(Engine, name, lambda conn, word=name: note(word))
run = advancing.Batch.run

def noted(self):
    note("batch")
    time.sleep(pause)
    done = run(self)
    note("written")
    time.sleep(pause)
    return done

advancing.Batch.run = noted
sys.argv[0] = "reengage"
from reengage.cli import main
main()
"""


# --- a shop -------------------------------------------------------------------------------


def build_shop(home: Home, engine: Engine, *, people: int, days: float, seed: int) -> None:
    """`people` customers (80% with email marketing consent) who leave carts over `days`
    from START — some buy at once, some go to checkout, some buy hours or days later — and
    place orders; `abandoned_cart` and `post_purchase` enabled. The same seed builds the
    same shop, contact ids included, in an empty database."""
    rng = random.Random(seed)
    before = START - timedelta(days=300)
    items = [f"P{n}" for n in range(1, 9)]
    with engine.begin() as conn:
        conn.execute(
            insert(products),
            [
                {
                    "product_id": p,
                    "title": f"Product {p}",
                    "category": "bags",
                    "price": 20 + 5 * n,
                    "currency": "EUR",
                    "url": f"https://shop.example.com/p/{p}",
                    "in_stock": True,
                    "created_at": before,
                    "updated_at": before,
                    "origin": "test",
                }
                for n, p in enumerate(items)
            ],
        )
        for i in range(people):  # one at a time: the ids follow the customer numbers
            conn.execute(
                insert(contacts).values(
                    customer_id=f"C{i:04d}",
                    email=f"c{i:04d}@example.org",
                    first_name=f"Person{i}",
                    language=rng.choice(["en", "it", "fr"]),
                    timezone=rng.choice(ZONES),
                    created_at=before,
                    updated_at=before,
                    origin="customers",
                    attributes={},
                )
            )
        ids = dict(conn.execute(select(contacts.c.customer_id, contacts.c.id)).all())
        consenting = [i for i in range(people) if rng.random() < 0.8]
        conn.execute(
            insert(consents),
            [
                {
                    "contact_id": ids[f"C{i:04d}"],
                    "channel": "email",
                    "purpose": "marketing",
                    "granted": True,
                    "source": "signup",
                    "recorded_at": before,
                }
                for i in consenting
            ],
        )
    events: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []

    def order(customer: str, at: datetime) -> None:
        n = len(orders)
        orders.append(
            {
                "line_id": f"L{n}",
                "order_id": f"O{n}",
                "customer_id": customer,
                "ordered_at": at,
                "product_id": rng.choice(items),
                "quantity": 1,
                "unit_price": 30.0,
                "currency": "EUR",
                "discount": 0.0,
                "coupon_code": None,
                "status": "paid",
            }
        )

    def event(customer: str, kind: str, at: datetime, product: str | None) -> None:
        n = len(events)
        events.append(
            {
                "event_id": f"E{n}",
                "customer_id": customer,
                "anonymous_id": None,
                "type": kind,
                "occurred_at": at,
                "product_id": product,
                "session_id": f"S{n}",
                "source": None,
                "device": None,
                "duration_s": None,
                "properties": None,
            }
        )

    span = days * 86400
    for i in range(people):
        customer = f"C{i:04d}"
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            at = START + timedelta(seconds=rng.uniform(0, span))
            event(customer, "add_to_cart", at, rng.choice(items))
            fate = rng.random()
            if fate < 0.15:  # bought at once: no cart series
                order(customer, at + timedelta(minutes=rng.uniform(1, 50)))
            elif fate < 0.25:  # went to checkout: no cart series either
                event(customer, "checkout_start", at + timedelta(minutes=rng.uniform(1, 50)), None)
            elif fate < 0.5:  # bought later: the goal ends the series somewhere along it
                order(customer, at + timedelta(hours=rng.uniform(1.5, 80)))
        if rng.random() < 0.3:  # an order out of the blue
            order(customer, START + timedelta(seconds=rng.uniform(0, span)))
    stamp = START - timedelta(days=1)
    append(home.settings.facts_path, ORDERS, pa.Table.from_pylist(orders), ingested_at=stamp)
    append(home.settings.facts_path, EVENTS, pa.Table.from_pylist(events), ingested_at=stamp)
    for name in ("abandoned_cart", "post_purchase"):
        enable_journey(home, name)


def other_home(root: Path, url: str) -> tuple[Home, Engine]:
    """A second home (made like the `home` fixture's) on the database at `url`."""
    values = {"REENGAGE_HOME": str(root), "REENGAGE_DATABASE_URL": url}
    init_home(load_settings(values))
    home = Home(load_settings(values))
    return home, engine_for(home.settings.state_url)


@pytest.fixture
def reference_url(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[str]:
    """A second empty database on the backend under test, for the uninterrupted run."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name = f"ref{os.getpid()}_{time.monotonic_ns()}"
    admin = server.url().replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- what the engine decided, by what it is --------------------------------------------------


@dataclass
class Decided:
    """The engine's state in terms that do not depend on ids: an enrollment is its
    (journey, customer, trigger key)."""

    outbox: Counter[tuple[Any, ...]]  # enrollment, step, intent, channel, due_at
    steps: Counter[tuple[Any, ...]]  # enrollment, step, kind, at, outcome
    enrollments: dict[tuple[str, str, str], tuple[Any, ...]]  # status, step, due_at, ...
    keys: dict[int, tuple[Any, ...]]  # outbox id -> (enrollment, step)
    offers: int


def decided(engine: Engine) -> Decided:
    with engine.connect() as conn:
        rows = conn.execute(
            select(enrollments, contacts.c.customer_id).join(
                contacts, contacts.c.id == enrollments.c.contact_id
            )
        ).all()
        names = {r.id: (r.journey, r.customer_id, r.trigger_key) for r in rows}
        contact_of = {r.id: r.contact_id for r in rows}
        states = {
            names[r.id]: (
                r.status,
                r.step,
                None if r.due_at is None else as_utc(r.due_at),
                r.reason,
                None if r.ended_at is None else as_utc(r.ended_at),
                r.steps_run,
                r.variants,
            )
            for r in rows
        }
        outbox: Counter[tuple[Any, ...]] = Counter()
        keys = {}
        for m in conn.execute(select(messages)):
            prefix, enrollment, step = m.message_key.split(":", 2)
            assert prefix == "j" and m.step == step, m.message_key
            who = names[int(enrollment)]
            assert (m.journey, m.contact_id) == (who[0], contact_of[int(enrollment)])
            outbox[(who, step, m.intent, m.channel, as_utc(m.due_at))] += 1
            keys[m.id] = (who, step)
        steps: Counter[tuple[Any, ...]] = Counter(
            (names[s.enrollment_id], s.step, s.kind, as_utc(s.at), s.outcome)
            for s in conn.execute(select(enrollment_steps))
        )
        offered = conn.execute(select(func.count()).select_from(offers)).scalar_one()
    return Decided(outbox, steps, states, keys, offered)


def assert_same_as_reference(got: Decided, want: Decided) -> None:
    """Nothing lost, nothing repeated: the outbox, the step log and the enrollments equal the
    uninterrupted run's, and no step of any enrollment ran twice."""
    assert sum(want.outbox.values()) > 100  # the shop plans enough to mean something
    queued = Counter((who, step) for who, step, *_ in got.outbox.elements())
    assert max(queued.values()) == 1, "a message was queued twice"
    missing = want.outbox - got.outbox
    extra = got.outbox - want.outbox
    assert not missing and not extra, (
        f"{len(missing)} planned messages missing, {len(extra)} not planned: "
        f"{sorted(missing)[:3]} / {sorted(extra)[:3]}"
    )
    ran = Counter((who, step, kind) for who, step, kind, _at, _outcome in got.steps)
    repeated = {k: n for k, n in ran.items() if n > 1}
    assert not repeated, f"steps run more than once: {sorted(repeated)[:5]}"
    # one step log row per message, and one message per send step
    sent = Counter((who, step) for who, step, kind, _at, _outcome in got.steps if kind == "send")
    assert sent == queued
    assert got.steps == want.steps
    assert got.enrollments == want.enrollments
    assert got.offers == want.offers


# --- killing processes ------------------------------------------------------------------------


@dataclass
class Kill:
    """Where a process was when it was killed, by the probe's log."""

    pid: int
    after: float  # seconds after it started working (its first commit)
    in_transaction: bool
    in_batch: bool  # inside the transaction of a batch of enrollments being advanced
    written: bool  # ... with all the batch's effects written, the commit to come


@dataclass
class Probe:
    """Starts `reengage` processes through PROBE, kills them, and reads where they died."""

    folder: Path
    env: dict[str, str]
    pause: float = 0.0
    started: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    _read: list[tuple[int, float, str]] = field(default_factory=list)
    _offset: int = 0

    @property
    def log(self) -> Path:
        return self.folder / "probe.log"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        self.started += 1
        values = {k: v for k, v in os.environ.items() if not k.startswith("REENGAGE_")}
        values.update(self.env)
        values.update(CRASH_PROBE_LOG=str(self.log), CRASH_PROBE_PAUSE=str(self.pause))
        name = self.folder / f"process{self.started}"
        with open(f"{name}.out", "wb") as out, open(f"{name}.err", "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", PROBE, *args], env=values, stdout=out, stderr=err
            )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Kill the processes this probe started that still run (a test that failed)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def lines(self) -> list[tuple[int, float, str]]:
        """The log so far: (pid, time, word)."""
        if self.log.exists():
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.decode("utf-8").splitlines():
                pid, at, word = line.split()
                self._read.append((int(pid), float(at), word))
        return self._read

    def words(self, pid: int) -> list[str]:
        return [word for p, _at, word in self.lines() if p == pid]

    def working(self, process: subprocess.Popen[bytes]) -> bool:
        """Whether the process has committed a transaction: Python, the imports, the settings
        and the facts are loaded, it is at work."""
        return "commit" in self.words(process.pid)

    def wait_working(self, process: subprocess.Popen[bytes]) -> bool:
        """Wait until the process is at work; False if it exited first."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.working(process):
                return True
            if process.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError("the process did not start working")

    def kill_inside_batch(self, process: subprocess.Popen[bytes]) -> bool:
        """Kill the process as soon as the log shows it inside a batch of enrollments (if it
        gets to one before it exits). Whether it was killed."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            words = self.words(process.pid)
            if words and words[-1] in ("batch", "written"):
                return self.kill(process)
            time.sleep(0.002)
        return False

    def kill(self, process: subprocess.Popen[bytes]) -> bool:
        """SIGKILL the process if it still runs; record where it was. Whether it was killed."""
        if process.poll() is not None:
            return False
        process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        process.wait()
        if process.returncode != -signal.SIGKILL:  # it ended on its own meanwhile
            return False
        mine = [(at, word) for pid, at, word in self.lines() if pid == process.pid]
        words = [word for _at, word in mine]
        after = killed_at - next((at for at, word in mine if word == "commit"), killed_at)
        ends = [i for i, w in enumerate(words) if w in ("commit", "rollback")]
        begins = [i for i, w in enumerate(words) if w == "begin"]
        last = begins[-1] if begins else -1
        inside = last > (ends[-1] if ends else -1)
        batch = inside and "batch" in words[last:]
        written = batch and "written" in words[last:]
        self.kills.append(Kill(process.pid, after, inside, batch, written))
        return True

    def stderr(self, n: int) -> str:
        return (self.folder / f"process{n}.err").read_text(encoding="utf-8", errors="replace")

    def summary(self) -> str:
        k = self.kills
        return (
            f"{len(k)} kills: {sum(x.in_transaction for x in k)} inside a transaction, "
            f"{sum(x.in_batch for x in k)} inside a batch of enrollments "
            f"({sum(x.written for x in k)} of them with its effects written, not committed); "
            f"{self.started} processes started"
        )


# --- a real SMTP server ---------------------------------------------------------------------


@dataclass
class Inbox:
    messages: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(envelope.content)
            return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def message_ids(self) -> list[str]:
        with self.lock:
            found = list(self.messages)
        return [
            str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])
            for data in found
        ]


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(inbox, port)
    finally:
        controller.stop()


# --- `reengage run` killed mid-replay ---------------------------------------------------------

PEOPLE = 200
DAYS = 4  # carts and orders from START over this many days
UNTIL = START + timedelta(days=9)  # the check-ins after delivery are in, too
RUN_KILLS = 12


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_replay_killed_many_times_plans_every_message_once_and_delivers_it_once(
    home: Home,
    engine: Engine,
    env: dict[str, str],
    reference_url: str,
    tmp_path: Path,
    smtp: SmtpServer,
) -> None:
    rng = random.Random(20261102)
    build_shop(home, engine, people=PEOPLE, days=DAYS, seed=1)
    reference, reference_engine = other_home(tmp_path / "reference", reference_url)
    try:
        build_shop(reference, reference_engine, people=PEOPLE, days=DAYS, seed=1)
        replayed = time.monotonic()
        run_until(
            reference,
            reference_engine,
            UNTIL,
            start=START,
            deliver=False,
            score_every=None,
            batch=5,
        )
        # the kills come a few percent of the replay's length apart, whatever the machine
        length = time.monotonic() - replayed
        want = decided(reference_engine)
    finally:
        reference_engine.dispose()

    probe = Probe(tmp_path, env)
    args = ["run", "--until", UNTIL.isoformat(), "--from", START.isoformat()]
    args += ["--no-deliver", "--score-every", "0d", "--batch", "5", "--json"]
    began = time.monotonic()
    try:
        for _ in range(MAX_STARTS):
            process = probe.start(*args)
            if len(probe.kills) < RUN_KILLS and probe.wait_working(process):
                time.sleep(max(0.3, rng.uniform(0.03, 0.10) * length))
                # one kill in three waits for a batch, so that some surely land inside one
                inside = probe.started % 3 == 0
                if probe.kill_inside_batch(process) if inside else probe.kill(process):
                    continue
            process.wait(timeout=WAIT_SECONDS)
            assert process.returncode == 0, probe.stderr(probe.started)
            break
        else:
            raise AssertionError(f"the replay did not finish after {MAX_STARTS} starts")
    finally:
        probe.stop_all()
    print(f"\nreplay: {probe.summary()}, {time.monotonic() - began:.1f} s")
    assert len(probe.kills) >= 6, probe.summary()
    assert any(k.in_batch for k in probe.kills), probe.summary()

    got = decided(engine)
    assert_same_as_reference(got, want)

    # delivered: every message the policy allows reaches the server once, none twice
    settings = load_settings(env).model_copy(  # with the secret init wrote
        update={
            "smtp_url": f"smtp://127.0.0.1:{smtp.port}",
            "mail_from": "Shop <news@shop.example.com>",
            "shop_url": "https://shop.example.com",
            "quiet_hours": "off",
            "frequency_caps": {},
            "purchase_cooldown_days": 0.0,
        }
    )
    clock = FixedClock(UNTIL)
    done = deliver_due(Home(settings), engine, clock)
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.status, messages.c.reason)).all()
    statuses = Counter(r.status for r in rows)
    assert set(statuses) <= {"sent", "blocked"}, statuses
    assert {r.reason for r in rows if r.status == "blocked"} == {"no_consent"}
    assert statuses["sent"] > 100 and statuses["blocked"] > 0
    assert done.sent == statuses["sent"]
    received = Counter(
        outbox_id_from_message_id(settings.secret(), m) for m in smtp.inbox.message_ids()
    )
    assert max(received.values()) == 1, "a message arrived twice"
    assert set(received) == {r.id for r in rows if r.status == "sent"}
    # and what arrived is what the uninterrupted run planned, one to one
    planned = {(who, step) for who, step, *_ in want.outbox}
    blocked = {got.keys[r.id] for r in rows if r.status == "blocked"}
    arrived = Counter(got.keys[i] for i in received)
    assert arrived == Counter(planned - blocked)


# --- four workers on PostgreSQL, killed at random ------------------------------------------

WORKERS = 4
WORKER_PEOPLE = 400
WORKER_KILLS = 7
WORKER_PAUSE = 0.1  # seconds, twice per batch: see PROBE
NOW = START + timedelta(days=DAYS, hours=6)  # every cart and most orders are behind


def start_cursors(home: Home, engine: Engine) -> None:
    """The journeys' cursors at START, as if the engine had been running since: the first
    pass at NOW enters everything that fired in between (otherwise it starts at its now)."""
    from reengage.facts import reader

    facts = reader.connect(home.settings.facts_path)
    try:
        services = Services(home, home.settings, facts, START)
        enter(engine, enabled_journeys(home), services, start=START)
    finally:
        facts.close()


def due_left(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(enrollments)
            .where(enrollments.c.status == "active", enrollments.c.due_at <= NOW)
        ).scalar_one()


def one_pass(home: Home, engine: Engine) -> None:
    """`reengage worker --once` in-process (its signal handlers put back after it)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        work(home, engine, FixedClock(NOW), once=True, deliver=False, batch=5)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_four_workers_killed_at_random_share_the_backlog_without_duplicates(
    home: Home,
    engine: Engine,
    env: dict[str, str],
    reference_url: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(20261106)
    build_shop(home, engine, people=WORKER_PEOPLE, days=DAYS, seed=2)
    start_cursors(home, engine)
    reference, reference_engine = other_home(tmp_path / "reference", reference_url)
    try:
        build_shop(reference, reference_engine, people=WORKER_PEOPLE, days=DAYS, seed=2)
        start_cursors(reference, reference_engine)
        one_pass(reference, reference_engine)
        assert due_left(reference_engine) == 0
        want = decided(reference_engine)
    finally:
        reference_engine.dispose()
    assert due_left(engine) == 0  # nothing entered yet: the workers enter the backlog too

    probe = Probe(tmp_path, env, pause=WORKER_PAUSE)
    args = ["--now", NOW.isoformat(), "worker", "--once", "--no-deliver", "--batch", "5"]
    began = time.monotonic()
    numbers: dict[int, int] = {}  # pid -> the process's number, for its stderr

    def start() -> subprocess.Popen[bytes]:
        process = probe.start(*args)
        numbers[process.pid] = probe.started
        return process

    try:
        running = [start() for _ in range(WORKERS)]
        finished: list[subprocess.Popen[bytes]] = []
        while running:
            alive = [p for p in running if p.poll() is None]
            if len(probe.kills) < WORKER_KILLS and alive and probe.started < MAX_STARTS:
                working = [p for p in alive if probe.working(p)]
                if working:
                    victim = rng.choice(working)
                    time.sleep(rng.uniform(0.3, 3.0))
                    # every other kill waits for a batch, so that some surely land inside one
                    inside = len(probe.kills) % 2 == 1
                    if probe.kill_inside_batch(victim) if inside else probe.kill(victim):
                        running.remove(victim)
                        running.append(start())  # a killed worker is started again
                else:
                    time.sleep(0.05)
            else:
                for process in running:
                    process.wait(timeout=WAIT_SECONDS)
                finished.extend(running)
                running = []
                if due_left(engine):  # rows a killed worker held were skipped by the others
                    running.append(start())
            for process in [p for p in running if p.poll() is not None]:
                running.remove(process)
                finished.append(process)
            for process in finished:
                n = numbers[process.pid]
                assert process.returncode == 0, f"worker {n}: {probe.stderr(n)}"
    finally:
        probe.stop_all()
    print(f"\nworkers: {probe.summary()}, {time.monotonic() - began:.1f} s")
    assert len(probe.kills) >= WORKER_KILLS // 2, probe.summary()
    assert any(k.in_batch for k in probe.kills), probe.summary()
    assert due_left(engine) == 0

    got = decided(engine)
    assert_same_as_reference(got, want)
    # the work was shared: several workers that ran to the end ran steps
    steps = {}
    for process in finished:
        n = numbers[process.pid]
        for found in re.finditer(r"^entered [\d,]+, steps ([\d,]+),", probe.stderr(n), re.M):
            steps[n] = int(found.group(1).replace(",", ""))
    print(f"steps run by the workers that finished: {steps}")
    assert len([n for n in steps.values() if n > 0]) >= 2, steps
