"""A campaign's progress and results, as `campaigns show` prints them (and the API and the
dashboard will serve them).

- **Progress**: recipients to write to (audience minus holdout), and the campaign's
  messages by status; `pending` is what is still to go (queued, deferred, sending, paused).
- **Engagement** of the messages sent: opens (machine opens apart), clicks (messages with a
  human click), unsubscribes (from a link in the campaign's messages) and complaints
  (complaint suppressions of recipients since the start), with the last two per thousand
  sent, so a campaign that annoys people shows as such.
- **Lift against the holdout**, intent to treat: everyone drawn to receive (whether or not
  the policy let the message go) against everyone held out, each person's valid orders
  counted over the same span: from the start until the conversion window after the last
  message due. Conversion rate and revenue per recipient with 95% intervals, the difference
  with its interval and p-value (`experiments.stats`), and the incremental revenue it
  implies (difference per recipient times recipients).
- **The test's decision** as recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from reengage.campaigns import lifecycle
from reengage.campaigns.responses import Sent, events_of, open_facts, orders_after
from reengage.clock import as_utc
from reengage.config import Home
from reengage.experiments.stats import ArmCounts, arm_stats, compare
from reengage.state.schema import campaign_recipients, contacts, messages, suppressions

PENDING = ("queued", "deferred", "sending", "paused")


def progress(engine: Engine, name: str) -> dict[str, int]:
    """The campaign's messages by status, `total` to write to and `pending`."""
    with engine.connect() as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                select(messages.c.status, func.count())
                .where(messages.c.campaign == name)
                .group_by(messages.c.status)
            ).all()
        )
        planned = conn.execute(
            select(func.count()).where(
                campaign_recipients.c.campaign == name, campaign_recipients.c.grp != "holdout"
            )
        ).scalar_one()
    counts = {s: int(by_status.get(s, 0)) for s in (*PENDING, "sent", "blocked", "failed")}
    counts["cancelled"] = int(by_status.get("cancelled", 0))
    counts["total"] = int(planned)
    counts["queued_rows"] = sum(int(v) for v in by_status.values())
    unwritten = 0 if counts["cancelled"] else max(0, counts["total"] - counts["queued_rows"])
    counts["pending"] = sum(counts[s] for s in PENDING) + unwritten
    return counts


def results(
    home: Home, engine: Engine, name: str, now: datetime, facts: Any = None
) -> dict[str, Any]:
    with engine.connect() as conn:
        row = lifecycle.get(conn, name)
    campaign = row.campaign()
    found: dict[str, Any] = {
        "name": name,
        "description": campaign.description,
        "status": row.status,
        "phase": row.phase,
        "intent": campaign.intent,
        "channel": campaign.channel,
        "segments": list(campaign.segments),
        "exclude": list(campaign.exclude),
        "start_at": _iso(row.start_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "audience": row.audience,
        "excluded": row.excluded,
        "holdout": row.holdout,
        "messages": progress(engine, name),
        "decision": row.decision,
        "winner": row.winner,
        "decide_at": _iso(row.decide_at),
    }
    if row.frozen_at is None:
        return found
    con, close = open_facts(home.settings.facts_path, facts)
    try:
        found["engagement"] = _engagement(home, engine, con, name, row.frozen_at, now)
        found["lift"] = _lift(home, engine, con, campaign, row.frozen_at, now)
    finally:
        if close:
            con.close()
    found["blocked_reasons"] = _blocked(engine, name)
    return found


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _sent(engine: Engine, name: str) -> Sent:
    sent = Sent([], [], [])
    query = (
        select(messages.c.id, contacts.c.customer_id, messages.c.sent_at)
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.campaign == name, messages.c.status == "sent")
    )
    with engine.connect() as conn:
        for message_id, customer, sent_at in conn.execute(query):
            sent.message_ids.append(int(message_id))
            sent.customer_ids.append(customer)
            sent.sent_at.append(as_utc(sent_at))
    return sent


