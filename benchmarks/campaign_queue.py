"""Queueing a campaign to a million contacts, against a bare bulk insert of the same outbox
rows into the same database, in the same run. Issue 10's goal: at most 3 times the bare
insert, on SQLite and on PostgreSQL.

    python -m benchmarks.campaign_queue [--contacts 1000000] [--database-url postgresql://...]

Setup (not timed): a fresh home with `contacts` contacts (three languages, four time zones),
each with a scores row carrying a style, all members of one segment; the facts hold opens
and orders for a third of them (what send-time optimisation reads).

Timed:
- bare: the campaign's outbox rows, built beforehand, written by `bulk_insert_columns` (COPY
  on PostgreSQL, one executemany on SQLite) in one transaction into `messages`, emptied
  after;
- reengage: the campaign started by `campaigns.runner.tick` — the audience frozen (members
  read, holdout 10% and a two-arm subject test on 10% drawn, each contact's best send hour
  in a 24 h window chosen, the recipients written), then the outbox rows of the test share
  and, after the decision, of the rest written with style, language and copy.
  The segment is not refreshed here (`audience.refresh: false`): refreshing is the segments
  benchmark's.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, delete, func, select

from benchmarks.common import insert_contacts, peak_rss_mib, report, scratch
from reengage.campaigns import lifecycle
from reengage.campaigns.runner import tick
from reengage.clock import FixedClock
from reengage.config import Settings
from reengage.facts.kinds import MESSAGE_EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.state.db import bulk_insert_columns, engine_for
from reengage.state.schema import campaign_recipients, messages, scores, segment_members

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ZONES = ("Europe/Rome", "Europe/London", "America/New_York", None)
STYLES = ("go_getter", "promoter", "nurturer", "examiner", "unknown")

CAMPAIGN = """
audience: {segments: [everyone], refresh: false}
message: {intent: winback_reminder}
schedule: {best_time: 24h}
holdout: 10%
test:
  share: 10%
  window: 4h
  variants:
    - {name: a, copy: {subject: "What's new this week"}}
    - {name: b, copy: {subject: "{{ first_name or 'Hello' }}, this week's picks"}}
"""


def build(engine: Engine, settings: Settings, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        ids = insert_contacts(conn, n, ZONES, NOW)
        bulk_insert_columns(
            conn,
            scores,
            {
                "contact_id": ids.tolist(),
                "as_of": [NOW - timedelta(days=1)] * n,
                "computed_at": [NOW - timedelta(days=1)] * n,
                "orders": [1] * n,
                "total_spent": [10.0] * n,
                "lifecycle": ["active"] * n,
                "threshold_days": [180.0] * n,
                "style": [STYLES[i % len(STYLES)] for i in ids],
                "details": ["{}"] * n,
            },
        )
        bulk_insert_columns(
            conn,
            segment_members,
            {
                "segment": ["everyone"] * n,
                "contact_id": ids.tolist(),
                "entered_at": [NOW - timedelta(days=3)] * n,
            },
        )
    folder = settings.home / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "everyone.yaml").write_text("rule: 'orders >= 0'\n", encoding="utf-8")
    # three opens and an order for a third of the contacts, at their habitual hour
    active = rng.choice(ids, size=n // 3, replace=False)
    habit = rng.integers(0, 168, active.size)
    opens = np.repeat(active, 3)
    weeks = rng.integers(1, 20, opens.size)
    hour = np.repeat(habit, 3)
    stamps = (
        np.datetime64("2026-01-05T00:00:00") + (weeks * 7 * 24 + hour).astype("timedelta64[h]")
    ).astype("datetime64[us]")
    events = pa.table(
        {
            "event_id": [f"o{i}" for i in range(opens.size)],
            "message_id": [str(i) for i in range(opens.size)],
            "customer_id": [f"C{i:07d}" for i in opens],
            "channel": ["email"] * opens.size,
            "type": ["open"] * opens.size,
            "occurred_at": pa.array(stamps, pa.timestamp("us", "UTC")),
            "properties": ['{"machine": false}'] * opens.size,
        }
    )
    append(settings.facts_path, MESSAGE_EVENTS, events, ingested_at=NOW)
    table = pa.table(
        {
            "line_id": [f"L{i}" for i in range(active.size)],
            "order_id": [f"O{i}" for i in range(active.size)],
            "customer_id": [f"C{i:07d}" for i in active],
            "ordered_at": pa.array(stamps[::3], pa.timestamp("us", "UTC")),
            "product_id": ["P1"] * active.size,
            "quantity": pa.array([1] * active.size, pa.int32()),
            "unit_price": [20.0] * active.size,
            "currency": ["EUR"] * active.size,
            "discount": [0.0] * active.size,
            "coupon_code": pa.array([None] * active.size, pa.string()),
            "status": ["paid"] * active.size,
        }
    )
    append(settings.facts_path, ORDERS, table, ingested_at=NOW)


def queued_rows(engine: Engine) -> dict[str, list[Any]]:
    """The rows reengage wrote, column by column, as the bare insert will write them."""
    names = [c.name for c in messages.columns if c.name != "id"]
    with engine.connect() as conn:
        found = conn.execute(select(*(messages.c[n] for n in names))).all()
    return {n: [r[i] for r in found] for i, n in enumerate(names)}


def bare(engine: Engine, rows: dict[str, list[Any]]) -> float:
    with engine.begin() as conn:
        conn.execute(delete(messages))
    start = time.perf_counter()
    with engine.begin() as conn:
        bulk_insert_columns(conn, messages, rows)
    return time.perf_counter() - start


def reengage(settings: Settings, engine: Engine) -> tuple[float, float, int]:
    """Start the campaign (freeze and queue the test share), then decide and queue the rest:
    the seconds of each part, and the rows written."""
    home = init_home(settings).home
    clock = FixedClock(NOW)
    with engine.begin() as conn:
        conn.execute(delete(messages))
        conn.execute(delete(campaign_recipients))
    lifecycle.write(home, engine, clock, "weekly", CAMPAIGN)
    lifecycle.schedule(home, engine, clock, "weekly", NOW)
    start = time.perf_counter()
    tick(home, engine, clock)
    started = time.perf_counter() - start
    clock.advance(timedelta(hours=4))
    start = time.perf_counter()
    tick(home, engine, clock)
    rest = time.perf_counter() - start
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(messages)).scalar_one()
    return started, rest, int(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    folder = scratch("campaign_queue")
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    settings = Settings(
        home=folder / "home",
        database_url=args.database_url,
        secret_key="benchmark-secret-" + "x" * 32,
    )
    if args.database_url:
        with engine_for(args.database_url).begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    home = init_home(settings).home
    engine = engine_for(settings.state_url)
    start = time.perf_counter()
    build(engine, home.settings, args.contacts, args.seed)
    built = time.perf_counter() - start
    started_s, rest_s, written = reengage(home.settings, engine)
    rows = queued_rows(engine)
    bare_s = bare(engine, rows)
    engine.dispose()
    ours = started_s + rest_s
    report(
        "campaign_queue",
        {
            "contacts": args.contacts,
            "database": engine.dialect.name,
            "build_s": round(built, 1),
            "outbox_rows": written,
            "start_and_test_s": round(started_s, 2),
            "decide_and_rest_s": round(rest_s, 2),
            "reengage_s": round(ours, 2),
            "bare_insert_s": round(bare_s, 2),
            "ratio_to_bare": round(ours / bare_s, 2),
            "goal_ratio": 3,
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
