"""Export everything held on one person, or erase them everywhere.

Where a person is: the state rows about their contact (identities, consents, scores,
messages, offers, push subscriptions, ad audience, segment and campaign memberships,
journey enrollments, suppressions of their addresses), the facts that name them (events with
their customer id, or with one of their stitched anonymous ids and no customer id; orders with
their customer id; message events with their customer id or about their messages), and the
rejected rows of past imports that carry their customer id, email, phone or an anonymous id.

Erasure, in an order that a crash can only leave redoable:
1. ad platforms that received the person (an audience membership synced while they allowed
   ads) are told to remove them; a platform that refuses stops the erasure before anything
   is deleted (try again later);
2. every facts day file holding one of their rows is written again without those rows (a new
   file, atomically, then the old one removed), rejects files likewise;
3. one state transaction deletes their rows and writes the `erasures` log row: counts and who
   asked, never the person's data.

By default their email and phone stay in `suppressions` (reason `erased`, attached to no
contact), so a later import of the same address is never messaged; `suppress=False` removes
those suppressions too. Erasing an unknown (or already erased) contact does nothing and
answers None.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, Table, select

from reengage.clock import Clock, as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.facts.kinds import KINDS, FactKind
from reengage.facts.layout import all_part_files, sync_dirs, write_part
from reengage.state.db import among
from reengage.state.schema import (
    audience_members,
    campaign_recipients,
    consents,
    contacts,
    enrollment_steps,
    enrollments,
    erasures,
    identities,
    messages,
    offers,
    push_subscriptions,
    scores,
    segment_members,
    segment_transitions,
    suppressions,
)
from reengage.suppressions import normalise_address, suppress

log = logging.getLogger(__name__)

# every table with a contact_id, children first (the order deletes run in)
CONTACT_TABLES: tuple[tuple[str, Table], ...] = (
    ("campaign_recipients", campaign_recipients),
    ("segment_transitions", segment_transitions),
    ("segment_members", segment_members),
    ("audience_members", audience_members),
    ("push_subscriptions", push_subscriptions),
    ("offers", offers),
    ("enrollments", enrollments),
    ("messages", messages),
    ("scores", scores),
    ("consents", consents),
    ("identities", identities),
)


@dataclass
class Person:
    """The keys that find a contact's data outside their own rows."""

    contact_id: int
    customer_id: str | None
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    anonymous_ids: set[str] = field(default_factory=set)
    message_ids: set[str] = field(default_factory=set)

    def matches(self, text: str) -> bool:
        """Whether a field of a rejects file carries one of the person's keys."""
        value = text.strip()
        if not value:
            return False
        folded = value.lower()
        if self.customer_id is not None and folded == self.customer_id.lower():
            return True
        if folded in self.emails or value in self.anonymous_ids:
            return True
        if self.phones and _looks_like_phone(value):
            return normalise_address("sms", value) in self.phones
        return False


def _looks_like_phone(value: str) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    return digits >= 6 and all(ch.isdigit() or ch in " +-().\u00a0" for ch in value)


def find_person(conn: Connection, contact_id: int) -> Person | None:
    row = conn.execute(
        select(contacts.c.customer_id, contacts.c.email, contacts.c.phone).where(
            contacts.c.id == contact_id
        )
    ).first()
    if row is None:
        return None
    person = Person(contact_id, row.customer_id)
    if row.email:
        person.emails.add(row.email.strip().lower())
    if row.phone:
        person.phones.add(normalise_address("sms", row.phone))
    for kind, value in conn.execute(
        select(identities.c.kind, identities.c.value).where(identities.c.contact_id == contact_id)
    ):
        if kind == "email":
            person.emails.add(value.strip().lower())
        elif kind == "phone":
            person.phones.add(normalise_address("sms", value))
        elif kind == "anonymous_id":
            person.anonymous_ids.add(value)
    ids = conn.execute(select(messages.c.id).where(messages.c.contact_id == contact_id)).scalars()
    person.message_ids = {str(i) for i in ids}
    return person


# ---- export --------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A value as JSON holds it: instants in ISO 8601 UTC, decimals as numbers."""
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _rows(conn: Connection, table: Table, where: Any) -> list[dict[str, Any]]:
    found = conn.execute(select(table).where(where).order_by(*table.primary_key.columns))
    return [{k: plain(v) for k, v in r._mapping.items()} for r in found]


