"""`reengage score`: every contact's features, RFM, lifecycle, churn and value, and style,
computed from the facts as of a date and stored in state with that date (history kept)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import ibis
import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.analytics.features import Purchases, customer_features, purchase_gaps, purchases
from reengage.analytics.lifecycle import Thresholds, learn_thresholds, lifecycle_stages
from reengage.analytics.models import fit_purchases, predictions
from reengage.analytics.rfm import rfm_scores
from reengage.analytics.styles import infer_styles, style_signals
from reengage.clock import Clock, as_utc
from reengage.config import Home
from reengage.errors import InputError
from reengage.facts import reader
from reengage.state.contacts import chunks
from reengage.state.db import bulk_insert
from reengage.state.schema import contacts, products, scores

Progress = Callable[[str, int, int], None]

COLUMNS = tuple(c.name for c in scores.columns if c.name not in ("id", "contact_id", "details"))


@dataclass
class ScoreSummary:
    as_of: str
    contacts: int
    buyers: int
    threshold_days: float
    lifecycle: dict[str, int]
    rfm_segments: dict[str, int]


def catalogue(engine: Engine) -> pa.Table:
    """product_id, category, price and created_at of every product in state."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                products.c.product_id, products.c.category, products.c.price, products.c.created_at
            )
        ).all()
    return pa.table(
        {
            "product_id": pa.array([r.product_id for r in rows], pa.string()),
            "category": pa.array([r.category for r in rows], pa.string()),
            "price": pa.array(
                [None if r.price is None else float(r.price) for r in rows], pa.float64()
            ),
            "created_at": pa.array(
                [as_utc(r.created_at) if r.created_at else None for r in rows],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def compute(home: Home, engine: Engine, as_of: datetime) -> pa.Table:
    """One row per customer: every feature and score (not yet stored)."""
    settings = home.settings
    con = reader.connect(settings.facts_path)
    try:
        facts = ibis.duckdb.from_connection(con)
        orders, events = facts.table("orders"), facts.table("events")
        known_products = ibis.memtable(catalogue(engine))
        # the order lines are read once: every order-based part below reads these tables
        bought = purchases(orders, as_of, cache=True)
        seen = customer_features(orders, events, known_products, as_of, bought=bought).to_pyarrow()
        features = _with_every_contact(engine, seen)
        thresholds = learn_thresholds(
            purchase_gaps(bought),
            fixed_days=settings.inactivity_days,
            by_category=settings.inactivity_days_by_category,
        )
        known = ibis.memtable(features)
        rfm = rfm_scores(known).to_pyarrow()
        stages = lifecycle_stages(known, thresholds).to_pyarrow()
        btyd = _btyd(bought)
        styles = infer_styles(
            style_signals(orders, events, as_of, known_products).to_pyarrow(),
            overrides=_crm_styles(engine),
        ).rename_columns({"confidence": "style_confidence"})
    finally:
        con.close()
    joined = duckdb.connect()
    try:
        joined.register("f", features)
        joined.register("r", rfm)
        joined.register("l", stages)
        joined.register("b", btyd)
        joined.register("s", styles)
        return joined.sql(
            """SELECT * REPLACE (coalesce(s.style, 'unknown') AS style)
               FROM f LEFT JOIN r USING (customer_id) LEFT JOIN l USING (customer_id)
               LEFT JOIN b USING (customer_id) LEFT JOIN s USING (customer_id)"""
        ).to_arrow_table()
    finally:
        joined.close()


def _crm_styles(engine: Engine) -> dict[str, str]:
    """Styles a CRM set on contacts (attributes.style): they win over behaviour."""
    with engine.connect() as conn:
        rows = conn.execute(select(contacts.c.customer_id, contacts.c.attributes)).all()
    return {
        r.customer_id: r.attributes["style"]
        for r in rows
        if r.customer_id and isinstance(r.attributes, dict) and r.attributes.get("style")
    }


def _btyd(bought: Purchases) -> pa.Table:
    """The models' predictions per buyer; none (and no failure) when the shop is too small
    or too young for the models to be fitted."""
    try:
        return predictions(fit_purchases(bought), bought.as_of)
    except InputError:
        return pa.table(
            {
                "customer_id": pa.array([], pa.string()),
                "p_alive": pa.array([], pa.float64()),
                "expected_purchases_90d": pa.array([], pa.float64()),
                "expected_next_order_at": pa.array([], pa.timestamp("us", tz="UTC")),
                "expected_order_value": pa.array([], pa.float64()),
                "clv": pa.array([], pa.float64()),
            }
        )


def _with_every_contact(engine: Engine, seen: pa.Table) -> pa.Table:
    """The features of every contact: those the facts never mention are prospects."""
    with engine.connect() as conn:
        ids = conn.execute(
            select(contacts.c.customer_id).where(contacts.c.customer_id.is_not(None))
        ).scalars()
        people = pa.table({"customer_id": pa.array(list(ids), pa.string())})
    con = duckdb.connect()
    try:
        con.register("people", people)
        con.register("seen", seen)
        return con.sql(
            """SELECT seen.* REPLACE (
                   coalesce(people.customer_id, seen.customer_id) AS customer_id,
                   coalesce(seen.orders, 0) AS orders,
                   coalesce(seen.total_spent, 0.0) AS total_spent,
                   coalesce(seen.sessions, 0) AS sessions)
               FROM people FULL JOIN seen USING (customer_id)"""
        ).to_arrow_table()
    finally:
        con.close()


def _plain(value: Any) -> Any:
    """JSON- and SQL-safe: NaN and infinities (0/0, an undefined mean) become missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _row(record: dict[str, Any], contact_id: int, as_of: datetime, now: datetime) -> dict:
    record = {k: _plain(v) for k, v in record.items()}
    row: dict[str, Any] = {c: record.get(c) for c in COLUMNS}
    row.update(contact_id=contact_id, as_of=as_of, computed_at=now)
    row["orders"] = record.get("orders") or 0
    row["total_spent"] = record.get("total_spent") or 0.0
    row["details"] = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in record.items()
        if k not in COLUMNS and k != "customer_id"
    }
    return row


def score(
    home: Home,
    engine: Engine,
    *,
    as_of: datetime,
    clock: Clock,
    progress: Progress | None = None,
) -> ScoreSummary:
    """Compute and store the scores of every contact seen in the facts before as_of.

    Scoring the same date again replaces that date's rows; other dates are kept.
    """
    table = compute(home, engine, as_of)
    records = table.to_pylist()
    now = clock.now()
    with engine.begin() as conn:
        ids: dict[str, int] = {}
        wanted = [r["customer_id"] for r in records]
        for part in chunks(wanted):
            got = conn.execute(
                select(contacts.c.customer_id, contacts.c.id).where(
                    contacts.c.customer_id.in_(part)
                )
            )
            ids.update({r.customer_id: r.id for r in got})
        conn.execute(scores.delete().where(scores.c.as_of == as_of))
        rows = [
            _row(r, ids[r["customer_id"]], as_of, now) for r in records if r["customer_id"] in ids
        ]
        done = 0
        for part in chunks(rows, 20_000):
            bulk_insert(conn, scores, list(part))
            done += len(part)
            if progress:
                progress("storing scores", done, len(rows))
    lifecycle: dict[str, int] = {}
    segments: dict[str, int] = {}
    for r in records:
        lifecycle[r["lifecycle"]] = lifecycle.get(r["lifecycle"], 0) + 1
        if r.get("rfm_segment"):
            segments[r["rfm_segment"]] = segments.get(r["rfm_segment"], 0) + 1
    threshold = records[0]["threshold_days"] if records else Thresholds().default_days
    return ScoreSummary(
        as_of=as_of.isoformat(),
        contacts=len(rows),
        buyers=sum(1 for r in records if (r.get("orders") or 0) > 0),
        threshold_days=float(threshold),
        lifecycle=dict(sorted(lifecycle.items())),
        rfm_segments=dict(sorted(segments.items())),
    )
