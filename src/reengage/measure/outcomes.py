"""What people did after they entered something (a journey, a split's variant, a holdout):
each person's valid orders from their entry to the click window after it, summed per arm into
the four numbers `experiments.stats` works from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pyarrow as pa

from reengage.clock import as_utc
from reengage.config import Settings
from reengage.experiments.stats import ArmCounts
from reengage.facts import reader
from reengage.journeys.entries import valid_orders

Entrant = tuple[str, str, str | None, datetime]  # (group, arm, customer id, entered at)


def after_entry(
    settings: Settings, entrants: Sequence[Entrant], window: timedelta
) -> dict[tuple[str, str], ArmCounts]:
    """ArmCounts per (group, arm): people, converters and their revenue in the window."""
    if not entrants:
        return {}
    people = pa.table(
        {
            "i": pa.array(range(len(entrants)), pa.int64()),
            "grp": pa.array([e[0] for e in entrants], pa.string()),
            "arm": pa.array([e[1] for e in entrants], pa.string()),
            "customer_id": pa.array([e[2] for e in entrants], pa.string()),
            "entered_at": pa.array([as_utc(e[3]) for e in entrants], pa.timestamp("us", "UTC")),
        }
    )
    first = min(as_utc(e[3]) for e in entrants)
    last = max(as_utc(e[3]) for e in entrants)
    root = settings.facts_path
    con = reader.connect(root)
    try:
        orders = reader.between(root, "orders", first, last + window, con)
        con.register("__people", people)
        rows = con.sql(
            f"""SELECT grp, arm, count(*), count(*) FILTER (v > 0), sum(v), sum(v * v)
                FROM (SELECT p.i, any_value(p.grp) AS grp, any_value(p.arm) AS arm,
                             coalesce(sum(o.value), 0) AS v
                      FROM __people AS p LEFT JOIN ({valid_orders("true", orders)}) AS o
                        ON o.customer_id = p.customer_id AND o.ordered_at > p.entered_at
                       AND o.ordered_at <= p.entered_at + $window
                      GROUP BY p.i) AS x
                GROUP BY ALL""",
            params={"window": window},
        ).fetchall()
    finally:
        con.close()
    return {
        (grp, arm): ArmCounts(arm, int(n), int(conv), float(rev), float(sq))
        for grp, arm, n, conv, rev, sq in rows
    }
