"""What reengage's messages did over a period, grouped by journey, step, channel, segment or
week: the counts a marketer reads first (sent, delivered, opened with machine opens apart,
clicked, converted, unsubscribed, complained), the rates, the revenue attributed
(`attribution`), what it cost (each message at its channel's price, plus the discounts of the
orders it won) and the return on it.

Attribution says which message each order followed, not what reengage caused: the
`holdouts` part compares each journey's and campaign's entrants with those held out at
random, over the same span, and gives the incremental revenue with its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.clock import as_utc
from reengage.config import Settings
from reengage.experiments.stats import ArmCounts, arm_stats, compare
from reengage.facts import reader
from reengage.journeys.entries import valid_orders
from reengage.measure.attribution import attribute
from reengage.measure.holdout import global_holdout
from reengage.measure.outcomes import after_entry
from reengage.state.contacts import chunks
from reengage.state.schema import (
    contacts,
    enrollments,
    messages,
    scores,
    segment_members,
    suppressions,
)

GROUPS = ("journey", "step", "channel", "segment", "week", "all")
INACTIVE = ("inactive", "lost")
COMPLAINT_DAYS = 7  # a complaint within a week of a message is held against that message


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400


def _ts(values: list[Any]) -> pa.Array:
    return pa.array(
        [as_utc(v) if v is not None else None for v in values], pa.timestamp("us", "UTC")
    )


def _sent(engine: Engine, period: Period, journey: str | None) -> pa.Table:
    """The messages that went out in the period, with the recipient's lifecycle then and the
    segments they are in."""
    m, c = messages, contacts
    query = (
        select(
            m.c.id,
            m.c.contact_id,
            c.c.customer_id,
            m.c.channel,
            m.c.journey,
            m.c.campaign,
            m.c.step,
            m.c.status,
            m.c.sent_at,
        )
        .join(c, c.c.id == m.c.contact_id)
        .where(
            m.c.status.in_(("sent", "failed")),
            m.c.sent_at.is_not(None),
            m.c.sent_at > period.since,
            m.c.sent_at <= period.until,
        )
    )
    if journey is not None:
        query = query.where((m.c.journey == journey) | (m.c.campaign == journey))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        ids = sorted({r.contact_id for r in rows})
        stages: dict[int, list[tuple[datetime, str, float | None]]] = {}
        member: dict[int, list[str]] = {}
        for part in chunks(ids):
            for score in conn.execute(
                select(scores.c.contact_id, scores.c.as_of, scores.c.lifecycle, scores.c.clv)
                .where(scores.c.contact_id.in_(part))
                .order_by(scores.c.as_of)
            ):
                stages.setdefault(score.contact_id, []).append(
                    (as_utc(score.as_of), score.lifecycle, score.clv)
                )
            for seg in conn.execute(
                select(segment_members.c.contact_id, segment_members.c.segment).where(
                    segment_members.c.contact_id.in_(part)
                )
            ):
                member.setdefault(seg.contact_id, []).append(seg.segment)

    def stage_at(contact: int, at: datetime) -> str | None:
        found = None
        for as_of, stage, _ in stages.get(contact, []):
            if as_of <= at:
                found = stage
        return found

    def clv(contact: int, at: datetime, *, after: bool) -> float | None:
        """The CLV of the latest scoring at or before `at`, or (after) of the latest one
        since."""
        found = None
        for as_of, _, value in stages.get(contact, []):
            if (as_of > at) == after:
                found = value
        return found

    return pa.table(
        {
            "message_id": pa.array([str(r.id) for r in rows], pa.string()),
            "contact_id": pa.array([r.contact_id for r in rows], pa.int64()),
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "channel": pa.array([r.channel for r in rows], pa.string()),
            "journey": pa.array([r.journey or r.campaign or "(direct)" for r in rows]),
            "step": pa.array(
                [f"{r.journey}/{r.step}" if r.journey else (r.campaign or "(direct)") for r in rows]
            ),
            "delivered": pa.array([r.status == "sent" for r in rows], pa.bool_()),
            "sent_at": _ts([r.sent_at for r in rows]),
            "stage": pa.array(
                [stage_at(r.contact_id, as_utc(r.sent_at)) for r in rows], pa.string()
            ),
            "segments": pa.array(
                [member.get(r.contact_id) or ["(none)"] for r in rows], pa.list_(pa.string())
            ),
            "clv_before": pa.array(
                [clv(r.contact_id, as_utc(r.sent_at), after=False) for r in rows], pa.float64()
            ),
            "clv_after": pa.array(
                [clv(r.contact_id, as_utc(r.sent_at), after=True) for r in rows], pa.float64()
            ),
        }
    )


def _complaints(engine: Engine, period: Period) -> pa.Table:
    with engine.connect() as conn:
        rows = conn.execute(
            select(suppressions.c.contact_id, suppressions.c.recorded_at).where(
                suppressions.c.reason == "complained",
                suppressions.c.contact_id.is_not(None),
                suppressions.c.recorded_at > period.since,
                suppressions.c.recorded_at <= period.until + timedelta(days=COMPLAINT_DAYS),
            )
        ).all()
    return pa.table(
        {
            "contact_id": pa.array([r.contact_id for r in rows], pa.int64()),
            "at": _ts([r.recorded_at for r in rows]),
        }
    )


def kpis(
    settings: Settings,
    engine: Engine,
    period: Period,
    *,
    by: str = "journey",
    journey: str | None = None,
) -> list[dict[str, Any]]:
    """One row per group (sorted by revenue, then sends), each with the counts, the rates,
    revenue, cost and ROI. The window after the period in which clicks and orders still
    count is the click attribution window."""
    if by not in GROUPS:
        raise ValueError(f"unknown grouping {by!r} (known: {', '.join(GROUPS)})")
    window = timedelta(days=settings.attribution_click_days)
    sent = _sent(engine, period, journey)
    if sent.num_rows == 0:
        return []
    root = settings.facts_path
    con = reader.connect(root)
    try:
        attributed = attribute(
            settings, engine, period.since, period.until + window, facts=con
        ).filter(pa.compute.is_valid(pa.compute.field("message_id")))
        con.register("__sent", sent)
        con.register("__attributed", attributed)
        con.register("__complaints", _complaints(engine, period))
        con.register(
            "__costs",
            pa.table(
                {
                    "channel": list(settings.message_costs),
                    "cost": [float(v) for v in settings.message_costs.values()],
                }
            ),
        )
        events = reader.between(root, "message_events", period.since, period.until + window, con)
        orders = reader.between(root, "orders", period.since, period.until + window, con)
        group = {
            "journey": "s.journey",
            "step": "s.step",
            "channel": "s.channel",
            "segment": "unnest(s.segments)",
            "week": "strftime(date_trunc('week', s.sent_at), '%G-W%V')",
            "all": "'all'",
        }[by]
        rows = con.sql(
            f"""
            WITH per_message AS (
              SELECT e.message_id,
                bool_or(e.type = 'open' AND NOT machine) AS opened,
                bool_or(e.type = 'open' AND machine) AS machine_opened,
                bool_or(e.type = 'click' AND NOT machine) AS clicked,
                bool_or(e.type = 'unsubscribe') AS unsubscribed
              FROM (SELECT *, coalesce(json_extract_string(properties, '$.machine'), 'false')
                              = 'true' AS machine FROM {events} AS x) AS e
              WHERE e.message_id IN (SELECT message_id FROM __sent)
              GROUP BY e.message_id),
            complained AS (
              SELECT arg_max(s.message_id, s.sent_at) AS message_id
              FROM __complaints AS c JOIN __sent AS s ON s.contact_id = c.contact_id
               AND s.sent_at <= c.at AND s.sent_at >= c.at - INTERVAL {COMPLAINT_DAYS} DAY
              GROUP BY c.contact_id, c.at),
            won AS (
              SELECT CAST(message_id AS VARCHAR) AS message_id, count(*) AS orders,
                     sum(value) AS revenue, sum(discount) AS discount
              FROM __attributed GROUP BY 1),
            buyers AS (
              SELECT DISTINCT s.message_id
              FROM __sent AS s JOIN ({valid_orders("true", orders)}) AS o
                ON o.customer_id = s.customer_id AND o.ordered_at > s.sent_at
               AND o.ordered_at <= s.sent_at + $window
              WHERE s.stage IN {INACTIVE}),
            enriched AS (
              SELECT s.*, coalesce(p.opened, false) AS opened,
                     coalesce(p.machine_opened, false) AS machine_opened,
                     coalesce(p.clicked, false) AS clicked,
                     coalesce(p.unsubscribed, false) AS unsubscribed,
                     s.message_id IN (SELECT message_id FROM complained) AS complained,
                     coalesce(w.orders, 0) AS orders, coalesce(w.revenue, 0) AS revenue,
                     coalesce(w.discount, 0) AS discount,
                     s.stage IN {INACTIVE} AS inactive,
                     s.message_id IN (SELECT message_id FROM buyers) AS reactivated,
                     coalesce(k.cost, 0) AS cost
              FROM __sent AS s
                LEFT JOIN per_message AS p USING (message_id)
                LEFT JOIN won AS w USING (message_id)
                LEFT JOIN __costs AS k USING (channel))
            SELECT {group.replace("s.", "")} AS grp,
                   count(*) AS sent, count(*) FILTER (delivered) AS delivered,
                   count(*) FILTER (opened) AS opened,
                   count(*) FILTER (machine_opened AND NOT opened) AS machine_opened,
                   count(*) FILTER (clicked) AS clicked,
                   count(*) FILTER (orders > 0) AS converted,
                   sum(orders) AS orders,
                   count(*) FILTER (unsubscribed) AS unsubscribed,
                   count(*) FILTER (complained) AS complained,
                   count(*) FILTER (inactive) AS inactive_recipients,
                   count(*) FILTER (reactivated) AS reactivated,
                   sum(revenue) AS revenue, sum(discount) AS discounts,
                   sum(cost) AS message_cost,
                   avg(clv_before) FILTER (clv_after IS NOT NULL) AS clv_before,
                   avg(clv_after) FILTER (clv_before IS NOT NULL) AS clv_after
            FROM enriched AS s GROUP BY grp
            """,
            params={"window": window},
        ).fetchall()
        names = [
            "group", "sent", "delivered", "opened", "machine_opened", "clicked", "converted",
            "orders", "unsubscribed", "complained", "inactive_recipients", "reactivated",
            "revenue", "discounts", "message_cost", "clv_before", "clv_after",
        ]  # fmt: skip
    finally:
        con.close()
    found = [_rates(dict(zip(names, r, strict=True))) for r in rows]
    found.sort(key=lambda r: (-r["revenue"], -r["sent"], str(r["group"])))
    return found


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    cost = float(row["message_cost"] or 0) + float(row["discounts"] or 0)
    for key in ("clv_before", "clv_after"):
        row[key] = None if row[key] is None else round(float(row[key]), 2)
    revenue = float(row["revenue"] or 0)
    for key in ("revenue", "discounts", "message_cost"):
        row[key] = round(float(row[key] or 0), 2)
    counts = (k for k, v in row.items() if k != "group" and not isinstance(v, float | None))
    for key in counts:
        row[key] = int(row[key] or 0)
    delivered = row["delivered"]
    row["open_rate"] = _ratio(row["opened"], delivered)
    row["click_rate"] = _ratio(row["clicked"], delivered)
    row["conversion_rate"] = _ratio(row["converted"], delivered)
    row["reactivation_rate"] = _ratio(row["reactivated"], row["inactive_recipients"])
    row["unsubscribes_per_1000"] = (
        round(1000 * row["unsubscribed"] / delivered, 2) if delivered else None
    )
    row["complaints_per_1000"] = (
        round(1000 * row["complained"] / delivered, 2) if delivered else None
    )
    row["average_order_value"] = round(row["revenue"] / row["orders"], 2) if row["orders"] else None
    row["cost"] = round(cost, 2)
    row["roi"] = _ratio(revenue - cost, cost)
    return row


def holdouts(
    settings: Settings, engine: Engine, period: Period, *, journey: str | None = None
) -> list[dict[str, Any]]:
    """Per journey with a holdout, its entrants in the period against those held out: each
    person's valid orders from entry to the click window after it, conversion and revenue
    per person with 95% intervals, the difference, p-value and incremental revenue."""
    window = timedelta(days=settings.attribution_click_days)
    e, c = enrollments, contacts
    query = (
        select(e.c.journey, e.c.status, e.c.entered_at, c.c.customer_id)
        .join(c, c.c.id == e.c.contact_id)
        .where(e.c.entered_at > period.since, e.c.entered_at <= period.until)
    )
    if journey is not None:
        query = query.where(e.c.journey == journey)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    held = {r.journey for r in rows if r.status == "held_out"}
    entrants = [
        (r.journey, "holdout" if r.status == "held_out" else "treated", r.customer_id, r.entered_at)
        for r in rows
        if r.journey in held
    ]
    arms: dict[str, dict[bool, ArmCounts]] = {}
    for (name, arm), counts in after_entry(settings, entrants, window).items():
        arms.setdefault(name, {})[arm == "holdout"] = counts
    found = []
    for name in sorted(arms):
        pair = arms[name]
        if True not in pair or False not in pair:
            continue
        treated, holdout = pair[False], pair[True]
        comparison = compare(holdout, treated)
        revenue = comparison.revenue
        found.append(
            {
                "journey": name,
                "treated": arm_stats(treated).as_dict(),
                "holdout": arm_stats(holdout).as_dict(),
                "lift": comparison.as_dict(),
                "rpr_diff": round(revenue.diff, 4),
                "rpr_diff_p_value": revenue.p_value,
                "incremental_revenue": round(revenue.diff * treated.n, 2),
                "incremental_revenue_ci": (
                    [round(revenue.ci.low * treated.n, 2), round(revenue.ci.high * treated.n, 2)]
                    if revenue.ci is not None
                    else None
                ),
            }
        )
    return found


def global_lift(settings: Settings, engine: Engine, period: Period) -> dict[str, Any] | None:
    """Every customer outside the global holdout against every one inside it: their valid
    orders in the period, conversion and revenue per person with 95% intervals, and the
    incremental revenue of reengage as a whole. None without a global holdout."""
    if settings.global_holdout <= 0:
        return None
    with engine.connect() as conn:
        rows = conn.execute(
            # everyone known now: the draw is random, so people who only arrived later add
            # the same zeros to both sides
            select(contacts.c.id, contacts.c.customer_id).where(contacts.c.customer_id.is_not(None))
        ).all()
    if not rows:
        return None
    held = global_holdout([r.id for r in rows], settings.global_holdout)
    people = pa.table(
        {
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "held_out": pa.array(held, pa.bool_()),
        }
    )
    con = reader.connect(settings.facts_path)
    try:
        orders = reader.between(settings.facts_path, "orders", period.since, period.until, con)
        con.register("__people", people)
        spent = con.sql(
            f"""SELECT held_out, count(*), count(*) FILTER (v > 0), sum(v), sum(v * v)
                FROM (SELECT p.customer_id, any_value(p.held_out) AS held_out,
                             coalesce(sum(o.value), 0) AS v
                      FROM __people AS p LEFT JOIN
                        ({valid_orders("ordered_at > $low AND ordered_at <= $high", orders)}) AS o
                        ON o.customer_id = p.customer_id
                      GROUP BY p.customer_id) AS x
                GROUP BY held_out""",
            params={"low": period.since, "high": period.until},
        ).fetchall()
    finally:
        con.close()
    arms = {
        bool(h): ArmCounts(
            "global holdout" if h else "everyone else", int(n), int(c), float(r), float(sq)
        )
        for h, n, c, r, sq in spent
    }
    if True not in arms or False not in arms:
        return None
    treated, holdout = arms[False], arms[True]
    comparison = compare(holdout, treated)
    revenue = comparison.revenue
    return {
        "share": settings.global_holdout,
        "treated": arm_stats(treated).as_dict(),
        "holdout": arm_stats(holdout).as_dict(),
        "lift": comparison.as_dict(),
        "incremental_revenue": round(revenue.diff * treated.n, 2),
        "incremental_revenue_ci": (
            [round(revenue.ci.low * treated.n, 2), round(revenue.ci.high * treated.n, 2)]
            if revenue.ci is not None
            else None
        ),
    }
