"""The reports page: what `reengage report` prints, for a period the form chooses. The KPIs of
the messages sent (`measure.kpis.kpis`, grouped by journey, step, channel, segment, week or
all), revenue and cost per group as a chart; each journey's holdout and the global holdout
(`holdouts`, `global_lift`) and each journey split (`measure.splits`), with their 95%
intervals drawn as interval bars.

The interval bars are SVG whose geometry is computed here (`forest`): presentation attributes
only, no inline style, so the dashboard's CSP holds. Nothing here writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, select, union
from starlette.requests import Request
from starlette.responses import Response

from reengage.config import Settings
from reengage.measure.kpis import GROUPS, Period, global_lift, holdouts, kpis
from reengage.measure.splits import splits
from reengage.state.schema import enrollments, messages
from reengage.web.app import web_context
from reengage.web.dashboard.auth import login_required
from reengage.web.dashboard.templating import page

DAYS = 30  # the default period: the last 30 days to now, as `reengage report`

# the interval bars' drawing, in SVG user units (the figure scales to its box)
WIDTH = 520
PLOT_LEFT = 118
PLOT_RIGHT = 318
VALUE_X = 330
ROW = 24
TOP = 6
AXIS = 20


class Asked(ValueError):
    """A form value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Choice:
    period: Period
    since: date  # as the form shows them
    until: date
    by: str
    journey: str | None


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Asked(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None


def choose(params: Mapping[str, str], now: datetime) -> Choice:
    """The period, grouping and journey the form asks for. Without dates, the last 30 days to
    now (as `reengage report`); a date given is a whole UTC day: from the start of `since` to
    the end of `until`, never past now."""
    by = params.get("by") or "journey"
    if by not in GROUPS:
        raise Asked(f"group by: {by!r} is not one of {', '.join(GROUPS)}")
    since_text, until_text = params.get("since", ""), params.get("until", "")
    end = now
    if until_text.strip():
        last = _day(until_text, "until")
        end = min(now, datetime.combine(last + timedelta(days=1), time(), UTC))
    start = end - timedelta(days=DAYS)
    if since_text.strip():
        start = datetime.combine(_day(since_text, "since"), time(), UTC)
    if start >= end:
        raise Asked("since must be before until (and before now)")
    # the last instant of the period is in the day the form shows as `until`
    shown_until = (end - timedelta(microseconds=1)).date()
    return Choice(Period(start, end), start.date(), shown_until, by, params.get("journey") or None)


def known_journeys(engine: Engine) -> list[str]:
    """Every journey and campaign that sent a message or enrolled someone: the filter's
    choices."""
    m, e = messages, enrollments
    query = union(
        select(m.c.journey.label("name")).where(m.c.journey.is_not(None)),
        select(m.c.campaign.label("name")).where(m.c.campaign.is_not(None)),
        select(e.c.journey.label("name")),
    )
    with engine.connect() as conn:
        return sorted({str(name) for (name,) in conn.execute(query) if name})


# --- interval bars --------------------------------------------------------------------------


def _nice_step(span: float) -> float:
    raw = span / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _fmt(value: float, kind: str) -> str:
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pp":
        return f"{100 * value:+.1f} pp"
    if kind == "diff":
        return f"{value:+,.2f}"
    return f"{value:,.2f}"


def _tick(value: float, kind: str) -> str:
    if kind in ("pct", "pp"):
        return f"{100 * value:.4g}{'%' if kind == 'pct' else ''}"
    return f"{value:,.6g}"


Row = tuple[str, float, float | None, float | None, bool]  # label, estimate, low, high, marked


def forest(title: str, rows: Sequence[Row], kind: str) -> dict[str, Any]:
    """Estimates as dots and their intervals as bands on one axis that holds zero: an SVG
    figure's geometry. `kind`: pct (a rate), pp (a difference of rates), money, diff (a
    difference of money)."""
    values = [0.0]
    for _, estimate, low, high, _ in rows:
        values += [v for v in (estimate, low, high) if v is not None and math.isfinite(v)]
    low_end, high_end = min(values), max(values)
    if high_end - low_end < 1e-9:
        high_end = low_end + (0.01 if kind in ("pct", "pp") else 1.0)
    step = _nice_step(high_end - low_end)
    low_end = math.floor(low_end / step + 1e-9) * step
    high_end = math.ceil(high_end / step - 1e-9) * step

    def x(value: float) -> float:
        share = (value - low_end) / (high_end - low_end)
        return round(PLOT_LEFT + share * (PLOT_RIGHT - PLOT_LEFT), 1)

    count = round((high_end - low_end) / step)
    ticks = [low_end + i * step for i in range(count + 1)]
    bottom = TOP + ROW * len(rows)
    drawn = []
    for i, (label, estimate, low, high, marked) in enumerate(rows):
        text = _fmt(estimate, kind)
        x1, width = None, 0.0
        if low is not None and high is not None:
            text += f" [{_fmt(low, kind)}, {_fmt(high, kind)}]"
            x1, width = x(low), round(x(high) - x(low), 1)
            if width < 1:  # a zero-width interval still shows, as a sliver
                x1, width = x1 - 0.5, 1.0
        drawn.append(
            {
                "label": label if len(label) <= 18 else label[:17] + "…",
                "full_label": label,
                "y": TOP + ROW * i + ROW // 2,
                "x": x(estimate),
                "x1": x1,
                "width": width,
                "text": text,
                "marked": marked,
            }
        )
    return {
        "title": title,
        "width": WIDTH,
        "height": bottom + AXIS,
        "left": PLOT_LEFT,
        "right": PLOT_RIGHT,
        "value_x": VALUE_X,
        "bottom": bottom,
        "zero": x(0.0) if low_end < 0 else None,
        "ticks": [{"x": x(t), "text": _tick(t, kind)} for t in ticks],
        "rows": drawn,
    }


def _arm_rows(arms: Sequence[tuple[str, Mapping[str, Any]]], rate: bool) -> list[Row]:
    found: list[Row] = []
    for name, arm in arms:  # how many people: in the table beside the figure
        if rate:
            found.append((name, arm["conversion_rate"], arm["ci_low"], arm["ci_high"], False))
        else:
            found.append(
                (
                    name,
                    arm["revenue_per_recipient"],
                    arm["rpr_ci_low"],
                    arm["rpr_ci_high"],
                    False,
                )
            )
    return found


def holdout_figures(found: Mapping[str, Any], treated: str, held: str) -> list[dict[str, Any]]:
    """A holdout's figures: conversion and revenue per person of both arms, the lift in
    conversion and the incremental revenue, each with its 95% interval."""
    arms = [(treated, found["treated"]), (held, found["holdout"])]
    lift = found["lift"]
    figures = [
        forest("Conversion rate", _arm_rows(arms, rate=True), "pct"),
        forest("Revenue per person", _arm_rows(arms, rate=False), "money"),
        forest(
            "Lift in conversion rate",
            [
                (
                    "difference",
                    lift["lift_abs"],
                    lift["lift_abs_ci_low"],
                    lift["lift_abs_ci_high"],
                    bool(lift["significant"]),
                )
            ],
            "pp",
        ),
    ]
    ci = found.get("incremental_revenue_ci")
    low, high = (ci[0], ci[1]) if ci else (None, None)
    significant = low is not None and high is not None and (low > 0 or high < 0)
    figures.append(
        forest(
            "Incremental revenue",
            [("caused", found["incremental_revenue"], low, high, significant)],
            "diff",
        )
    )
    return figures


def split_figures(test: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A split's figures: every variant's conversion and revenue per recipient, and every
    other variant's lift in conversion against the control, with their 95% intervals."""
    variants = test["variants"]
    arms = [(str(v["variant"]), v) for v in variants]
    lifts: list[Row] = [
        (
            f"{v['variant']} − {test['control']}",
            v["lift_abs"],
            v["lift_abs_ci_low"],
            v["lift_abs_ci_high"],
            bool(v["significant"]),
        )
        for v in variants
        if "lift_abs" in v
    ]
    figures = [
        forest("Conversion rate", _arm_rows(arms, rate=True), "pct"),
        forest("Revenue per recipient", _arm_rows(arms, rate=False), "money"),
    ]
    if lifts:
        figures.append(forest("Lift in conversion rate against the control", lifts, "pp"))
    return figures


# --- the page -------------------------------------------------------------------------------


def report(settings: Settings, engine: Engine, choice: Choice) -> dict[str, Any]:
    """The KPI rows and their chart, the holdouts and the splits, as `reengage report`."""
    period, journey = choice.period, choice.journey
    rows = kpis(settings, engine, period, by=choice.by, journey=journey)
    lifts = holdouts(settings, engine, period, journey=journey)
    overall = global_lift(settings, engine, period) if journey is None else None
    tests = splits(settings, engine, period, journey=journey)
    currency = settings.currency
    return {
        "rows": rows,
        "money_chart": {
            "type": "bar",
            "labels": [str(r["group"]) for r in rows],
            "datasets": [
                {"label": f"revenue attributed ({currency})", "data": [r["revenue"] for r in rows]},
                {"label": f"cost ({currency})", "data": [r["cost"] for r in rows]},
            ],
        },
        "holdouts": [{**h, "figures": holdout_figures(h, "received", "held out")} for h in lifts],
        "global_holdout": (
            None
            if overall is None
            else {
                **overall,
                "figures": holdout_figures(overall, "everyone else", "global holdout"),
            }
        ),
        "experiments": [{**t, "figures": split_figures(t)} for t in tests],
        "currency": currency,
    }


@login_required
def reports_page(request: Request) -> Response:
    context = web_context(request)
    now = context.clock.now()
    params = request.query_params
    values: dict[str, Any] = {
        "groups": GROUPS,
        "journeys": known_journeys(context.engine),
        "by": params.get("by") or "journey",
        "journey": params.get("journey") or "",
        "since": params.get("since", ""),
        "until": params.get("until", ""),
    }
    try:
        choice = choose(params, now)
    except Asked as exc:
        return page(request, "reports.html", "reports", status_code=400, error=str(exc), **values)
    values.update(
        since=choice.since.isoformat(),
        until=choice.until.isoformat(),
        period=choice.period,
        report=report(context.settings, context.engine, choice),
    )
    return page(request, "reports.html", "reports", **values)
