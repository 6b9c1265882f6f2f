"""The journey worker's throughput: due enrollments decided and queued, against a bare loop
writing the same rows into the same database, in the same run. Issue 4's goal: with
1,000,000 contacts and 100,000 due enrollments, at least 5,000 steps per second.

    python -m benchmarks.worker [--contacts 1000000] [--due 100000] [--batch 1000]
                                [--database-url postgresql://...]

Setup (not timed): a fresh home (SQLite by default) with `contacts` contacts bulk-inserted,
a tenth of them with an email marketing consent, and `due` enrollments of the built-in
`abandoned_cart` journey standing at its first step (`reminder`: a send on the best
channel), due now. The facts hold a week of orders for a tenth of the contacts, so the goal
check (an order since the cart was left?) reads real files.

Timed:
- reengage: `advance` — claim each batch, check the goals (orders in the facts,
  unsubscriptions in the state), run the steps (the send, then the 23 h wait), queue the
  outbox rows with each contact's style and language, log every step, move each enrollment
  on; one transaction per `--batch` enrollments;
- bare: the same rows — the outbox rows, the step log rows and the enrollments' new
  positions — written by plain SQLAlchemy `insert` / `update` executemany loops, one
  transaction per batch, into the same tables (emptied first).
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, bindparam, delete, select, update

from benchmarks.common import insert_contacts, peak_rss_mib, report, scratch
from reengage.config import Settings
from reengage.facts import reader
from reengage.facts.kinds import ORDERS
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.journeys import LIBRARY, load_journey
from reengage.journeys.advancing import Services, advance
from reengage.state.db import bulk_insert_columns, engine_for
from reengage.state.schema import (
    consents,
    enrollment_steps,
    enrollments,
    messages,
)

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # a Monday afternoon: no quiet hours
ZONES = ("Europe/Rome", "Europe/London", "America/New_York", None)


def build(engine: Engine, settings: Settings, n: int, due: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        ids = insert_contacts(conn, n, ZONES, NOW)
        consenting = ids[ids % 10 == 0].tolist()
        bulk_insert_columns(
            conn,
            consents,
            {
                "contact_id": consenting,
                "channel": ["email"] * len(consenting),
                "purpose": ["marketing"] * len(consenting),
                "granted": [True] * len(consenting),
                "source": ["benchmark"] * len(consenting),
                "recorded_at": [NOW - timedelta(days=300)] * len(consenting),
            },
        )
        chosen = np.sort(rng.choice(ids, size=due, replace=False))
        entered = [NOW - timedelta(hours=1, minutes=int(m)) for m in rng.integers(0, 600, due)]
        bulk_insert_columns(
            conn,
            enrollments,
            {
                "journey": ["abandoned_cart"] * due,
                "contact_id": chosen.tolist(),
                "trigger_key": [f"e:{i}" for i in range(due)],
                "entered_at": entered,
                "status": ["active"] * due,
                "step": ["reminder"] * due,
                "due_at": [NOW - timedelta(minutes=1)] * due,
                "variants": [""] * due,
                "digest": [""] * due,
                "steps_run": [0] * due,
                "payload": ['{"product_id": "P1"}'] * due,
            },
        )
    # a week of orders for a tenth of the contacts: what the goal check reads
    buyers = rng.choice(ids, size=n // 10, replace=False)
    seconds = rng.integers(0, 7 * 86400, buyers.size)
    at = [NOW - timedelta(days=7) + timedelta(seconds=int(s)) for s in seconds]
    table = pa.table(
        {
            "line_id": [f"L{i}" for i in range(buyers.size)],
            "order_id": [f"O{i}" for i in range(buyers.size)],
            "customer_id": [f"C{i:07d}" for i in buyers],
            "ordered_at": pa.array(at, pa.timestamp("us", "UTC")),
            "product_id": ["P1"] * buyers.size,
            "quantity": pa.array([1] * buyers.size, pa.int32()),
            "unit_price": [20.0] * buyers.size,
            "currency": ["EUR"] * buyers.size,
            "discount": [0.0] * buyers.size,
            "coupon_code": pa.array([None] * buyers.size, pa.string()),
            "status": ["paid"] * buyers.size,
        }
    )
    append(settings.facts_path, ORDERS, table, ingested_at=NOW - timedelta(hours=1))


def written(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """What the worker wrote, to write again bare."""
    with engine.connect() as conn:
        return {
            "messages": [dict(r._mapping) for r in conn.execute(select(messages))],
            "steps": [dict(r._mapping) for r in conn.execute(select(enrollment_steps))],
            "moves": [
                dict(r._mapping)
                for r in conn.execute(
                    select(
                        enrollments.c.id.label("b_id"),
                        enrollments.c.status.label("b_status"),
                        enrollments.c.step.label("b_step"),
                        enrollments.c.due_at.label("b_due_at"),
                        enrollments.c.steps_run.label("b_steps_run"),
                    ).order_by(enrollments.c.id)
                )
            ],
        }


def bare(engine: Engine, rows: dict[str, list[dict[str, Any]]], batch: int) -> float:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("TRUNCATE enrollment_steps, offers, messages")
        else:
            conn.execute(delete(enrollment_steps))
            conn.execute(delete(messages))
    by_enrollment: dict[int, list[dict[str, Any]]] = {}
    for step in rows["steps"]:
        by_enrollment.setdefault(step["enrollment_id"], []).append(step)
    queued: dict[int, list[dict[str, Any]]] = {}
    for message in rows["messages"]:  # keyed j:<enrollment>:<step>
        queued.setdefault(int(message["message_key"].split(":")[1]), []).append(message)
    moves = rows["moves"]
    move = (
        update(enrollments)
        .where(enrollments.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            step=bindparam("b_step"),
            due_at=bindparam("b_due_at"),
            steps_run=bindparam("b_steps_run"),
        )
    )
    start = time.perf_counter()
    for first in range(0, len(moves), batch):
        part = moves[first : first + batch]
        ids = {m["b_id"] for m in part}
        with engine.begin() as conn:
            sent = [m for e in ids for m in queued.get(e, [])]
            if sent:
                conn.execute(messages.insert(), sent)
            logged = [s for e in ids for s in by_enrollment.get(e, [])]
            if logged:
                conn.execute(enrollment_steps.insert(), logged)
            conn.execute(move, part)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    folder = scratch("worker")
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    settings = Settings(
        home=folder / "home",
        database_url=args.database_url,
        secret_key="benchmark-secret-" + "x" * 32,
    )
    if args.database_url:
        with engine_for(args.database_url).begin() as conn:
            for table in ("enrollment_steps", "enrollments", "offers", "messages", "consents"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    home = init_home(settings).home
    engine = engine_for(settings.state_url)
    start = time.perf_counter()
    build(engine, home.settings, args.contacts, args.due, args.seed)
    built = time.perf_counter() - start
    journey = load_journey(LIBRARY / "abandoned_cart.yaml")
    facts = reader.connect(home.settings.facts_path)
    start = time.perf_counter()
    done = advance(
        engine,
        {"abandoned_cart": journey},
        Services(home, home.settings, facts, NOW),
        batch=args.batch,
    )
    worker_s = time.perf_counter() - start
    facts.close()
    rows = written(engine)
    bare_s = bare(engine, rows, args.batch)
    engine.dispose()
    report(
        "worker",
        {
            "contacts": args.contacts,
            "due": args.due,
            "database": engine.dialect.name,
            "batch": args.batch,
            "build_s": round(built, 1),
            "steps": done.steps,
            "queued": done.queued,
            "ended": dict(done.ended),
            "worker_s": round(worker_s, 2),
            "steps_per_s": round(done.steps / worker_s),
            "enrollments_per_s": round(args.due / worker_s),
            "bare_s": round(bare_s, 2),
            "ratio_to_bare": round(worker_s / bare_s, 2),
            "goal_steps_per_s": 5000,
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
