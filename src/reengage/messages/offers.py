"""Discount codes: unique, single-use, issued to one contact, climbing an escalation ladder.

A code is the shop's prefix and ten symbols drawn with `secrets` from an alphabet without the
look-alikes 0/O and 1/I (`OUR-7K3QH-M9XPT`: 50 random bits, so a guessed code is almost
never a live one). The ladder is data: rung 0 is a message without incentive, each higher
rung a bigger one, and a contact climbs one rung at a time: rung n is offered only to a
contact who received rung n-1 in the same intent family within the ladder's window, and never
while an offer of that family is still live. Redemption is found in the imported orders
(`coupon_code`), by `match_redemptions`.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, Engine, select

from reengage.clock import Clock, as_utc
from reengage.config import Home, Settings
from reengage.facts import reader
from reengage.state.db import insert_new
from reengage.state.schema import contacts, messages, offers

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: no 0/O, no 1/I
RANDOM_SYMBOLS = 10  # 50 bits
OFFER_KINDS = ("percent", "amount", "free_shipping")
OFFER_STATUSES = ("issued", "redeemed", "expired")


@dataclass(frozen=True)
class Rung:
    """One step of the ladder. `kind` None is rung 0: the message carries no incentive."""

    level: int
    kind: str | None = None
    value: Decimal = Decimal(0)
    max_discount: Decimal | None = None
    valid_days: float = 7.0

    @property
    def incentive(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class Ladder:
    """The rungs, how recent the rung below must be, and which intents share a ladder."""

    rungs: tuple[Rung, ...]
    window_days: float = 30.0
    # intent -> family; an intent not named here is a family of its own
    families: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]],
        *,
        window_days: float = 30.0,
        families: Mapping[str, str] | None = None,
    ) -> Ladder:
        """A ladder from plain data (as a TOML or YAML file would give it), checked."""
        rungs = []
        for i, row in enumerate(sorted(rows, key=lambda r: int(r["level"]))):
            level, kind = int(row["level"]), row.get("kind")
            if level != i:
                raise ValueError(f"ladder: levels must run 0, 1, 2, ... (found {level} at {i})")
            if (kind is None) != (level == 0):
                raise ValueError("ladder: level 0, and only level 0, is the rung without incentive")
            if kind is not None and kind not in OFFER_KINDS:
                raise ValueError(f"ladder level {level}: kind must be one of {OFFER_KINDS}")
            value = Decimal(str(row.get("value", 0)))
            if kind in ("percent", "amount") and value <= 0:
                raise ValueError(f"ladder level {level}: value must be positive")
            if kind == "percent" and value > 100:
                raise ValueError(f"ladder level {level}: a percent value is at most 100")
            cap = row.get("max_discount")
            valid_days = float(row.get("valid_days", 7))
            if valid_days <= 0:
                raise ValueError(f"ladder level {level}: valid_days must be positive")
            rungs.append(
                Rung(level, kind, value, None if cap is None else Decimal(str(cap)), valid_days)
            )
        if window_days <= 0:
            raise ValueError("ladder: window_days must be positive")
        return cls(tuple(rungs), window_days, dict(families or {}))

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def rung(self, level: int) -> Rung:
        if not 0 <= level <= self.top:
            raise ValueError(f"no rung {level} on the offer ladder (0 to {self.top})")
        return self.rungs[level]

    def family(self, intent: str) -> str:
        return self.families.get(intent, intent)

    def intents_of(self, intent: str) -> list[str]:
        """Every intent in the same family as intent, intent included."""
        family = self.family(intent)
        return sorted({intent, family, *(i for i, f in self.families.items() if f == family)})


DEFAULT_LADDER = Ladder.from_rows(
    [
        {"level": 0},
        {"level": 1, "kind": "percent", "value": 10, "max_discount": 15, "valid_days": 7},
        {"level": 2, "kind": "percent", "value": 15, "max_discount": 25, "valid_days": 7},
    ],
    window_days=30,
    # the reminders are rung 0 of the incentives that follow them (reengage.messages.intents)
    families={
        "cart_reminder": "cart",
        "cart_help": "cart",
        "cart_incentive": "cart",
        "winback_reminder": "winback",
        "winback_incentive": "winback",
    },
)


@dataclass(frozen=True)
class OfferPolicy:
    """What an issued code looks like and which ladder it climbs."""

    ladder: Ladder = DEFAULT_LADDER
    prefix: str = "RE"
    currency: str = "EUR"

    @classmethod
    def for_settings(cls, settings: Settings, ladder: Ladder = DEFAULT_LADDER) -> OfferPolicy:
        return cls(ladder, shop_prefix(settings.shop_name), settings.currency)


@dataclass(frozen=True)
class Offer:
    id: int
    code: str
    contact_id: int
    intent: str
    level: int
    kind: str
    value: Decimal
    max_discount: Decimal | None
    currency: str
    issued_at: datetime
    expires_at: datetime
    message_id: int | None
    status: str
    redeemed_at: datetime | None = None
    order_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Offer:
        m = row._mapping
        return cls(
            id=m["id"],
            code=m["code"],
            contact_id=m["contact_id"],
            intent=m["intent"],
            level=m["level"],
            kind=m["kind"],
            value=Decimal(str(m["value"])),
            max_discount=None if m["max_discount"] is None else Decimal(str(m["max_discount"])),
            currency=m["currency"],
            issued_at=as_utc(m["issued_at"]),
            expires_at=as_utc(m["expires_at"]),
            message_id=m["message_id"],
            status=m["status"],
            redeemed_at=None if m["redeemed_at"] is None else as_utc(m["redeemed_at"]),
            order_id=m["order_id"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in self.__dict__.items()}


def shop_prefix(shop_name: str) -> str:
    """A short, typeable prefix from the shop's name: "Bottega Rossi" -> "BOTTEGA"."""
    ascii_name = unicodedata.normalize("NFKD", shop_name).encode("ascii", "ignore").decode()
    words = [w.upper() for w in re.findall(r"[A-Za-z0-9]+", ascii_name)]
    if not words:
        return "RE"
    prefix = words[0] if len(words[0]) >= 3 else "".join(words)
    return prefix[:8]


