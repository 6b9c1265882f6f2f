"""RFM: recency, frequency and monetary scores from 1 to 5, and the named segments.

Scores are quintiles over the customers who bought: 5 is the most recent, the most frequent,
the biggest spender. Ties share a score (scores come from the percent rank, not from a row
count), so the same data gives the same scores on every engine.

Segments read the recency score R and the frequency score F (the classic R x F grid; M is
reported but does not move a customer between segments):

| segment | rule |
| --- | --- |
| Champions | R 5, F 4-5 |
| Loyal | R 3-4, F 4-5 |
| Potential loyalist | R 4-5, F 2-3 |
| New | R 5, F 1 |
| Promising | R 4, F 1 |
| Need attention | R 3, F 3 |
| About to sleep | R 3, F 1-2 |
| At risk | R 1-2, F 3-4 |
| Can't lose them | R 1-2, F 5 |
| Hibernating | R 1-2, F 1-2, except R 1 F 1 |
| Lost | R 1, F 1 |
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)


def _quintile(rank: ir.FloatingValue) -> ir.IntegerValue:
    # percent_rank is 0 for the lowest value and 1 for the highest: five equal bands
    return ibis.least((rank * 5).floor().cast("int8") + 1, 5)


def rfm_scores(features: ir.Table) -> ir.Table:
    """customer_id, r, f, m and the segment, for customers with at least one order."""
    buyers = features.filter(features.orders > 0)
    scored = buyers.mutate(
        r=_quintile(ibis.percent_rank().over(order_by=ibis.desc(buyers.recency_days))),
        f=_quintile(ibis.percent_rank().over(order_by=buyers.frequency)),
        m=_quintile(ibis.percent_rank().over(order_by=buyers.monetary)),
    )
    r, f = scored.r, scored.f
    segment = ibis.cases(
        ((r == 5) & (f >= 4), "Champions"),
        (r.between(3, 4) & (f >= 4), "Loyal"),
        ((r >= 4) & f.between(2, 3), "Potential loyalist"),
        ((r == 5) & (f == 1), "New"),
        ((r == 4) & (f == 1), "Promising"),
        ((r == 3) & (f == 3), "Need attention"),
        ((r == 3) & (f <= 2), "About to sleep"),
        ((r <= 2) & f.between(3, 4), "At risk"),
        ((r <= 2) & (f == 5), "Can't lose them"),
        ((r == 1) & (f == 1), "Lost"),
        else_="Hibernating",
    )
    return scored.select("customer_id", "r", "f", "m", rfm_segment=segment)