def _suppression_filter(person: Person) -> Any:
    by_address = [
        (suppressions.c.channel == "email") & suppressions.c.address.in_(sorted(person.emails)),
        suppressions.c.channel.in_(("sms", "whatsapp"))
        & suppressions.c.address.in_(sorted(person.phones)),
    ]
    found = suppressions.c.contact_id == person.contact_id
    for condition in by_address:
        found = found | condition
    return found


def _fact_filters(person: Person) -> dict[str, tuple[str, dict[str, Any]]]:
    """SQL conditions (and their parameters) over each kind of facts for the person."""
    cid = person.customer_id or ""
    anonymous = sorted(person.anonymous_ids) or [""]
    mids = sorted(person.message_ids) or [""]
    return {
        "events": (
            "customer_id = $cid OR (customer_id IS NULL AND list_contains($anon, anonymous_id))",
            {"cid": cid, "anon": anonymous},
        ),
        "orders": ("customer_id = $cid", {"cid": cid}),
        "message_events": (
            "customer_id = $cid OR list_contains($mids, message_id)",
            {"cid": cid, "mids": mids},
        ),
    }


def export_person(settings: Settings, engine: Engine, contact_id: int) -> dict[str, Any] | None:
    """Everything held on the person, as JSON-ready data; None for an unknown contact."""
    with engine.connect() as conn:
        person = find_person(conn, contact_id)
        if person is None:
            return None
        out: dict[str, Any] = {
            "contact": _rows(conn, contacts, contacts.c.id == contact_id)[0],
        }
        for name, table in reversed(CONTACT_TABLES):
            out[name] = _rows(conn, table, table.c.contact_id == contact_id)
        enrollment_ids = [e["id"] for e in out["enrollments"]]
        out["enrollment_steps"] = (
            _rows(
                conn,
                enrollment_steps,
                among(conn, enrollment_steps.c.enrollment_id, enrollment_ids),
            )
            if enrollment_ids
            else []
        )
        out["suppressions"] = _rows(conn, suppressions, _suppression_filter(person))
    con = reader.connect(settings.facts_path)
    try:
        facts: dict[str, list[dict[str, Any]]] = {}
        for name, (condition, params) in _fact_filters(person).items():
            kind = KINDS[name]
            table = con.sql(
                f"SELECT * FROM {name} WHERE {condition} ORDER BY {kind.time_column}, "
                f"{kind.id_column}",
                params=params,
            ).to_arrow_table()
            facts[name] = [{k: plain(v) for k, v in r.items()} for r in table.to_pylist()]
    finally:
        con.close()
    out["facts"] = facts
    out["rejects"] = [
        {"file": path.name, "row": row}
        for path, row in _rejected_rows(settings.rejects_path, person)
    ]
    return out


# ---- rejects files -------------------------------------------------------------------------


def _reject_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        return list(csv.reader(fh))


def _rejected_rows(folder: Path, person: Person) -> Iterable[tuple[Path, dict[str, str]]]:
    for path in _reject_files(folder):
        rows = _read_csv(path)
        if not rows:
            continue
        header = rows[0]
        for row in rows[1:]:
            if any(person.matches(v) for v in row):
                yield path, dict(zip(header, row, strict=False))


def _erase_rejects(folder: Path, person: Person) -> int:
    """Write each rejects file again without the person's rows; how many rows went."""
    removed = 0
    for path in _reject_files(folder):
        rows = _read_csv(path)
        kept = rows[:1] + [r for r in rows[1:] if not any(person.matches(v) for v in r)]
        if len(kept) == len(rows):
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        removed += len(rows) - len(kept)
    return removed


# ---- facts ---------------------------------------------------------------------------------


def _erase_facts(root: Path, kind: FactKind, condition: str, params: dict[str, Any]) -> int:
    """Rewrite every day file of `kind` holding rows that match; how many rows went."""
    files = [str(f) for f in all_part_files(root, kind)]
    if not files:
        return 0
    con = duckdb.connect()
    try:
        hits = con.execute(
            f"""SELECT filename, count(*) FROM read_parquet($files, filename = true,
                                                             union_by_name = true)
                WHERE {condition} GROUP BY filename""",
            {"files": files, **params},
        ).fetchall()
        removed = 0
        touched: set[Path] = set()
        for name, count in hits:
            path = Path(name)
            con.register("__part", pq.read_table(path))
            try:
                kept = con.sql(
                    f"SELECT * FROM __part WHERE NOT coalesce({condition}, false)", params=params
                ).to_arrow_table()
            finally:
                con.unregister("__part")
            if kept.num_rows:
                write_part(path.parent, kept.select(kind.columns).cast(kind.schema))
            path.unlink()
            touched.add(path.parent)
            removed += int(count)
        if touched:
            sync_dirs(touched)
    finally:
        con.close()
    return removed


