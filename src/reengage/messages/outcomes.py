"""What became of each row a run tried, and the `sent` and `failed` message events it writes
to the facts (buffered, 5,000 to a file)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select

from reengage.clock import Clock
from reengage.config import Settings
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.messages.claims import Claimed
from reengage.state.contacts import chunks
from reengage.state.schema import contacts, messages

log = logging.getLogger(__name__)

EVENTS_PER_FILE = 5000
_EVENT_SCHEMA = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])


@dataclass(frozen=True)
class Outcome:
    row: Claimed
    status: str  # sent, failed, retry, released, lost
    reason: str | None = None
    provider_id: str | None = None
    suppressed: bool = False
    at: datetime | None = None


class EventLog:
    """The run's `sent` and `failed` events, written when `full` or at the end."""

    def __init__(self, settings: Settings, engine: Engine, clock: Clock) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.customers: dict[int, str | None] = {}  # contact id: customer id
        self._events: list[dict[str, Any]] = []

    @property
    def full(self) -> bool:
        return len(self._events) >= EVENTS_PER_FILE

    def add(self, outcome: Outcome) -> None:
        if outcome.status not in ("sent", "failed"):
            return
        row = outcome.row
        properties: dict[str, Any] = {
            "intent": row.intent,
            "variant": row.variant,
            "style": row.style,
            "language": row.language,
            "journey": row.journey,
            "step": row.step,
            "campaign": row.campaign,
            "attempt": row.attempts,
        }
        if outcome.status == "sent":
            properties["provider_id"] = outcome.provider_id
            if outcome.reason:  # sent, but not confirmed by the provider
                properties["reason"] = outcome.reason
        else:
            properties["reason"] = outcome.reason
        digest = hashlib.sha256(f"{outcome.status}\x1f{row.id}".encode()).hexdigest()[:32]
        self._events.append(
            {
                "event_id": f"o-{digest}",
                "message_id": str(row.id),
                "customer_id": self.customers.get(row.contact_id),
                "channel": row.channel,
                "type": outcome.status,
                "occurred_at": outcome.at or self.clock.now(),
                "properties": json.dumps(properties, sort_keys=True),
            }
        )

    def flush(self) -> None:
        """Write the buffered events; a store that refuses them is logged, not raised: the
        rows already say what happened, the events are the analytics' copy."""
        events, self._events = self._events, []
        if not events:
            return
        try:
            missing = [e for e in events if e["customer_id"] is None]
            if missing:
                self._customer_ids(missing)
            table = pa.Table.from_pylist(events, schema=_EVENT_SCHEMA)
            append(self.settings.facts_path, MESSAGE_EVENTS, table, ingested_at=self.clock.now())
        except Exception as exc:
            log.error("could not write %d message events: %r", len(events), exc)

    def _customer_ids(self, events: list[dict[str, Any]]) -> None:
        ids = sorted({int(e["message_id"]) for e in events})
        found: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for part in chunks(ids):
                for m in conn.execute(
                    select(messages.c.id, contacts.c.customer_id)
                    .join(contacts, contacts.c.id == messages.c.contact_id)
                    .where(messages.c.id.in_(part))
                ):
                    found[str(m.id)] = m.customer_id
        for e in events:
            e["customer_id"] = found.get(e["message_id"])
