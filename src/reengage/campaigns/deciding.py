"""The test's decision: once its window is over, each arm's results among the test share
(recipients whose message was sent), and the winner rule of `experiments.winner`: the arm
ahead on the chosen metric goes to the rest only when it beats the default significantly
(two-sided, 5%, Bonferroni-corrected for the number of challengers); otherwise the default
goes. The decision and its statistics are stored on the campaign, whatever they are.

Metrics: `clicks`, the share of recipients with a human click; `revenue`, the value of the
valid orders each recipient placed between their message and the decision, per recipient
(zeros included), with its conversion rate alongside.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from reengage.campaigns.definition import Campaign
from reengage.campaigns.responses import Sent, clicked, orders_after
from reengage.clock import as_utc
from reengage.config import Home
from reengage.experiments.stats import ArmCounts
from reengage.experiments.winner import Decision, Metric, choose_winner
from reengage.state.schema import campaign_recipients, campaigns, contacts, messages

ALPHA = 0.05


def test_messages(engine: Engine, name: str) -> dict[str, Sent]:
    """The test share's sent messages, by arm."""
    r = campaign_recipients
    query = (
        select(messages.c.id, messages.c.step, messages.c.sent_at, contacts.c.customer_id)
        .join(r, (r.c.campaign == messages.c.campaign) & (r.c.contact_id == messages.c.contact_id))
        .join(contacts, contacts.c.id == messages.c.contact_id)
        .where(messages.c.campaign == name, r.c.grp == "test", messages.c.status == "sent")
        .order_by(messages.c.id)
    )
    found: dict[str, Sent] = {}
    with engine.connect() as conn:
        for message_id, arm, sent_at, customer in conn.execute(query):
            sent = found.setdefault(arm, Sent([], [], []))
            sent.message_ids.append(int(message_id))
            sent.customer_ids.append(customer)
            sent.sent_at.append(as_utc(sent_at))
    return found


def measure(
    home: Home, engine: Engine, campaign: Campaign, now: datetime, facts: Any
) -> list[ArmCounts]:
    """Each arm's counts among the test share, as of `now`."""
    assert campaign.test is not None
    by_arm = test_messages(engine, campaign.name)
    root = home.settings.facts_path
    counts = []
    for arm in campaign.test.arms:
        sent = by_arm.get(arm.name, Sent([], [], []))
        n = len(sent.message_ids)
        if campaign.test.metric == "clicks":
            hits = len(clicked(facts, root, sent, now)) if n else 0
            counts.append(ArmCounts(name=arm.name, n=n, conversions=hits))
            continue
        values = orders_after(
            facts,
            root,
            sent.customer_ids,
            sent.sent_at,
            campaign.test.window.timedelta * 1000,  # up to the decision: `now` bounds it
            now,
        )
        spent = [v for v in values if v is not None]
        counts.append(
            ArmCounts(
                name=arm.name,
                n=n,
                conversions=len(spent),
                revenue_sum=sum(spent),
                revenue_sumsq=sum(v * v for v in spent),
            )
        )
    return counts


def decide(home: Home, engine: Engine, campaign: Campaign, now: datetime, facts: Any) -> Decision:
    """Measure the test, choose the winner and record the decision on the campaign."""
    assert campaign.test is not None
    counts = measure(home, engine, campaign, now, facts)
    metric: Metric = "revenue" if campaign.test.metric == "revenue" else "clicks"
    decision = choose_winner(counts, default=campaign.test.default, metric=metric, alpha=ALPHA)
    with engine.begin() as conn:
        conn.execute(
            campaigns.update()
            .where(campaigns.c.name == campaign.name, campaigns.c.phase == "test_queued")
            .values(
                winner=decision.winner,
                decision=decision.as_dict(),
                decided_at=now,
                phase="decided",
                updated_at=now,
            )
        )
    return decision
