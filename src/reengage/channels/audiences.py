"""Who is in which ad audience, and what Meta and Google have been told about it.

Membership (who enters and who leaves) is decided elsewhere (segments) and recorded here with
`set_members`. A row of `audience_members` is pending while `synced_at` is null or older than
the contact's latest ads consent: `pending_changes` turns the pending rows into additions
(current members who allow ads: channel "ads", purpose "marketing", granted) and removals
(members who left, or who withdrew their consent since the platforms last heard). Nobody who
never allowed ads is ever sent to a platform, not even to be removed. `sync` sends the
changes to every platform and only then marks them synced, in the caller's transaction: a
failure leaves them pending, and sending them again is harmless (both platforms ignore an
addition they have, or a removal of someone absent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from reengage.channels.ad_platforms import AudiencePlatform
from reengage.channels.ads import Person, matchable, write_csv
from reengage.clock import Clock, as_utc
from reengage.state.contacts import chunks
from reengage.state.schema import audience_members, consents, contacts


@dataclass(frozen=True)
class MembershipChange:
    joined: int
    left: int


def set_members(
    conn: Connection, audience: str, contact_ids: Iterable[int], clock: Clock
) -> MembershipChange:
    """Make the audience's members exactly these contacts: newcomers join (a former member
    joins again), members not listed leave. Every change is pending until synced."""
    now = clock.now()
    wanted = set(contact_ids)
    rows = conn.execute(
        select(
            audience_members.c.id, audience_members.c.contact_id, audience_members.c.left_at
        ).where(audience_members.c.audience == audience)
    ).all()
    known = {r.contact_id for r in rows}
    leaving = [r.id for r in rows if r.left_at is None and r.contact_id not in wanted]
    returning = [r.id for r in rows if r.left_at is not None and r.contact_id in wanted]
    for part in chunks(leaving):
        conn.execute(
            audience_members.update()
            .where(audience_members.c.id.in_(part))
            .values(left_at=now, synced_at=None)
        )
    for part in chunks(returning):
        conn.execute(
            audience_members.update()
            .where(audience_members.c.id.in_(part))
            .values(joined_at=now, left_at=None, synced_at=None)
        )
    new = sorted(wanted - known)
    for part in chunks(new):
        conn.execute(
            audience_members.insert(),
            [{"audience": audience, "contact_id": c, "joined_at": now} for c in part],
        )
    return MembershipChange(joined=len(new) + len(returning), left=len(leaving))


def change_member(
    conn: Connection, audience: str, contact_id: int, *, join: bool, at: datetime
) -> bool:
    """Add one contact to an audience (`join`) or take them out, as a journey step does;
    False when they already were in (or out). Pending until synced, like `set_members`."""
    row = conn.execute(
        select(audience_members.c.id, audience_members.c.left_at).where(
            audience_members.c.audience == audience, audience_members.c.contact_id == contact_id
        )
    ).first()
    if join:
        if row is None:
            conn.execute(
                audience_members.insert().values(
                    audience=audience, contact_id=contact_id, joined_at=at
                )
            )
            return True
        if row.left_at is None:
            return False
        values: dict[str, Any] = {"joined_at": at, "left_at": None, "synced_at": None}
    else:
        if row is None or row.left_at is not None:
            return False
        values = {"left_at": at, "synced_at": None}
    conn.execute(audience_members.update().where(audience_members.c.id == row.id).values(**values))
    return True


def current_members(conn: Connection, audience: str) -> list[int]:
    return list(
        conn.execute(
            select(audience_members.c.contact_id)
            .where(audience_members.c.audience == audience, audience_members.c.left_at.is_(None))
            .order_by(audience_members.c.contact_id)
        ).scalars()
    )


@dataclass(frozen=True)
class AdsConsent:
    allowed: bool  # the latest ads/marketing consent is granted
    recorded_at: datetime  # when that latest consent was recorded
    ever_allowed: bool  # some ads/marketing consent was ever granted


def ads_consent(conn: Connection, contact_ids: Sequence[int]) -> dict[int, AdsConsent]:
    """Each contact's ads/marketing consent (contacts never asked are absent)."""
    found: dict[int, AdsConsent] = {}
    for part in chunks(list(contact_ids)):
        rows = conn.execute(
            select(consents.c.contact_id, consents.c.granted, consents.c.recorded_at)
            .where(
                consents.c.contact_id.in_(part),
                consents.c.channel == "ads",
                consents.c.purpose == "marketing",
            )
            .order_by(consents.c.contact_id, consents.c.recorded_at, consents.c.id)
        )
        for r in rows:  # in time order: the last row of a contact is its current consent
            before = found.get(r.contact_id)
            ever = bool(r.granted) or (before is not None and before.ever_allowed)
            found[r.contact_id] = AdsConsent(bool(r.granted), as_utc(r.recorded_at), ever)
    return found