def new_code(prefix: str) -> str:
    """A fresh random code: PREFIX-XXXXX-XXXXX."""
    symbols = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    half = RANDOM_SYMBOLS // 2
    body = f"{symbols[:half]}-{symbols[half:]}"
    return f"{prefix}-{body}" if prefix else body


def normalise_code(code: str) -> str:
    """The form codes are compared in: upper case, letters and digits only (shops and people
    write codes with and without dashes, in any case)."""
    return re.sub(r"[^0-9A-Z]", "", code.upper())


def has_received(
    conn: Connection,
    contact_id: int,
    intent: str,
    level: int,
    now: datetime,
    *,
    ladder: Ladder = DEFAULT_LADDER,
    exclude_message: int | None = None,
) -> bool:
    """Whether the contact got rung `level` of intent's family within the ladder's window.

    Rung 0 is any message of the family that was sent (a message with an offer counts: it
    was a contact too) or any offer of the family; a higher rung is an offer of that level.
    """
    since = now - timedelta(days=ladder.window_days)
    intents = ladder.intents_of(intent)
    offered = select(offers.c.id).where(
        offers.c.contact_id == contact_id,
        offers.c.intent.in_(intents),
        offers.c.issued_at >= since,
        offers.c.issued_at <= now,
    )
    if level > 0:
        offered = offered.where(offers.c.level == level)
    if conn.execute(offered.limit(1)).first() is not None:
        return True
    if level > 0:
        return False
    sent = select(messages.c.id).where(
        messages.c.contact_id == contact_id,
        messages.c.intent.in_(intents),
        messages.c.status == "sent",
        messages.c.sent_at >= since,
        messages.c.sent_at <= now,
    )
    if exclude_message is not None:
        sent = sent.where(messages.c.id != exclude_message)
    return conn.execute(sent.limit(1)).first() is not None


