"""Identity stitching: a visitor's anonymous id joins a contact when the visitor says who
they are (an `identify` event: a login, a sign-up, an email given), so their anonymous
history becomes that contact's.

The link is an `identities` row (kind `anonymous_id`). Readers resolve anonymous events
through it when they read (journeys, styles), so the events stored before the link count as
the contact's too, without rewriting any fact.

The collector is open to anyone's browser, so what a visitor says can only ever *add* a
link: an anonymous id belongs to the first contact it was tied to and is never moved to
another (a shared computer, a second account, or someone typing another person's customer id
cannot take over a stored history), a profile is never changed, and no consent is ever
recorded from it. An email creates a bare contact when no contact owns it yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from reengage.state.contacts import (
    contact_ids_by_customer,
    customers_for_emails,
    ensure_customers,
    identity_owners,
)
from reengage.state.db import bulk_insert
from reengage.state.schema import identities

ORIGIN = "collector"


@dataclass(frozen=True)
class Sighting:
    """Who one event says its visitor is."""

    anonymous_id: str | None
    customer_id: str | None
    email: str | None


@dataclass
class Stitched:
    # the customer id of each email (found or created), to fill events that carried one
    customer_of_email: dict[str, str]
    created_contacts: int = 0
    linked: int = 0  # anonymous ids newly tied to a contact


def stitch(conn: Connection, sightings: Sequence[Sighting], *, now: datetime) -> Stitched:
    """Find or create the contact of every email, and tie each anonymous id seen with a
    customer id or an email to that contact unless it already belongs to one. Within the
    batch the first sighting (in the order given) wins."""
    emails = sorted({s.email for s in sightings if s.email and not s.customer_id})
    by_email: dict[str, str] = {}
    created = 0
    if emails:
        by_email, created = customers_for_emails(conn, emails, origin=ORIGIN, now=now)
    wanted: dict[str, str] = {}  # anonymous id -> customer id
    for s in sightings:
        customer = s.customer_id or (by_email.get(s.email) if s.email else None)
        if s.anonymous_id and customer:
            wanted.setdefault(s.anonymous_id, customer)
    result = Stitched(by_email, created)
    if not wanted:
        return result
    customers = sorted(set(wanted.values()))
    result.created_contacts += ensure_customers(conn, customers, origin=ORIGIN, now=now)
    owned = identity_owners(conn, "anonymous_id", list(wanted))
    contact_of = contact_ids_by_customer(conn, customers)
    rows = [
        {"contact_id": contact_of[c], "kind": "anonymous_id", "value": a, "first_seen": now}
        for a, c in wanted.items()
        if a not in owned
    ]
    bulk_insert(conn, identities, rows)
    result.linked = len(rows)
    return result
