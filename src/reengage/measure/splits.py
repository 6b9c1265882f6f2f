"""The A/B/n splits of journeys as experiments: each contact is drawn into one variant of a
`split` step by a hash of the journey, the step and the contact (`Journey.choose`), so the
variants are comparable groups. Per variant: entrants, converters, conversion rate and
revenue per entrant with 95% intervals, and every variant against the first one written (the
control): absolute and relative lift with intervals and p-values (`experiments.stats`).

Outcomes count each entrant's valid orders from entry to the click window after it, so a
variant that makes people buy later, not more, is not credited twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from reengage.config import Settings
from reengage.errors import ReengageError
from reengage.experiments.stats import analyze
from reengage.measure.kpis import Period
from reengage.measure.outcomes import Entrant, after_entry
from reengage.state.schema import contacts, enrollments


def splits(
    settings: Settings, engine: Engine, period: Period, *, journey: str | None = None
) -> list[dict[str, Any]]:
    """One experiment per (journey, split step) entered in the period: its variants' rows
    as `reengage experiments analyze --json` prints them, the control first."""
    e, c = enrollments, contacts
    query = (
        select(e.c.journey, e.c.variants, e.c.entered_at, c.c.customer_id)
        .join(c, c.c.id == e.c.contact_id)
        .where(e.c.entered_at > period.since, e.c.entered_at <= period.until, e.c.variants != "")
    )
    if journey is not None:
        query = query.where(e.c.journey == journey)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    entrants: list[Entrant] = []
    order: dict[str, list[str]] = {}  # variants of each experiment as first seen
    for r in rows:
        for drawn in r.variants.split(";"):
            step, _, variant = drawn.partition("=")
            key = f"{r.journey}/{step}"
            entrants.append((key, variant, r.customer_id, r.entered_at))
            seen = order.setdefault(key, [])
            if variant not in seen:
                seen.append(variant)
    window = timedelta(days=settings.attribution_click_days)
    counts = after_entry(settings, entrants, window)
    found = []
    for key in sorted(order):
        arms = sorted((a for (k, _), a in counts.items() if k == key), key=lambda a: a.name)
        if len(arms) < 2:
            continue
        control = _control(settings, engine, key, [a.name for a in arms])
        result = analyze(arms, control=control)
        journey_name, _, step = key.partition("/")
        found.append(
            {
                "journey": journey_name,
                "split": step,
                "control": result.control,
                "variants": result.rows(),
            }
        )
    return found


def _control(settings: Settings, engine: Engine, key: str, names: list[str]) -> str:
    """The variant written first in the journey's split step, when it can be read."""
    from reengage.config import open_home
    from reengage.journeys import find_journey
    from reengage.journeys.steps import Split

    journey_name, _, step_id = key.partition("/")
    try:
        entry = find_journey(open_home(settings), journey_name)
        parsed = entry.journey
    except ReengageError:  # a journey removed or broken since: the first name
        parsed = None
    if parsed is not None and parsed.has(step_id):
        step = parsed.step(step_id)
        if isinstance(step, Split):
            for variant in step.variants:
                if variant.name in names:
                    return variant.name
    return names[0]
