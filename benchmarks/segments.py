"""Refreshing 20 segments against a bare scan of the columns they read.

    python -m benchmarks.segments [--contacts 1000000] [--database-url URL]

Synthesises a home directly (bulk inserts of contacts, one scores row each and consents;
events, orders and message events written with the facts writer, then compacted), defines 20
segments mixing profile, score, consent and behaviour rules, then times:
- refresh_first_s: the first refresh of all 20 (everyone enters: the most writing there is);
- refresh_next_s: a refresh a day later (only the differences are written);
- bare_scan_s: for each segment, the columns its rule reads, read once: the state columns
  fetched through the database driver into Arrow and scanned by DuckDB (DuckDB cannot read
  SQLite or PostgreSQL here without its network-installed extensions), and the facts columns
  scanned by DuckDB from the Parquet files; summed over the 20 segments;
- bare_scan_in_engine_s: the same, but the state store counts its columns itself (nothing
  crosses the driver): the least any evaluation could cost.
The ratios refresh / bare scan are the figures of docs/segments.md (goal: at most 5).
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from benchmarks.common import peak_rss_mib, report, scratch
from reengage.audience.conditions import Consents, Rule, walk
from reengage.audience.fields import Source
from reengage.audience.segments import create_segment, load_segments, refresh_segments
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.facts.compact import compact
from reengage.facts.kinds import EVENTS, MESSAGE_EVENTS, ORDERS, FactKind
from reengage.facts.writer import append
from reengage.home import init_home
from reengage.state.db import bulk_insert, engine_for
from reengage.state.schema import consents, contacts, products, scores

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CATEGORIES = ["shoes", "bags", "electronics", "books", "home", "beauty", "sports", "clothing"]
STAGES = ["prospect", "new", "reactivated", "repeat", "loyal", "at_risk", "inactive", "lost"]
STYLES = ["go_getter", "promoter", "nurturer", "examiner", "unknown"]
RFM = ["Champions", "Loyal", "New", "At risk", "Hibernating", "Lost"]
EVENT_MIX = {
    "page_view": 0.33,
    "product_view": 0.3,
    "session_start": 0.1,
    "search": 0.1,
    "add_to_cart": 0.08,
    "checkout_start": 0.03,
    "remove_from_cart": 0.02,
    "email_open": 0.03,
    "email_click": 0.01,
}

RULES = {
    "lapsed": 'lifecycle = "at_risk" and clv > 200 and not purchased within 30d',
    "shoe-browsers": (
        'viewed product in category "shoes" within 7d and not added_to_cart within 7d'
    ),
    "doubting-examiners": 'style = "examiner" and p_alive < 0.4',
    "regulars": "purchased at least 3 times within 365d",
    "reachable-loyal": 'can email and lifecycle in ("loyal", "repeat")',
    "italians": 'country = "IT" and language = "it"',
    "best": 'rfm_segment in ("Champions", "Loyal")',
    "open-carts": "cart_value > 50 and not purchased within 2d",
    "abandoned-carts": "add_to_cart within 2d and not checkout_start within 2d",
    "quiet-but-alive": "days_since_activity > 90 and p_alive > 0.5",
    "vip-value": "attributes.vip and clv > 500",
    "lapsing": "recency_days > 60d and recency_days <= 120d",
    "readers-not-buyers": "opened email within 30d and not purchased within 30d",
    "bag-lovers": 'top_category = "bags" and viewed product in category "bags" within 14d',
    "sms-reachable": "has phone and can sms",
    "searchers": "search at least 3 times within 7d",
    "newcomers": 'lifecycle = "new" and created_at > 30d ago',
    "fast-deciders": 'style = "go_getter" or style = "promoter"',
    "electronics-then-quiet": (
        'purchased in category "electronics" within 90d and not purchased within 7d'
    ),
    "rfm-top": "(r >= 4 and f >= 4) or m = 5",
}


def _ids(prefix: str, n: int, offset: int = 0) -> pa.Array:
    numbers = pa.array(np.arange(offset, offset + n, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, numbers, "")


def _products(rng: np.random.Generator, size: int) -> pa.Array:
    numbers = pa.array(rng.integers(0, 400, size)).cast(pa.string())
    return pc.binary_join_element_wise("P", pc.utf8_lpad(numbers, 4, "0"), "")


def synthesise_state(engine: Engine, n: int, rng: np.random.Generator) -> None:
    customer_ids = [f"C{i:07d}" for i in range(n)]
    with engine.begin() as conn:
        bulk_insert(
            conn,
            products,
            [
                {
                    "product_id": f"P{i:04d}",
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "in_stock": True,
                    "created_at": NOW,
                    "updated_at": NOW,
                    "origin": "benchmark",
                }
                for i in range(400)
            ],
        )
    chunk = 100_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        country = rng.choice(["IT", "FR", "DE", "ES", "US"], size)
        created = rng.uniform(0, 900, size)
        vip = rng.random(size) < 0.1
        phone = rng.random(size) < 0.4
        with engine.begin() as conn:
            bulk_insert(
                conn,
                contacts,
                [
                    {
                        "id": start + i + 1,
                        "customer_id": customer_ids[start + i],
                        "email": f"p{start + i}@example.com",
                        "phone": f"+39{start + i:09d}" if phone[i] else None,
                        "language": "it" if country[i] == "IT" else "en",
                        "country": str(country[i]),
                        "created_at": NOW - timedelta(days=float(created[i])),
                        "updated_at": NOW,
                        "origin": "customers",
                        "attributes": {"vip": True} if vip[i] else {},
                    }
                    for i in range(size)
                ],
            )
            bulk_insert(conn, scores, _score_rows(rng, start, size))
            granted = rng.random(size)
            bulk_insert(
                conn,
                consents,
                [
                    {
                        "contact_id": start + i + 1,
                        "channel": "email" if granted[i] < 0.6 else "sms",
                        "purpose": "marketing",
                        "granted": bool(granted[i] < 0.45 or granted[i] > 0.8),
                        "source": "benchmark",
                        "recorded_at": NOW - timedelta(days=30),
                    }
                    for i in range(size)
                ],
            )


def _score_rows(rng: np.random.Generator, start: int, size: int) -> list[dict[str, Any]]:
    stage = rng.choice(STAGES, size)
    style = rng.choice(STYLES, size)
    rfm = rng.choice(RFM, size)
    recency = rng.exponential(80, size)
    clv = rng.lognormal(4.5, 1.2, size)
    alive = rng.random(size)
    rfm_scores = rng.integers(1, 6, (size, 3))
    cart = rng.random(size)
    activity = rng.exponential(60, size)
    top = rng.choice(CATEGORIES, size)
    rows = []
    for i in range(size):
        buyer = stage[i] != "prospect"
        rows.append(
            {
                "contact_id": start + i + 1,
                "as_of": NOW - timedelta(days=1),
                "computed_at": NOW,
                "orders": int(rfm_scores[i, 1]) if buyer else 0,
                "recency_days": float(recency[i]) if buyer else None,
                "frequency": int(rfm_scores[i, 1]) - 1 if buyer else None,
                "monetary": float(clv[i] / 3) if buyer else None,
                "total_spent": float(clv[i]) if buyer else 0.0,
                "tenure_days": float(recency[i] * 3) if buyer else None,
                "r": int(rfm_scores[i, 0]) if buyer else None,
                "f": int(rfm_scores[i, 1]) if buyer else None,
                "m": int(rfm_scores[i, 2]) if buyer else None,
                "rfm_segment": str(rfm[i]) if buyer else None,
                "lifecycle": str(stage[i]),
                "threshold_days": 60.0,
                "p_alive": float(alive[i]) if buyer else None,
                "expected_purchases_90d": float(alive[i]) if buyer else None,
                "expected_order_value": float(clv[i] / 3) if buyer else None,
                "clv": float(clv[i]) if buyer else None,
                "style": str(style[i]),
                "style_confidence": 0.6,
                "p_go_getter": 0.25,
                "p_promoter": 0.25,
                "p_nurturer": 0.25,
                "p_examiner": 0.25,
                "style_source": "behaviour",
                "details": {
                    "cart_value": float(cart[i] * 200) if cart[i] < 0.3 else None,
                    "cart_items": int(cart[i] * 10) if cart[i] < 0.3 else None,
                    "top_category": str(top[i]) if buyer else None,
                    "days_since_activity": float(activity[i]),
                    "sessions": 3,
                },
            }
        )
    return rows


def _write_facts(root: Path, kind: FactKind, table: pa.Table, parts: int = 12) -> None:
    """Sorted by time and appended in slices, so each append touches days no file holds yet."""
    table = table.sort_by(kind.time_column)
    step = -(-table.num_rows // parts)
    for start in range(0, table.num_rows, step):
        append(root, kind, table.slice(start, step), ingested_at=NOW - timedelta(days=400))


def synthesise_facts(root: Path, n: int, rng: np.random.Generator) -> dict[str, int]:
    customers = pa.array([f"C{i:07d}" for i in range(n)])
    counts: dict[str, int] = {}

    def moments(size: int, scale_days: float, horizon_days: float) -> pa.Array:
        ago = np.minimum(rng.exponential(scale_days, size), horizon_days)
        micros = (NOW.timestamp() - ago * 86400) * 1e6
        return pa.array(micros.astype("int64")).cast(pa.timestamp("us", tz="UTC"))

    size = n * 8
    who = customers.take(pa.array(rng.integers(0, n, size)))
    anonymous = pa.array(rng.random(size) < 0.1)
    kinds = list(EVENT_MIX)
    types = rng.choice(kinds, size, p=np.array(list(EVENT_MIX.values())) / sum(EVENT_MIX.values()))
    events = pa.table(
        {
            "event_id": _ids("E", size),
            "customer_id": pc.if_else(anonymous, pa.scalar(None, pa.string()), who),
            "anonymous_id": who,
            "type": pa.array(types),
            "occurred_at": moments(size, 30, 120),
            "product_id": _products(rng, size),
        }
    )
    _write_facts(root, EVENTS, _complete(EVENTS, events))
    counts["events"] = size

    size = int(n * 1.5)
    status = rng.choice(["paid", "cancelled", "refunded"], size, p=[0.95, 0.03, 0.02])
    orders = pa.table(
        {
            "line_id": _ids("L", size),
            "order_id": _ids("O", size),
            "customer_id": customers.take(pa.array(rng.integers(0, n, size))),
            "ordered_at": moments(size, 150, 730),
            "product_id": _products(rng, size),
            "quantity": pa.array(np.ones(size, dtype=np.int32)),
            "unit_price": pa.array(rng.uniform(5, 200, size)),
            "discount": pa.array(np.zeros(size)),
            "status": pa.array(status),
        }
    )
    _write_facts(root, ORDERS, _complete(ORDERS, orders, currency="EUR"))
    counts["order_lines"] = size

    size = n // 2
    messages = pa.table(
        {
            "event_id": _ids("M", size),
            "message_id": _ids("m", size),
            "customer_id": customers.take(pa.array(rng.integers(0, n, size))),
            "type": pa.array(rng.choice(["sent", "opened", "clicked"], size)),
            "occurred_at": moments(size, 20, 60),
        }
    )
    messages = _complete(MESSAGE_EVENTS, messages, channel="email")
    _write_facts(root, MESSAGE_EVENTS, messages, parts=4)
    counts["message_events"] = size
    return counts


def _complete(kind: FactKind, table: pa.Table, **constants: str) -> pa.Table:
    """Every column of the kind but ingested_at, in order: the missing ones are the constants
    given, or empty."""
    columns = {}
    for field in kind.schema:
        if field.name == "ingested_at":
            continue
        if field.name in table.column_names:
            columns[field.name] = table.column(field.name).cast(field.type)
        else:
            value = constants.get(field.name)
            columns[field.name] = pa.array([value] * table.num_rows, field.type)
    return pa.table(columns)


def _state_columns(rule: Rule) -> dict[str, set[str]]:
    """The state tables and columns a rule reads."""
    columns: dict[str, set[str]] = {"contacts": {"id", "customer_id"}}
    for f in rule.fields:
        if f.source is Source.CONTACT:
            columns["contacts"].add(f.key)
        elif f.source is Source.ATTRIBUTE:
            columns["contacts"].add("attributes")
        else:
            wanted = f.key if f.source is Source.SCORE else "details"
            columns.setdefault("scores", {"contact_id", "as_of"}).add(wanted)
    if any(isinstance(c, Consents) for c in walk(rule.condition)):
        columns["consents"] = {"contact_id", "channel", "purpose", "granted", "recorded_at"}
    return columns


def _to_arrow(names: list[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.table(
        {
            name: pa.array([None if v is None else str(v) for v in column])
            if name in ("attributes", "details", "as_of", "created_at", "recorded_at")
            else pa.array(column)
            for name, column in zip(names, columns, strict=True)
        }
    )


def bare_scan(home: Home, engine: Engine, *, in_engine: bool = False) -> float:
    """Read, once per segment, the state and facts columns its rule reads.

    The state columns go through the database driver into Arrow and DuckDB counts them; with
    `in_engine` the state store counts them itself, nothing leaving it (a lower bound)."""
    facts = home.settings.facts_path
    total = 0.0
    for segment in load_segments(home).values():
        rule = segment.rule
        start = time.perf_counter()
        con = duckdb.connect()
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for table, wanted in _state_columns(rule).items():
                names = sorted(wanted)
                listed = ", ".join(f"count({n})" for n in names)
                if in_engine:
                    cursor.execute(f"SELECT {listed} FROM {table}")
                    cursor.fetchall()
                    continue
                cursor.execute(f"SELECT {', '.join(names)} FROM {table}")
                con.register(table, _to_arrow(names, cursor.fetchall()))
                con.sql(f"SELECT {listed} FROM {table}").fetchall()
            cursor.close()
        finally:
            raw.close()
        for activity in rule.activities:
            kind = {"orders": ORDERS, "events": EVENTS, "messages": MESSAGE_EVENTS}[activity.source]
            wanted = {"customer_id", kind.time_column}
            wanted |= {"order_id", "status", "ingested_at"} if kind is ORDERS else {"type"}
            if activity.category:
                wanted.add("product_id")
            files = [str(p) for p in (facts / kind.name).rglob("*.parquet")]
            listed = ", ".join(f"count({n})" for n in sorted(wanted))
            con.sql(f"SELECT {listed} FROM read_parquet($f)", params={"f": files}).fetchall()
        con.close()
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    folder = scratch("segments")
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    env = {"REENGAGE_HOME": str(folder / "home")}
    if args.database_url:
        env["REENGAGE_DATABASE_URL"] = args.database_url
    settings = load_settings(env)
    home = init_home(settings).home
    engine = engine_for(settings.state_url)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    synthesise_state(engine, args.contacts, rng)
    counts = synthesise_facts(settings.facts_path, args.contacts, rng)
    compact(settings.facts_path)  # one file a day, as `reengage facts compact` leaves them
    built = time.perf_counter() - start
    for name, rule in RULES.items():
        create_segment(home, name, rule)

    clock = FixedClock(NOW)
    start = time.perf_counter()
    first = refresh_segments(home, engine, clock)
    first_s = time.perf_counter() - start
    clock.advance(timedelta(days=1))
    start = time.perf_counter()
    again = refresh_segments(home, engine, clock)
    next_s = time.perf_counter() - start
    bare = min(bare_scan(home, engine) for _ in range(2))
    bare_in_engine = min(bare_scan(home, engine, in_engine=True) for _ in range(2))
    engine.dispose()
    report(
        "segments",
        {
            "contacts": args.contacts,
            "database": engine.dialect.name,
            **counts,
            "segments": len(first),
            "members": sum(s.size for s in first),
            "moved_next_day": sum(s.entered + s.exited for s in again),
            "build_s": round(built, 1),
            "refresh_first_s": round(first_s, 2),
            "refresh_next_s": round(next_s, 2),
            "bare_scan_s": round(bare, 2),
            "ratio_first_over_bare": round(first_s / bare, 2),
            "ratio_next_over_bare": round(next_s / bare, 2),
            "bare_scan_in_engine_s": round(bare_in_engine, 2),
            "ratio_first_over_bare_in_engine": round(first_s / bare_in_engine, 2),
            "ratio_next_over_bare_in_engine": round(next_s / bare_in_engine, 2),
            "peak_rss_mib": round(peak_rss_mib()),
        },
    )


if __name__ == "__main__":
    main()
