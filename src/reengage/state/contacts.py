"""Contacts, their identities and their consents: the queries that write and find them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, select

from reengage.clock import as_utc
from reengage.state.db import bulk_insert
from reengage.state.schema import consents, contacts, identities

T = TypeVar("T")
CHUNK = 2000  # well under every backend's bound-parameter limit

PROFILE = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "language",
    "country",
    "city",
    "timezone",
    "birthday",
)
IDENTIFYING = ("email", "phone")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class CustomerUpsert:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    contact_ids: dict[str, int] = field(default_factory=dict)


def contact_ids_by_customer(conn: Connection, customer_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(customer_ids):
        rows = conn.execute(
            select(contacts.c.customer_id, contacts.c.id).where(contacts.c.customer_id.in_(part))
        )
        found.update({r.customer_id: r.id for r in rows})
    return found


def identity_owners(conn: Connection, kind: str, values: Sequence[str]) -> dict[str, int]:
    owners: dict[str, int] = {}
    for part in chunks(values):
        rows = conn.execute(
            select(identities.c.value, identities.c.contact_id).where(
                identities.c.kind == kind, identities.c.value.in_(part)
            )
        )
        owners.update({r.value: r.contact_id for r in rows})
    return owners


def upsert_customers(
    conn: Connection, rows: list[dict[str, Any]], *, origin: str, now: datetime
) -> CustomerUpsert:
    """Insert new customers, update changed ones; rows carry `__line` and the profile fields.

    A row whose email already identifies another customer is rejected: one address, one person.
    A customer id repeated in the file is one customer: later rows update the earlier ones.
    """
    result = CustomerUpsert()
    ids = list(dict.fromkeys(r["customer_id"] for r in rows))
    stored: dict[str, dict[str, Any]] = {}
    for part in chunks(ids):
        got = conn.execute(
            select(contacts.c.id, contacts.c.customer_id, *[contacts.c[c] for c in PROFILE]).where(
                contacts.c.customer_id.in_(part)
            )
        )
        stored.update({r.customer_id: dict(r._mapping) for r in got})
    phones = sorted({r["phone"] for r in rows if r.get("phone")})
    # a phone may be a household's: it identifies its first owner, and is kept on the
    # profile of the others without identifying them
    phone_owner: dict[str, int | str] = dict(identity_owners(conn, "phone", phones))
    emails = sorted({r["email"] for r in rows if r.get("email")})
    # who owns each address: a stored contact's id, or the customer id of a row to insert
    email_owner: dict[str, int | str] = dict(identity_owners(conn, "email", emails))
    new: dict[str, dict[str, Any]] = {}
    changes: dict[int, dict[str, Any]] = {}

    for row in rows:
        cid = row["customer_id"]
        profile = {c: row.get(c) for c in PROFILE}
        email = profile["email"]
        me: int | str = stored[cid]["id"] if cid in stored else cid
        owner = email_owner.get(email) if email else None
        if owner is not None and owner != me:
            result.rejected.append((row["__line"], "email: already belongs to another customer"))
            continue
        if email:
            email_owner[email] = me
        if profile["phone"]:
            phone_owner.setdefault(profile["phone"], me)
        if isinstance(me, str):
            if cid in new:
                changed = {c: v for c, v in profile.items() if v is not None and new[cid][c] != v}
                new[cid].update(changed)
                result.updated += bool(changed)
                result.unchanged += not changed
                continue
            new[cid] = {
                "customer_id": cid,
                **profile,
                "created_at": row.get("created_at") or now,
                "updated_at": now,
                "origin": origin,
                "attributes": {},
            }
            result.inserted += 1
            continue
        before = stored[cid]
        changed = {c: v for c, v in profile.items() if v is not None and before.get(c) != v}
        if not changed:
            result.unchanged += 1
            continue
        before.update(changed)
        changes.setdefault(me, {}).update(changed)
        result.updated += 1

    for contact_id, changed in changes.items():
        conn.execute(
            contacts.update().where(contacts.c.id == contact_id).values(**changed, updated_at=now)
        )
        for kind in IDENTIFYING:
            if kind in changed:
                conn.execute(
                    identities.delete().where(
                        identities.c.contact_id == contact_id, identities.c.kind == kind
                    )
                )
                if kind == "email" or phone_owner.get(changed[kind]) == contact_id:
                    _add_identity(conn, contact_id, kind, changed[kind], now)

    bulk_insert(conn, contacts, list(new.values()))
    made = contact_ids_by_customer(conn, list(new))
    identity_rows = [
        {"contact_id": made[cid], "kind": kind, "value": value, "first_seen": now}
        for cid, values in new.items()
        for kind, value in (("customer_id", cid), *((k, values[k]) for k in IDENTIFYING))
        if value and (kind != "phone" or phone_owner.get(value) == cid)
    ]
    bulk_insert(conn, identities, identity_rows)
    result.contact_ids = {cid: s["id"] for cid, s in stored.items()} | made
    return result


def _insert_id(conn: Connection, statement: Insert) -> int:
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def _add_identity(conn: Connection, contact_id: int, kind: str, value: str, now: datetime) -> None:
    conn.execute(
        identities.insert().values(contact_id=contact_id, kind=kind, value=value, first_seen=now)
    )


def ensure_customers(
    conn: Connection, customer_ids: Iterable[str], *, origin: str, now: datetime
) -> int:
    """Create a bare contact (no consent) for each customer id not known yet; how many."""
    wanted = list(dict.fromkeys(customer_ids))
    known = contact_ids_by_customer(conn, wanted)
    missing = [c for c in wanted if c not in known]
    for part in chunks(missing):
        conn.execute(
            contacts.insert(),
            [
                {
                    "customer_id": c,
                    "created_at": now,
                    "updated_at": now,
                    "origin": origin,
                    "attributes": {},
                }
                for c in part
            ],
        )
        made = contact_ids_by_customer(conn, part)
        conn.execute(
            identities.insert(),
            [
                {"contact_id": made[c], "kind": "customer_id", "value": c, "first_seen": now}
                for c in part
            ],
        )
    return len(missing)


def customers_for_emails(
    conn: Connection, emails: Sequence[str], *, origin: str, now: datetime
) -> tuple[dict[str, str], int]:
    """The customer id of each email, creating contacts for unknown emails; (map, created).

    A contact found by email without a customer id gets a stable one derived from the email,
    so re-importing the same file finds the same customer.
    """
    wanted = list(dict.fromkeys(emails))
    owner = identity_owners(conn, "email", wanted)
    result: dict[str, str] = {}
    created = 0
    owned = list(set(owner.values()))
    customer_of: dict[int, str | None] = {}
    for part in chunks(owned):
        got = conn.execute(
            select(contacts.c.id, contacts.c.customer_id).where(contacts.c.id.in_(part))
        )
        customer_of.update({r.id: r.customer_id for r in got})
    for email in wanted:
        derived = "email-" + hashlib.sha256(email.encode()).hexdigest()[:16]
        contact_id = owner.get(email)
        if contact_id is None:
            new_id = _insert_id(
                conn,
                contacts.insert().values(
                    customer_id=derived,
                    email=email,
                    created_at=now,
                    updated_at=now,
                    origin=origin,
                    attributes={},
                ),
            )
            _add_identity(conn, new_id, "customer_id", derived, now)
            _add_identity(conn, new_id, "email", email, now)
            result[email] = derived
            created += 1
            continue
        existing = customer_of.get(contact_id)
        if existing is None:
            conn.execute(
                contacts.update().where(contacts.c.id == contact_id).values(customer_id=derived)
            )
            _add_identity(conn, contact_id, "customer_id", derived, now)
            existing = derived
        result[email] = existing
    return result, created


@dataclass(frozen=True)
class ConsentChange:
    contact_id: int
    channel: str
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime


def record_consents(conn: Connection, changes: list[ConsentChange]) -> int:
    """Append the changes that are news: later than what is stored for the contact, channel
    and purpose, and different from the state they follow. How many were appended."""
    if not changes:
        return 0
    current: dict[tuple[int, str, str], tuple[datetime, bool]] = {}
    # by contact id, which the index leads with: a row-value IN over (contact, channel,
    # purpose) makes SQLite scan the whole history once per chunk
    people = sorted({c.contact_id for c in changes})
    for part in chunks(people, 500):
        rows = conn.execute(
            select(
                consents.c.contact_id,
                consents.c.channel,
                consents.c.purpose,
                consents.c.recorded_at,
                consents.c.granted,
            ).where(consents.c.contact_id.in_(part))
        )
        for r in rows:
            key = (r.contact_id, r.channel, r.purpose)
            at = as_utc(r.recorded_at)
            if key not in current or at > current[key][0]:
                current[key] = (at, r.granted)
    new_rows = []
    for c in sorted(changes, key=lambda c: as_utc(c.recorded_at)):
        key = (c.contact_id, c.channel, c.purpose)
        at = as_utc(c.recorded_at)
        before = current.get(key)
        if before is not None and (at <= before[0] or before[1] == c.granted):
            continue
        current[key] = (at, c.granted)
        new_rows.append(
            {
                "contact_id": c.contact_id,
                "channel": c.channel,
                "purpose": c.purpose,
                "granted": c.granted,
                "source": c.source,
                "recorded_at": at,
            }
        )
    bulk_insert(conn, consents, new_rows)
    return len(new_rows)


def current_consent(conn: Connection, contact_id: int, channel: str, purpose: str) -> bool | None:
    """Whether the contact allows this channel for this purpose now; None if never recorded."""
    row = conn.execute(
        select(consents.c.granted)
        .where(
            consents.c.contact_id == contact_id,
            consents.c.channel == channel,
            consents.c.purpose == purpose,
        )
        .order_by(consents.c.recorded_at.desc(), consents.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else bool(row.granted)