# ---- ad platforms --------------------------------------------------------------------------


def _tell_platforms(settings: Settings, conn: Connection, contact_id: int) -> int:
    """Remove the person from every platform audience that received them; how many."""
    from reengage.channels.ad_platforms import platform_from_settings
    from reengage.channels.audiences import ads_consent, people

    synced = conn.execute(
        select(audience_members.c.audience).where(
            audience_members.c.contact_id == contact_id, audience_members.c.synced_at.is_not(None)
        )
    ).scalars()
    audiences = sorted(set(synced))
    consent = ads_consent(conn, [contact_id]).get(contact_id)
    if not audiences or consent is None or not consent.ever_allowed:
        return 0  # nobody who never allowed ads was ever sent to a platform
    profile = people(conn, [contact_id]).get(contact_id)
    if profile is None:
        return 0
    told = 0
    for audience in audiences:
        for platform, ids in (
            ("meta", settings.meta_audience_ids),
            ("google", settings.google_ads_user_list_ids),
        ):
            if audience not in (ids or {}):
                continue
            target = platform_from_settings(settings, platform, audience)
            try:
                target.remove([profile])
            finally:
                target.close()
            told += 1
    return told


# ---- erasure -------------------------------------------------------------------------------


def erase_person(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    contact_id: int,
    *,
    requested_by: str,
    suppress_addresses: bool = True,
) -> dict[str, int] | None:
    """Erase the person everywhere; the counts logged in `erasures`, or None when there is no
    such contact (erased already, or never known)."""
    with engine.connect() as conn:
        person = find_person(conn, contact_id)
        if person is None:
            return None
        platforms = _tell_platforms(settings, conn, contact_id)
    removed: dict[str, int] = {}
    for name, (condition, params) in _fact_filters(person).items():
        removed[f"facts.{name}"] = _erase_facts(settings.facts_path, KINDS[name], condition, params)
    removed["rejects_rows"] = _erase_rejects(settings.rejects_path, person)
    removed["ad_platform_removals"] = platforms
    now = clock.now()
    with engine.begin() as conn:
        if find_person(conn, contact_id) is None:  # a concurrent erasure won
            return None
        enrollment_ids = list(
            conn.execute(
                select(enrollments.c.id).where(enrollments.c.contact_id == contact_id)
            ).scalars()
        )
        removed["enrollment_steps"] = 0
        if enrollment_ids:
            removed["enrollment_steps"] = conn.execute(
                enrollment_steps.delete().where(
                    among(conn, enrollment_steps.c.enrollment_id, enrollment_ids)
                )
            ).rowcount
        for name, table in CONTACT_TABLES:
            removed[name] = conn.execute(
                table.delete().where(table.c.contact_id == contact_id)
            ).rowcount
        found = _suppression_filter(person)
        if suppress_addresses:
            # kept, but attached to nobody: the address alone must stay unreachable
            removed["suppressions"] = 0
            conn.execute(suppressions.update().where(found).values(contact_id=None))
            kept = 0
            for channel, addresses in (("email", person.emails), ("sms", person.phones)):
                for address in sorted(addresses):
                    suppress(conn, channel, address, "erased", source="erasure", at=now)
                    kept += 1
            removed["suppressions_kept"] = kept
        else:
            removed["suppressions"] = conn.execute(suppressions.delete().where(found)).rowcount
            removed["suppressions_kept"] = 0
        removed["contacts"] = conn.execute(
            contacts.delete().where(contacts.c.id == contact_id)
        ).rowcount
        conn.execute(
            erasures.insert().values(
                contact_id=contact_id,
                requested_by=requested_by,
                erased_at=now,
                removed=removed,
            )
        )
    log.info("erased contact %d (%s): %s", contact_id, requested_by, json.dumps(removed))
    return removed


def erasure_log(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """The latest erasures, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(erasures).order_by(erasures.c.id.desc()).limit(limit))
        return [{k: plain(v) for k, v in r._mapping.items()} for r in rows]


__all__ = ["erase_person", "erasure_log", "export_person", "find_person"]
