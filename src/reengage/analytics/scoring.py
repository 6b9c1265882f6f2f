"""`reengage score`: every contact's features, RFM, lifecycle, churn and value, and style,
computed from the facts as of a date and stored in state with that date (history kept)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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
from reengage.state.db import SQLITE_INSTANT, arrow_values, bulk_insert_columns
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
    spill = settings.home / "tmp"
    spill.mkdir(exist_ok=True)
    con.execute(f"SET memory_limit = '{settings.scoring_memory_mb}MB'")
    con.execute("SET temp_directory = $folder", {"folder": str(spill)})
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
        btyd = _btyd(bought, seen)
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
    # the database reads the field: a million contacts' attributes parsed in Python cost
    # seconds, for the few that carry a style
    style = contacts.c.attributes["style"].as_string()
    with engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.customer_id, style).where(
                contacts.c.customer_id.is_not(None), style.is_not(None), style != ""
            )
        ).all()
    return {customer_id: value for customer_id, value in rows}


def _btyd(bought: Purchases, features: pa.Table) -> pa.Table:
    """The models' predictions per buyer; none (and no failure) when the shop is too small
    or too young for the models to be fitted."""
    try:
        return predictions(fit_purchases(bought, features=features), bought.as_of)
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


def _stored_rows(
    table: pa.Table, ids: pa.Table, as_of: datetime, now: datetime, *, sqlite: bool = False
) -> pa.Table:
    """The scores rows of table, built by the engine: contact ids attached, NaN and infinities
    (0/0, an undefined mean) made missing, every other feature serialised into `details`.
    For SQLite the instants are already the text it stores: the engine writes a million
    in a blink, Python's strftime takes seconds."""
    con = duckdb.connect()
    try:
        con.sql("SET TimeZone = 'UTC'")
        con.register("t", table)
        con.register("ids", ids)

        def clean(name: str) -> str:
            kind = table.schema.field(name).type
            quoted = f'"{name}"'
            if pa.types.is_floating(kind):
                return f"CASE WHEN isfinite({quoted}) THEN {quoted} END"
            if pa.types.is_timestamp(kind):
                return f"strftime({quoted}, '%Y-%m-%dT%H:%M:%S.%f+00:00')"
            return quoted

        def quote(name: str) -> str:
            return f'"{name}"'

        def instant(value: str) -> str:
            return f"strftime({value}, '{SQLITE_INSTANT}')" if sqlite else value

        present = set(table.column_names)
        columns = []
        for name in COLUMNS:
            if name in ("as_of", "computed_at"):
                continue
            if name not in present:
                columns.append(f'NULL AS "{name}"')
            elif name in ("orders", "total_spent"):
                columns.append(f'coalesce({clean(name)}, 0) AS "{name}"')
            elif pa.types.is_timestamp(table.schema.field(name).type):
                columns.append(f"{instant(quote(name))} AS {quote(name)}")
            else:
                columns.append(f'{clean(name)} AS "{name}"')
        extra = [n for n in table.column_names if n not in COLUMNS and n != "customer_id"]
        details = (
            "to_json(struct_pack(" + ", ".join(f'"{n}" := {clean(n)}' for n in extra) + "))"
            if extra
            else "'{}'"
        )
        return con.sql(
            f"""SELECT ids.contact_id, {instant("$as_of::TIMESTAMPTZ")} AS as_of,
                       {instant("$now::TIMESTAMPTZ")} AS computed_at,
                       {", ".join(columns)}, {details}::VARCHAR AS details
                FROM t JOIN ids USING (customer_id)""",
            params={"as_of": as_of, "now": now},
        ).to_arrow_table()
    finally:
        con.close()


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
    now = clock.now()
    with engine.begin() as conn:
        got = conn.execute(
            select(contacts.c.customer_id, contacts.c.id).where(contacts.c.customer_id.is_not(None))
        ).all()
        ids = pa.table(
            {
                "customer_id": pa.array([r.customer_id for r in got], pa.string()),
                "contact_id": pa.array([r.id for r in got], pa.int64()),
            }
        )
        rows = _stored_rows(table, ids, as_of, now, sqlite=conn.dialect.name == "sqlite")
        conn.execute(scores.delete().where(scores.c.as_of == as_of))
        done = 0
        for batch in rows.to_batches(max_chunksize=50_000):
            # instants are SQLite's text already there, aware UTC datetimes elsewhere
            data = {name: arrow_values(batch.column(name)) for name in batch.schema.names}
            bulk_insert_columns(conn, scores, data)
            done += batch.num_rows
            if progress:
                progress("storing scores", done, rows.num_rows)
    counts = duckdb.connect()
    try:
        counts.register("t", table)
        lifecycle = dict(counts.sql("SELECT lifecycle, count(*) FROM t GROUP BY 1").fetchall())
        segments = dict(
            counts.sql(
                "SELECT rfm_segment, count(*) FROM t WHERE rfm_segment IS NOT NULL GROUP BY 1"
            ).fetchall()
        )
        buyers = counts.sql("SELECT count(*) FROM t WHERE coalesce(orders, 0) > 0").fetchall()
    finally:
        counts.close()
    threshold = (
        table.column("threshold_days")[0].as_py() if table.num_rows else Thresholds().default_days
    )
    return ScoreSummary(
        as_of=as_of.isoformat(),
        contacts=rows.num_rows,
        buyers=int(buyers[0][0]),
        threshold_days=float(threshold),
        lifecycle=dict(sorted(lifecycle.items())),
        rfm_segments=dict(sorted(segments.items())),
    )