@dataclass(frozen=True)
class PendingChanges:
    adds: list[int]
    removes: list[int]


def pending_changes(conn: Connection, audience: str) -> PendingChanges:
    """What the platforms have not been told yet: contact ids to add and to remove."""
    rows = conn.execute(
        select(
            audience_members.c.contact_id,
            audience_members.c.left_at,
            audience_members.c.synced_at,
        )
        .where(audience_members.c.audience == audience)
        .order_by(audience_members.c.contact_id)
    ).all()
    consent = ads_consent(conn, [r.contact_id for r in rows])
    adds: list[int] = []
    removes: list[int] = []
    for r in rows:
        latest = consent.get(r.contact_id)
        if latest is None:
            continue  # never asked: never sent anywhere
        if r.synced_at is not None and latest.recorded_at <= as_utc(r.synced_at):
            continue  # the platforms know this state already
        if r.left_at is None and latest.allowed:
            adds.append(r.contact_id)
        elif latest.ever_allowed:
            removes.append(r.contact_id)
    return PendingChanges(adds, removes)


def mark_synced(conn: Connection, audience: str, contact_ids: Sequence[int], at: datetime) -> int:
    """Record that the platforms now hold these members' state; how many rows."""
    done = 0
    for part in chunks(list(contact_ids)):
        result = conn.execute(
            audience_members.update()
            .where(
                audience_members.c.audience == audience,
                audience_members.c.contact_id.in_(part),
            )
            .values(synced_at=at)
        )
        done += result.rowcount
    return done


def people(conn: Connection, contact_ids: Sequence[int]) -> dict[int, Person]:
    """The matchable profile of each contact. State and postal code are not profile columns:
    they are read from the contact's attributes (`state` or `region`, `zip` or
    `postal_code`) when an import put them there."""
    found: dict[int, Person] = {}
    columns = (
        contacts.c.id,
        contacts.c.email,
        contacts.c.phone,
        contacts.c.first_name,
        contacts.c.last_name,
        contacts.c.city,
        contacts.c.country,
        contacts.c.attributes,
    )
    for part in chunks(list(contact_ids)):
        for r in conn.execute(select(*columns).where(contacts.c.id.in_(part))):
            extra: dict[str, Any] = r.attributes if isinstance(r.attributes, dict) else {}
            found[r.id] = Person(
                email=r.email,
                phone=r.phone,
                first_name=r.first_name,
                last_name=r.last_name,
                city=r.city,
                state=_text(extra.get("state") or extra.get("region")),
                zip=_text(extra.get("zip") or extra.get("postal_code")),
                country=r.country,
            )
    return found


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ExportSummary:
    audience: str
    platform: str
    rows: int
    without_consent: int
    unmatchable: int
    out: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_members(conn: Connection, audience: str, platform: str, out: Path) -> ExportSummary:
    """Write the platform's customer-list CSV of the audience's current members who allow
    ads now; members without consent or with nothing to match on are left out."""
    members = current_members(conn, audience)
    consent = ads_consent(conn, members)
    allowed = [c for c in members if c in consent and consent[c].allowed]
    profiles = people(conn, allowed)
    rows = [profiles[c] for c in allowed if c in profiles and matchable(platform, profiles[c])]
    written = write_csv(platform, rows, out)
    return ExportSummary(
        audience=audience,
        platform=platform,
        rows=written,
        without_consent=len(members) - len(allowed),
        unmatchable=len(allowed) - written,
        out=str(out),
    )


@dataclass(frozen=True)
class SyncSummary:
    audience: str
    platforms: list[str]
    added: int
    removed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync(
    conn: Connection, audience: str, platforms: Sequence[AudiencePlatform], clock: Clock
) -> SyncSummary:
    """Send the pending additions and removals to every platform, then mark them synced."""
    pending = pending_changes(conn, audience)
    profiles = people(conn, pending.adds + pending.removes)
    adding = [profiles[c] for c in pending.adds if c in profiles]
    removing = [profiles[c] for c in pending.removes if c in profiles]
    for platform in platforms:
        if adding:
            platform.add(adding)
        if removing:
            platform.remove(removing)
    mark_synced(conn, audience, pending.adds + pending.removes, clock.now())
    return SyncSummary(
        audience=audience,
        platforms=[p.name for p in platforms],
        added=len(adding),
        removed=len(removing),
    )
