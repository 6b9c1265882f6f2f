"""What the dashboard's overview, customers, segments and messages pages show, read from the
state (the latest scores `reengage score` wrote, segments, the outbox) and the facts (orders,
message events) — computed by the modules that own them, only counted here.

Charts are plain dicts `{"type", "labels", "datasets": [{"label", "data"}], ...}` that
static/dashboard.js hands to Chart.js.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import duckdb
from sqlalchemy import Connection, Engine, func, select

from reengage.analytics.lifecycle import STAGES
from reengage.analytics.rfm import SEGMENTS as RFM_SEGMENTS
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.journeys.entries import valid_orders
from reengage.state.schema import contacts, messages, scores, segment_transitions, segments

Chart = dict[str, Any]
ACTIVE = ("new", "reactivated", "repeat", "loyal")
HUMAN = "coalesce(json_extract_string(properties, '$.machine'), 'false') <> 'true'"


@contextmanager
def facts(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    con = reader.connect(settings.facts_path, threads=2)
    try:
        yield con
    finally:
        con.close()


def latest_as_of(conn: Connection) -> datetime | None:
    found = conn.execute(select(func.max(scores.c.as_of))).scalar_one_or_none()
    return None if found is None else as_utc(found)


def _latest() -> Any:
    """A WHERE clause for the latest scoring run's rows."""
    return scores.c.as_of == select(func.max(scores.c.as_of)).scalar_subquery()


# --- overview -------------------------------------------------------------------------------


def overview(settings: Settings, engine: Engine, now: datetime) -> dict[str, Any]:
    with engine.connect() as conn:
        contact_count = conn.execute(select(func.count()).select_from(contacts)).scalar_one()
        as_of = latest_as_of(conn)
        stages: dict[Any, Any] = dict(
            conn.execute(
                select(scores.c.lifecycle, func.count())
                .where(_latest())
                .group_by(scores.c.lifecycle)
            ).all()
        )
        buyers = conn.execute(
            select(func.count()).where(_latest(), scores.c.orders > 0)
        ).scalar_one()
        by_channel = conn.execute(
            select(messages.c.channel, func.count())
            .where(messages.c.status == "sent")
            .group_by(messages.c.channel)
        ).all()
    sent = {str(c): int(n) for c, n in by_channel}
    with facts(settings) as con:
        since = now - timedelta(days=90)
        orders = valid_orders(
            "ordered_at >= $since AND ordered_at <= $now",
            reader.between(settings.facts_path, "orders", since, now, con),
        )
        [(rev30, n30, rev90, n90)] = con.execute(
            f"""SELECT coalesce(sum(value) FILTER (WHERE ordered_at >= $d30), 0),
                       count(*) FILTER (WHERE ordered_at >= $d30),
                       coalesce(sum(value), 0), count(*)
                FROM ({orders})""",
            {"since": since, "now": now, "d30": now - timedelta(days=30)},
        ).fetchall()
        engaged = con.execute(
            f"""SELECT channel, type, count(DISTINCT message_id) FROM message_events
                WHERE type IN ('open', 'click') AND {HUMAN} GROUP BY ALL"""
        ).fetchall()
        start = now - timedelta(weeks=26)
        half_year = valid_orders(
            "ordered_at >= $since AND ordered_at <= $now",
            reader.between(settings.facts_path, "orders", start, now, con),
        )
        weekly = con.execute(
            f"""SELECT date_trunc('week', ordered_at)::DATE AS week, sum(value), count(*)
                FROM ({half_year}) GROUP BY week ORDER BY week""",
            {"since": start, "now": now},
        ).fetchall()
    opened = {str(c): int(n) for c, t, n in engaged if t == "open"}
    clicked = {str(c): int(n) for c, t, n in engaged if t == "click"}
    channels = sorted(set(sent) | set(opened) | set(clicked))
    stage = {str(k): int(v) for k, v in stages.items()}
    return {
        "as_of": as_of,
        "kpis": {
            "contacts": int(contact_count),
            "customers": int(buyers),
            "revenue_30d": float(rev30),
            "orders_30d": int(n30),
            "revenue_90d": float(rev90),
            "orders_90d": int(n90),
            "active": sum(stage.get(s, 0) for s in ACTIVE),
            "at_risk": stage.get("at_risk", 0),
            "inactive": stage.get("inactive", 0),
            "lost": stage.get("lost", 0),
            "sent": sum(sent.values()),
            "opened": sum(opened.values()),
            "clicked": sum(clicked.values()),
        },
        "revenue_chart": {
            "type": "bar",
            "labels": [w.isoformat() for w, _, _ in weekly],
            "datasets": [
                {
                    "label": f"revenue ({settings.currency})",
                    "data": [round(float(v), 2) for _, v, _ in weekly],
                }
            ],
        },
        "channel_chart": {
            "type": "bar",
            "labels": channels,
            "datasets": [
                {"label": "sent", "data": [sent.get(c, 0) for c in channels]},
                {"label": "opened", "data": [opened.get(c, 0) for c in channels]},
                {"label": "clicked", "data": [clicked.get(c, 0) for c in channels]},
            ],
        },
    }


# --- customers ------------------------------------------------------------------------------