def _engagement(
    home: Home, engine: Engine, facts: Any, name: str, start: datetime, now: datetime
) -> dict[str, Any]:
    sent = _sent(engine, name)
    n = len(sent.message_ids)
    root = home.settings.facts_path
    opens = events_of(facts, root, sent, "open", now)
    clicks = events_of(facts, root, sent, "click", now)
    unsubscribes = events_of(facts, root, sent, "unsubscribe", now)
    with engine.connect() as conn:
        complaints = conn.execute(
            select(func.count(func.distinct(suppressions.c.contact_id))).where(
                suppressions.c.reason == "complained",
                suppressions.c.recorded_at >= start,
                suppressions.c.contact_id.in_(
                    select(campaign_recipients.c.contact_id).where(
                        campaign_recipients.c.campaign == name
                    )
                ),
            )
        ).scalar_one()
    opened = sum(1 for k in opens if k >= 0)
    clicked = sum(1 for k in clicks if k >= 0)
    unsubscribed = sum(1 for k in unsubscribes if k >= 0)

    def per_thousand(count: int) -> float | None:
        return None if not n else round(1000 * count / n, 2)

    return {
        "sent": n,
        "opened": opened,
        "machine_opens": opens.get(-1, 0),
        "clicked": clicked,
        "unsubscribed": unsubscribed,
        "complained": int(complaints),
        "open_rate": None if not n else opened / n,
        "click_rate": None if not n else clicked / n,
        "unsubscribes_per_1000": per_thousand(unsubscribed),
        "complaints_per_1000": per_thousand(int(complaints)),
    }


def _lift(
    home: Home, engine: Engine, facts: Any, campaign: Any, start: datetime, now: datetime
) -> dict[str, Any] | None:
    """Treated (everyone drawn to receive) against the holdout, intent to treat."""
    r = campaign_recipients
    query = (
        select(r.c.grp, contacts.c.customer_id, r.c.send_at)
        .join(contacts, contacts.c.id == r.c.contact_id)
        .where(r.c.campaign == campaign.name)
    )
    with engine.connect() as conn:
        people = conn.execute(query).all()
    held = [p for p in people if p.grp == "holdout"]
    treated = [p for p in people if p.grp != "holdout"]
    if not held or not treated:
        return None
    last = max((as_utc(p.send_at) for p in treated if p.send_at is not None), default=start)
    span = (last - start) + campaign.conversion_window.timedelta
    root = home.settings.facts_path
    groups = {}
    for label, members in (("treated", treated), ("holdout", held)):
        values = orders_after(
            facts,
            root,
            [p.customer_id for p in members],
            [start] * len(members),
            span,
            now,
        )
        spent = [v for v in values if v is not None]
        groups[label] = ArmCounts(
            name=label,
            n=len(members),
            conversions=len(spent),
            revenue_sum=sum(spent),
            revenue_sumsq=sum(v * v for v in spent),
        )
    comparison = compare(groups["holdout"], groups["treated"])
    revenue = comparison.revenue
    found: dict[str, Any] = {
        "treated": arm_stats(groups["treated"]).as_dict(),
        "control": arm_stats(groups["holdout"]).as_dict(),
        **comparison.as_dict(),
        "rpr_diff": revenue.diff,
        "rpr_diff_ci_low": None if revenue.ci is None else revenue.ci.low,
        "rpr_diff_ci_high": None if revenue.ci is None else revenue.ci.high,
        "rpr_p_value": revenue.p_value,
        "incremental_revenue": revenue.diff * groups["treated"].n,
    }
    found["measured_until"] = min(now, start + span).isoformat()
    found["complete"] = now >= start + span
    return found


def _blocked(engine: Engine, name: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(messages.c.reason, func.count())
            .where(messages.c.campaign == name, messages.c.status == "blocked")
            .group_by(messages.c.reason)
            .order_by(func.count().desc())
            .limit(10)
        ).all()
    return {str(reason): int(count) for reason, count in rows}
