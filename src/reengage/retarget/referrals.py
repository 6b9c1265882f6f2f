"""Referral codes and share links: one code per customer, reusable by any friend.

An order whose coupon code is a customer's referral code (in any case) counts as a referral
of that customer when it is valid (not cancelled or refunded) and not their own. The share
link is the shop's address with `?ref=CODE` and utm tags (channel `referral`); the shop's
checkout is expected to take the code from there (or the friend types it)."""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ConfigError, InputError
from reengage.facts import reader
from reengage.journeys.entries import valid_orders
from reengage.measure.utm import Origin, tag, tags
from reengage.state.schema import contacts, referral_codes

FALLBACK = "FRIEND"
LETTERS = 6
JOURNEY = "advocacy"


@dataclass(frozen=True)
class Referral:
    order_id: str
    customer_id: str | None
    ordered_at: datetime
    value: float


@dataclass
class Referrals:
    code: str
    contact_id: int
    customer_id: str | None
    orders: list[Referral] = field(default_factory=list)

    @property
    def revenue(self) -> float:
        return round(sum(o.value for o in self.orders), 2)


def _stem(first_name: str | None) -> str:
    """The first name's letters, unaccented and upper case (at most LETTERS)."""
    plain = unicodedata.normalize("NFKD", first_name or "")
    letters = "".join(c for c in plain if c.isascii() and c.isalpha()).upper()
    return letters[:LETTERS] or FALLBACK


def _existing(engine: Engine, contact_id: int) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(
            select(referral_codes.c.code).where(referral_codes.c.contact_id == contact_id)
        ).scalar()
    return None if found is None else str(found)


def existing_code(engine: Engine, contact_id: int) -> str | None:
    """The contact's code if they have one (never makes one)."""
    return _existing(engine, contact_id)


def code_for(engine: Engine, contact_id: int, clock: Clock) -> str:
    """The contact's referral code, made on first use: the first name's letters and random
    digits (e.g. ANNA4821). The same code every time; unique across contacts."""
    found = _existing(engine, contact_id)
    if found is not None:
        return found
    with engine.connect() as conn:
        first = conn.execute(
            select(contacts.c.first_name).where(contacts.c.id == contact_id)
        ).first()
    if first is None:
        raise InputError(f"no contact {contact_id}")
    stem = _stem(first.first_name)
    for attempt in range(30):
        digits = 4 if attempt < 10 else 6 if attempt < 20 else 8
        code = stem + "".join(str(secrets.randbelow(10)) for _ in range(digits))
        try:
            with engine.begin() as conn:
                conn.execute(
                    referral_codes.insert().values(
                        code=code, contact_id=contact_id, created_at=clock.now()
                    )
                )
            return code
        except IntegrityError:
            # the code is taken, or another process gave this contact one meanwhile
            found = _existing(engine, contact_id)
            if found is not None:
                return found
    raise RuntimeError("could not find a free referral code")  # pragma: no cover


def share_link(settings: Settings, code: str) -> str:
    """The shop's address with `?ref=CODE` and the referral utm tags."""
    if not settings.shop_url:
        raise ConfigError("share links need the shop's address: set shop_url")
    parts = urlsplit(settings.shop_url)
    query = parts.query + ("&" if parts.query else "") + urlencode({"ref": code})
    url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))
    return tag(url, tags(settings.utm, Origin(channel="referral", journey=JOURNEY)))


def _codes(engine: Engine, contact_id: int | None) -> list[Any]:
    r, c = referral_codes, contacts
    statement = (
        select(r.c.code, r.c.contact_id, c.c.customer_id)
        .join(c, c.c.id == r.c.contact_id)
        .order_by(r.c.contact_id)
    )
    if contact_id is not None:
        statement = statement.where(r.c.contact_id == contact_id)
    with engine.connect() as conn:
        return list(conn.execute(statement).all())


def _collect(settings: Settings, codes: list[Any]) -> list[Referrals]:
    found = {
        str(row.code).upper(): Referrals(str(row.code), int(row.contact_id), row.customer_id)
        for row in codes
    }
    if not found:
        return []
    con = reader.connect(settings.facts_path)
    try:
        rows = con.execute(
            f"""WITH coded AS (
                  SELECT order_id, upper(min(coupon_code)) AS code FROM orders
                  WHERE list_contains($codes, upper(coupon_code)) GROUP BY order_id),
                v AS ({valid_orders("order_id IN (SELECT order_id FROM coded)")})
                SELECT coded.code, v.order_id, v.customer_id, v.ordered_at, v.value
                FROM v JOIN coded USING (order_id) ORDER BY v.ordered_at, v.order_id""",
            {"codes": list(found)},
        ).fetchall()
    finally:
        con.close()
    for code, order_id, customer_id, ordered_at, value in rows:
        owner = found[code]
        if customer_id is not None and customer_id == owner.customer_id:
            continue  # the referrer's own order
        owner.orders.append(
            Referral(str(order_id), customer_id, ordered_at, round(float(value or 0), 2))
        )
    return list(found.values())


def referrals_of(settings: Settings, engine: Engine, contact_id: int) -> Referrals | None:
    """The orders the contact's code brought; None when they have no code."""
    found = _collect(settings, _codes(engine, contact_id))
    return found[0] if found else None


def all_referrals(settings: Settings, engine: Engine) -> list[Referrals]:
    """Every code and the orders it brought, by contact."""
    return _collect(settings, _codes(engine, None))


def contact_block(settings: Settings, engine: Engine, contact_id: int) -> dict[str, Any] | None:
    """What the dashboard's contact page shows: the code, the share link (when shop_url is
    set) and the orders brought; None when the contact has no code."""
    found = referrals_of(settings, engine, contact_id)
    if found is None:
        return None
    return {
        "code": found.code,
        "share_link": share_link(settings, found.code) if settings.shop_url else None,
        "orders": found.orders,
        "revenue": found.revenue,
        "currency": settings.currency,
    }