def live_offer(
    conn: Connection, contact_id: int, intent: str, now: datetime, ladder: Ladder = DEFAULT_LADDER
) -> Offer | None:
    """The contact's offer of intent's family that can still be used, if any."""
    row = conn.execute(
        select(offers)
        .where(
            offers.c.contact_id == contact_id,
            offers.c.intent.in_(ladder.intents_of(intent)),
            offers.c.status == "issued",
            offers.c.expires_at > now,
        )
        .order_by(offers.c.issued_at.desc())
        .limit(1)
    ).first()
    return None if row is None else Offer.from_row(row)


def highest_level(
    conn: Connection,
    contact_id: int,
    intent: str,
    clock: Clock,
    *,
    policy: OfferPolicy = OfferPolicy(),
    message_id: int | None = None,
) -> int:
    """The highest rung the contact may be given now for intent (0: no incentive)."""
    now = clock.now()
    ladder = policy.ladder
    if live_offer(conn, contact_id, intent, now, ladder) is not None:
        return 0
    for level in range(ladder.top, 0, -1):
        if has_received(
            conn, contact_id, intent, level - 1, now, ladder=ladder, exclude_message=message_id
        ):
            return level
    return 0


def issue_offer(
    conn: Connection,
    contact_id: int,
    intent: str,
    level: int,
    clock: Clock,
    message_id: int | None = None,
    *,
    policy: OfferPolicy = OfferPolicy(),
) -> Offer | None:
    """Issue a code of rung `level` to the contact for intent, or None when the ladder says no:
    rung 0 (no incentive), a live offer of the family already, or rung level-1 not received
    within the window. With a message id, the message row carries the code too.

    Runs in the caller's transaction; the contact's row is locked first, so two issuers for
    one contact cannot both pass the checks (PostgreSQL; SQLite has one writer anyway).
    """
    ladder = policy.ladder
    rung = ladder.rung(level)
    if not rung.incentive:
        return None
    now = clock.now()
    locked = conn.execute(
        select(contacts.c.id).where(contacts.c.id == contact_id).with_for_update()
    ).first()
    if locked is None:
        raise ValueError(f"no contact with id {contact_id}")
    if live_offer(conn, contact_id, intent, now, ladder) is not None:
        return None
    if not has_received(
        conn, contact_id, intent, level - 1, now, ladder=ladder, exclude_message=message_id
    ):
        return None
    assert rung.kind is not None
    issued = Offer(
        id=0,
        code="",
        contact_id=contact_id,
        intent=intent,
        level=level,
        kind=rung.kind,
        value=rung.value,
        max_discount=rung.max_discount,
        currency=policy.currency,
        issued_at=now,
        expires_at=now + timedelta(days=rung.valid_days),
        message_id=message_id,
        status="issued",
    )
    values = {k: v for k, v in issued.__dict__.items() if k not in ("id", "code")}
    for _ in range(5):
        code = new_code(policy.prefix)
        key = insert_new(conn, offers, {"code": code, **values})
        if key is None:  # the code exists already: draw again
            continue
        if message_id is not None:
            conn.execute(
                messages.update().where(messages.c.id == message_id).values(offer_code=code)
            )
        return replace(issued, id=key, code=code)
    raise RuntimeError("could not draw an unused offer code in 5 attempts")


def list_offers(
    engine: Engine, *, status: str | None = None, limit: int | None = None
) -> list[Offer]:
    """Offers, newest first."""
    query = select(offers).order_by(offers.c.issued_at.desc(), offers.c.id.desc())
    if status is not None:
        query = query.where(offers.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [Offer.from_row(r) for r in conn.execute(query)]


@dataclass(frozen=True)
class ForeignUse:
    """An order that used a code issued to someone else (the code leaked or was shared)."""

    code: str
    order_id: str
    ordered_at: datetime


@dataclass
class MatchResult:
    checked: int = 0  # offers not yet redeemed that were looked for in the orders
    redeemed: int = 0
    expired: int = 0
    late: int = 0  # used by their contact, but after the code had expired
    foreign: list[ForeignUse] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "redeemed": self.redeemed,
            "expired": self.expired,
            "late": self.late,
            "foreign": [
                {"code": f.code, "order_id": f.order_id, "ordered_at": f.ordered_at.isoformat()}
                for f in self.foreign
            ],
        }


