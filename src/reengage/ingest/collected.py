"""Storing what the collector collected: journal records become event facts.

One state transaction per batch, with the facts written inside it (as an import does):
identities are stitched (`stitching`), contacts are made for the customer ids the events
name, and the events are appended to the facts, which drop the ids they already hold. The
same batch stored twice (a flush cut short by a crash) stores nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from reengage.clock import Clock
from reengage.config import Settings
from reengage.facts.kinds import EVENTS, TS
from reengage.ingest import journal
from reengage.ingest.stitching import Sighting, stitch
from reengage.ingest.stores import Stored, store_events

log = logging.getLogger(__name__)


def _sightings(records: pa.Table) -> list[Sighting]:
    """Who the records that can tie an identity say they are, in journal order."""
    anonymous = records.column("anonymous_id").is_valid()
    customer = records.column("customer_id").is_valid()
    email = records.column("email").is_valid()
    telling = pc.or_(pc.and_(anonymous, customer), email)
    rows = records.filter(telling).select(["anonymous_id", "customer_id", "email"])
    return [Sighting(**r) for r in rows.to_pylist()]


def events_table(records: pa.Table, customer_of_email: dict[str, str]) -> pa.Table:
    """The event columns (but ingested_at) of journal records; a record known only by its
    email gets that email's customer id."""
    customers = records.column("customer_id")
    if customer_of_email:
        emails = records.column("email").to_pylist()
        filled = [
            c if c is not None or e is None else customer_of_email.get(e)
            for c, e in zip(customers.to_pylist(), emails, strict=True)
        ]
        customers = pa.chunked_array([pa.array(filled, pa.string())])
    occurred = records.column("occurred_us").cast(pa.timestamp("us")).cast(TS)
    columns = {
        "event_id": records.column("event_id"),
        "customer_id": customers,
        "anonymous_id": records.column("anonymous_id"),
        "type": records.column("type"),
        "occurred_at": occurred,
        "product_id": records.column("product_id"),
        "session_id": records.column("session_id"),
        "source": records.column("source"),
        "device": records.column("device"),
        "duration_s": records.column("duration_s"),
        "properties": records.column("properties"),
    }
    schema = pa.schema([f for f in EVENTS.schema if f.name != "ingested_at"])
    return pa.table(columns).cast(schema)


def store_records(settings: Settings, engine: Engine, records: pa.Table, now: datetime) -> Stored:
    """Stitch identities and store the events of some journal records."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        with engine.begin() as conn:
            stitched = stitch(conn, _sightings(records), now=now)
            table = events_table(records, stitched.customer_of_email)
            stored = store_events(conn, con, table, settings.facts_path, now)
    finally:
        con.close()
    stored.created_contacts += stitched.created_contacts
    return stored


def flusher(settings: Settings, engine: Engine, clock: Clock) -> Callable[[], int]:
    """What the collector calls to store everything its journal folder holds (sealed
    segments, and the open ones of dead processes); it returns how many records it read."""

    def store(records: pa.Table) -> None:
        stored = store_records(settings, engine, records, clock.now())
        log.info(
            "stored %d collected event(s) (%d already stored)", stored.imported, stored.duplicates
        )

    def flush() -> int:
        return journal.flush(settings.journal_path, store)

    return flush
