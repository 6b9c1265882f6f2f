"""Who a batch of claimed rows goes to: the contacts, and the address each row is sent to
(email, E.164 phone, the newest push subscription), checked against the suppressions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Engine, select

from reengage.channels.sms import e164
from reengage.messages.batch_contexts import Person
from reengage.messages.claims import Claimed
from reengage.state.contacts import chunks
from reengage.state.schema import contacts, push_subscriptions
from reengage.state.schema import suppressions as suppressions_table
from reengage.suppressions import normalise_address

NO_ADDRESS = "no_address"


def people(engine: Engine, ids: Sequence[int]) -> dict[int, Person]:
    found: dict[int, Person] = {}
    with engine.connect() as conn:
        for part in chunks(ids):
            for c in conn.execute(
                select(
                    contacts.c.id,
                    contacts.c.customer_id,
                    contacts.c.email,
                    contacts.c.phone,
                    contacts.c.country,
                    contacts.c.first_name,
                    contacts.c.timezone,
                ).where(contacts.c.id.in_(part))
            ):
                found[c.id] = Person(
                    c.id, c.customer_id, c.email, c.phone, c.country, c.first_name, c.timezone
                )
    return found


def addresses(
    engine: Engine, rows: Sequence[Claimed], people: Mapping[int, Person]
) -> dict[int, str]:
    """The address of each row (by outbox id), or "!" and why it cannot be sent to."""
    answer: dict[int, str] = {}
    endpoints: dict[int, str] = {}
    push = sorted({r.contact_id for r in rows if r.channel == "push"})
    if push:
        with engine.connect() as conn:
            for part in chunks(push):
                for s in conn.execute(
                    select(push_subscriptions.c.contact_id, push_subscriptions.c.endpoint)
                    .where(
                        push_subscriptions.c.contact_id.in_(part),
                        push_subscriptions.c.revoked_at.is_(None),
                    )
                    .order_by(push_subscriptions.c.id.desc())
                ):
                    endpoints.setdefault(s.contact_id, s.endpoint)
    for r in rows:
        person = people.get(r.contact_id)
        to: str | None = None
        if person is None:
            to = None
        elif r.channel == "email":
            to = (person.email or "").strip() or None
        elif r.channel == "sms":
            to = e164(person.phone, person.country) if person.phone else None
        elif r.channel == "push":
            to = str(r.payload.get("endpoint") or "") or endpoints.get(r.contact_id)
        answer[r.id] = to if to else f"!{NO_ADDRESS}"
    by_channel: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        to = answer[r.id]
        if not to.startswith("!"):
            key = normalise_address(r.channel, to)
            by_channel.setdefault(r.channel, {}).setdefault(key, []).append(r.id)
    with engine.connect() as conn:
        for ch, owners in by_channel.items():
            for batch in chunks(sorted(owners)):
                for s in conn.execute(
                    select(suppressions_table.c.address, suppressions_table.c.reason).where(
                        suppressions_table.c.channel == ch,
                        suppressions_table.c.address.in_(batch),
                    )
                ):
                    for message_id in owners[s.address]:
                        answer[message_id] = f"!suppressed:{s.reason}"
    return answer