# One row per order and code it used: the order's customer, first instant and latest status.
_ORDER_CODES = """
    WITH lines AS (
        SELECT order_id, customer_id, ordered_at, status, ingested_at,
               regexp_replace(upper(trim(code)), '[^0-9A-Z]', '', 'g') AS code
        FROM orders, unnest(string_split(coupon_code, ',')) AS t(code)
        WHERE coupon_code IS NOT NULL
    ),
    used AS (
        SELECT order_id, code, any_value(customer_id) AS customer_id,
               min(ordered_at) AS ordered_at, arg_max(status, ingested_at) AS status
        FROM lines WHERE code <> '' GROUP BY order_id, code
    )
    SELECT u.order_id, u.customer_id, u.ordered_at, o.id, o.code AS offer_code, o.status,
           o.customer_id AS owner, o.issued_at, o.expires_at
    FROM used u JOIN __offers o ON u.code = o.norm
    WHERE u.status <> 'cancelled' AND u.ordered_at >= o.issued_at
    ORDER BY u.ordered_at, u.order_id
"""


def match_redemptions(home: Home, engine: Engine, clock: Clock) -> MatchResult:
    """Mark offers redeemed by the imported orders that used them, and expired ones expired.

    An offer is redeemed by the first order (not cancelled) of its own contact that used the
    code between issue and expiry; redeemed_at is that order's instant. An offer marked
    expired is still redeemed if orders imported later show it was used in time. Use of a
    code by another customer is reported, never counted. Safe to run again.
    """
    now = clock.now()
    result = MatchResult()
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                offers.c.id,
                offers.c.code,
                offers.c.status,
                offers.c.issued_at,
                offers.c.expires_at,
                contacts.c.customer_id,
            ).join(contacts, contacts.c.id == offers.c.contact_id)
        ).all()
    redemptions: dict[int, tuple[datetime, str]] = {}
    late: set[int] = set()
    if rows:
        table = pa.table(
            {
                "id": pa.array([r.id for r in rows], pa.int64()),
                "code": pa.array([r.code for r in rows], pa.string()),
                "norm": pa.array([normalise_code(r.code) for r in rows], pa.string()),
                "status": pa.array([r.status for r in rows], pa.string()),
                "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
                "issued_at": pa.array(
                    [as_utc(r.issued_at) for r in rows], pa.timestamp("us", tz="UTC")
                ),
                "expires_at": pa.array(
                    [as_utc(r.expires_at) for r in rows], pa.timestamp("us", tz="UTC")
                ),
            }
        )
        con = reader.connect(home.settings.facts_path)
        try:
            con.register("__offers", table)
            uses = con.sql(_ORDER_CODES).fetchall()
        finally:
            con.close()
        for order_id, customer, ordered_at, offer_id, code, status, owner, _, expires in uses:
            at = as_utc(ordered_at)
            if owner is None or customer != owner:
                result.foreign.append(ForeignUse(code, order_id, at))
            elif status == "redeemed" or offer_id in redemptions:
                continue
            elif at <= as_utc(expires):
                redemptions[offer_id] = (at, order_id)
            else:
                late.add(offer_id)
    result.checked = sum(1 for r in rows if r.status != "redeemed")
    result.late = len(late - set(redemptions))
    with engine.begin() as conn:
        for offer_id, (at, order_id) in redemptions.items():
            result.redeemed += conn.execute(
                offers.update()
                .where(offers.c.id == offer_id, offers.c.status != "redeemed")
                .values(status="redeemed", redeemed_at=at, order_id=order_id)
            ).rowcount
        result.expired = conn.execute(
            offers.update()
            .where(offers.c.status == "issued", offers.c.expires_at <= now)
            .values(status="expired")
        ).rowcount
    return result