def customers(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        as_of = latest_as_of(conn)
        cells = conn.execute(
            select(scores.c.r, scores.c.f, func.count())
            .where(_latest(), scores.c.r.is_not(None), scores.c.f.is_not(None))
            .group_by(scores.c.r, scores.c.f)
        ).all()
        stages: dict[Any, Any] = dict(
            conn.execute(
                select(scores.c.lifecycle, func.count())
                .where(_latest())
                .group_by(scores.c.lifecycle)
            ).all()
        )
        segment_rows = conn.execute(
            select(
                scores.c.rfm_segment,
                func.count(),
                func.avg(scores.c.recency_days),
                func.avg(scores.c.frequency),
                func.avg(scores.c.monetary),
                func.avg(scores.c.clv),
                func.avg(scores.c.p_alive),
            )
            .where(_latest(), scores.c.rfm_segment.is_not(None))
            .group_by(scores.c.rfm_segment)
        ).all()
    counts = {(int(r), int(f)): int(n) for r, f, n in cells}
    peak = max(counts.values(), default=0)
    grid = [
        {
            "r": r,
            "cells": [
                {
                    "f": f,
                    "n": counts.get((r, f), 0),
                    "heat": 0 if not peak else round(8 * counts.get((r, f), 0) / peak),
                }
                for f in range(1, 6)
            ],
        }
        for r in range(5, 0, -1)
    ]
    total = sum(int(n) for _, n, *_ in segment_rows) or 1
    order = {name: i for i, name in enumerate(RFM_SEGMENTS)}
    table = sorted(
        (
            {
                "segment": name,
                "n": int(n),
                "share": int(n) / total,
                "recency_days": rec,
                "frequency": freq,
                "monetary": mon,
                "clv": clv,
                "p_alive": alive,
            }
            for name, n, rec, freq, mon, clv, alive in segment_rows
        ),
        key=lambda row: (order.get(row["segment"], 99), -row["n"]),
    )
    stage = {str(k): int(v) for k, v in stages.items()}
    return {
        "as_of": as_of,
        "grid": grid,
        "scored": sum(counts.values()),
        "segments": table,
        "funnel_chart": {
            "type": "bar",
            "horizontal": True,
            "labels": [s.replace("_", " ") for s in STAGES],
            "datasets": [{"label": "contacts", "data": [stage.get(s, 0) for s in STAGES]}],
        },
    }


# --- segments -------------------------------------------------------------------------------


def segment_history(engine: Engine, now: datetime) -> dict[str, Any]:
    """Each segment's size at the end of every day a refresh changed one, rebuilt from its
    entries and exits; the current size from the last refresh."""
    with engine.connect() as conn:
        known = conn.execute(select(segments).order_by(segments.c.name)).all()
        moves = conn.execute(
            select(
                segment_transitions.c.segment,
                segment_transitions.c.kind,
                segment_transitions.c.at,
                func.count(),
            )
            .group_by(
                segment_transitions.c.segment, segment_transitions.c.kind, segment_transitions.c.at
            )
            .order_by(segment_transitions.c.at)
        ).all()
    days = sorted(
        {as_utc(at).date().isoformat() for _, _, at, _ in moves} | {now.date().isoformat()}
    )
    change: dict[str, dict[str, int]] = {}
    for name, kind, at, n in moves:
        day = as_utc(at).date().isoformat()
        per_day = change.setdefault(str(name), {})
        per_day[day] = per_day.get(day, 0) + (int(n) if kind == "enter" else -int(n))
    datasets = []
    for row in known:
        size, series = 0, []
        for day in days:
            size += change.get(row.name, {}).get(day, 0)
            series.append(size)
        # a size holds until the next refresh changes it: a step, not a slope
        datasets.append({"label": row.name, "data": series, "stepped": "before"})
    return {
        "segments": [
            {
                "name": r.name,
                "description": r.description,
                "size": r.size,
                "entered": r.entered,
                "exited": r.exited,
                "refreshed_at": as_utc(r.refreshed_at),
            }
            for r in known
        ],
        "sizes_chart": {"type": "line", "labels": days, "datasets": datasets},
    }


# --- the outbox -----------------------------------------------------------------------------


def outbox(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.channel, messages.c.status, func.count()).group_by(
                messages.c.channel, messages.c.status
            )
        ).all()
        by_style = conn.execute(
            select(messages.c.style, messages.c.language, func.count())
            .where(messages.c.status == "sent")
            .group_by(messages.c.style, messages.c.language)
        ).all()
        by_intent = conn.execute(
            select(messages.c.intent, messages.c.status, func.count()).group_by(
                messages.c.intent, messages.c.status
            )
        ).all()
    channels = sorted({str(c) for c, _, _ in rows})
    statuses = sorted({str(s) for _, s, _ in rows})
    counts = {(str(c), str(s)): int(n) for c, s, n in rows}
    languages = sorted({str(lang) for _, lang, _ in by_style})
    styles: dict[str, dict[str, int]] = {}
    for style, lang, n in by_style:
        styles.setdefault(str(style), {})[str(lang)] = int(n)
    intents: dict[str, dict[str, int]] = {}
    for intent, status, n in by_intent:
        intents.setdefault(str(intent), {})[str(status)] = int(n)
    return {
        "channels": channels,
        "statuses": statuses,
        "counts": counts,
        "languages": languages,
        "styles": dict(sorted(styles.items())),
        "intents": dict(sorted(intents.items())),
        "status_chart": {
            "type": "bar",
            "stacked": True,
            "labels": channels,
            "datasets": [
                {"label": s, "data": [counts.get((c, s), 0) for c in channels]} for s in statuses
            ],
        },
    }
