"""`channel: best`: the first of an intent's channels the contact can be reached on that the
contact policy does not block at the step's time.

Reachable: email always (the policy then asks for the address and consent); SMS when the SMS
provider is configured; push when the home has VAPID keys and the contact a live
subscription. When nothing passes, the first channel is kept: the dispatcher records the
message as blocked with the reason, so `messages list` shows why nothing went out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from reengage.channels.policy import SendRequest, check_many
from reengage.channels.push import VAPID_KEY_FILE
from reengage.config import Home, Settings
from reengage.journeys.steps import Send
from reengage.messages.intents import INTENTS
from reengage.state.contacts import chunks
from reengage.state.db import among
from reengage.state.schema import push_subscriptions


@dataclass(frozen=True)
class Wanted:
    """A send step to place: who, what, with which priority, when."""

    contact_id: int
    step: Send
    priority: int
    at: datetime


def reachable(
    conn: Connection, settings: Settings, home: Home, ids: Sequence[int]
) -> dict[int, set[str]]:
    """The channels beyond email each contact could be sent on, as configured."""
    found: dict[int, set[str]] = defaultdict(set)
    if settings.sms_account_sid and settings.sms_auth_token and settings.sms_from:
        for i in ids:
            found[i].add("sms")
    if (home.path / VAPID_KEY_FILE).is_file():
        for part in chunks(list(ids)):
            for r in conn.execute(
                select(push_subscriptions.c.contact_id).where(
                    among(conn, push_subscriptions.c.contact_id, part),
                    push_subscriptions.c.revoked_at.is_(None),
                )
            ):
                found[r.contact_id].add("push")
    return found


def choose_channels(
    conn: Connection, settings: Settings, home: Home, sends: Sequence[Wanted]
) -> list[str]:
    """The channel of each send: the one named, or for `best` the first reachable one the
    policy does not block (one policy read for the whole batch)."""
    chosen = [w.step.channels[0] for w in sends]
    best = [i for i, w in enumerate(sends) if len(w.step.channels) > 1]
    if not best:
        return chosen
    can = reachable(conn, settings, home, sorted({sends[i].contact_id for i in best}))
    requests: list[tuple[int, str]] = []
    asked: list[SendRequest] = []
    for i in best:
        w = sends[i]
        options = [c for c in w.step.channels if c == "email" or c in can[w.contact_id]]
        if len(options) < 2:  # one way to reach them: nothing to choose
            chosen[i] = options[0] if options else chosen[i]
            continue
        for channel in options:
            requests.append((i, channel))
            purpose = INTENTS[w.step.intent].purpose
            asked.append(SendRequest(w.contact_id, channel, purpose, w.priority, w.at))
    decisions = check_many(conn, asked, settings) if asked else []
    settled: set[int] = set()
    for (i, channel), decision in zip(requests, decisions, strict=True):
        if i not in settled and decision.action != "block":
            chosen[i] = channel
            settled.add(i)
    return chosen
