"""Server-side conversion events: the queue of what Meta and Google should be told.

`queue_conversions` reads the facts of a stretch of time and records one `conversion_sends`
row per event and platform (unique on platform and event id, inserted ON CONFLICT DO
NOTHING: a re-import, a webhook delivered twice or a second run queue nothing more):

- **Purchase**: an order with a customer id whose latest status is paid or fulfilled.
  event_id `order-<order_id>` (the browser's Meta pixel must send the same `eventID`);
  Google's `orderId` is the order id itself.
- **AddToCart**: an `add_to_cart` event of a known contact; event_id the event's own id.
- **Lead**: a `newsletter_signup` event of a known contact; event_id the event's own id.
  (`identify` is not a lead: it is also every login.)

Meta gets all three (when `meta_pixel_id` and `meta_access_token` are set); Google's
enhanced conversions get purchases only (when `google_ads_conversion_action_id` and
`google_ads_customer_id` are set).

Consent is the ad audiences' rule (docs/audiences.md): the contact's current `ads` /
`marketing` consent is granted. Without it, the row is `skipped` with the reason, and no
payload: it is never sent. The payload of a queued row is exactly the event the platform
receives, identifiers normalised and SHA-256 hashed by `reengage.channels.ads`: no plain
address, phone or name is stored or sent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from reengage.channels.ads import Person, google_identifiers, meta_values, sha256_hex
from reengage.channels.audiences import ads_consent, people
from reengage.clock import Clock, as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.state.contacts import chunks, contact_ids_by_customer, identity_owners
from reengage.state.db import insert_missing
from reengage.state.schema import conversion_sends

PURCHASE = "Purchase"
ADD_TO_CART = "AddToCart"
LEAD = "Lead"
EVENT_TYPES = {"add_to_cart": ADD_TO_CART, "newsletter_signup": LEAD}
PURCHASED = ("paid", "fulfilled")
META = "meta"
GOOGLE = "google"
DEFAULT_WINDOW = timedelta(days=7)  # Meta refuses events older than 7 days
NO_CONSENT = "no ads consent (channel ads, purpose marketing)"
UNMATCHABLE = "nothing to match on (no email or phone)"
META_KEYS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country")  # META_SCHEMA order


def purchase_event_id(order_id: str) -> str:
    """The event id of an order's Purchase: what the shop's Meta pixel sends as `eventID`."""
    return f"order-{order_id}"


def meta_platform(settings: Settings) -> bool:
    return bool(settings.meta_pixel_id and settings.meta_access_token)


def google_platform(settings: Settings) -> bool:
    return bool(settings.google_ads_conversion_action_id and settings.google_ads_customer_id)


def platforms(settings: Settings) -> list[str]:
    """The platforms the settings configure for conversion events."""
    configured = ((META, meta_platform(settings)), (GOOGLE, google_platform(settings)))
    return [name for name, on in configured if on]


@dataclass(frozen=True)
class Conversion:
    """One event as reengage saw it, before any platform's format."""

    event_name: str
    event_id: str
    customer_id: str | None
    contact_id: int | None
    occurred_at: datetime
    order_id: str | None = None
    value: float | None = None
    currency: str | None = None
    contents: list[dict[str, Any]] = field(default_factory=list)
    source_url: str | None = None
    user_agent: str | None = None


# -- the events in the facts --------------------------------------------------------------


def _purchases(con: Any, settings: Settings, since: datetime, until: datetime) -> list[Any]:
    source = reader.between(settings.facts_path, "orders", since, until, con)
    return list(
        con.execute(
            f"""
            WITH lines AS (
              SELECT * FROM {source} AS o
              WHERE ordered_at >= $since AND ordered_at <= $until
                AND customer_id IS NOT NULL AND customer_id <> ''),
            g AS (
              SELECT order_id, status, max(customer_id) AS customer_id,
                     min(ordered_at) AS ordered_at, max(ingested_at) AS ingested_at,
                     sum(quantity * unit_price - coalesce(discount, 0)) AS value,
                     max(currency) AS currency,
                     list({{'id': product_id, 'quantity': quantity, 'item_price': unit_price}}
                          ORDER BY product_id) AS contents
              FROM lines GROUP BY order_id, status),
            l AS (
              SELECT order_id,
                     arg_max({{'status': status, 'customer_id': customer_id,
                              'ordered_at': ordered_at, 'value': value,
                              'currency': currency, 'contents': contents}}, ingested_at) AS o
              FROM g GROUP BY order_id)
            SELECT order_id, o.customer_id, o.ordered_at, o.value, o.currency, o.contents
            FROM l WHERE o.status IN {PURCHASED} ORDER BY o.ordered_at, order_id""",
            {"since": since, "until": until},
        ).fetchall()
    )


def _events(con: Any, settings: Settings, since: datetime, until: datetime) -> list[Any]:
    source = reader.between(settings.facts_path, "events", since, until, con)
    kinds = tuple(EVENT_TYPES)
    return list(
        con.execute(
            f"""
            SELECT event_id, type, customer_id, anonymous_id, occurred_at, product_id,
                   properties
            FROM {source} AS e
            WHERE occurred_at >= $since AND occurred_at <= $until AND type IN {kinds}
            ORDER BY occurred_at, event_id""",
            {"since": since, "until": until},
        ).fetchall()
    )


def _properties(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value else None


def find_conversions(
    settings: Settings, conn: Connection, since: datetime, until: datetime
) -> list[Conversion]:
    """The purchases, add-to-carts and leads of known people in [since, until]."""
    con = reader.connect(settings.facts_path)
    try:
        orders = _purchases(con, settings, since, until)
        events = _events(con, settings, since, until)
    finally:
        con.close()
    customers = contact_ids_by_customer(
        conn,
        sorted({r[1] for r in orders} | {r[2] for r in events if r[2]}),
    )
    cookies = identity_owners(conn, "anonymous_id", sorted({r[3] for r in events if r[3]}))
    found: list[Conversion] = []
    for order_id, customer_id, at, value, currency, contents in orders:
        found.append(
            Conversion(
                event_name=PURCHASE,
                event_id=purchase_event_id(str(order_id)),
                customer_id=customer_id,
                contact_id=customers.get(customer_id),
                occurred_at=as_utc(at),
                order_id=str(order_id),
                value=round(float(value), 2) if value is not None else None,
                currency=currency or settings.currency,
                contents=[
                    {
                        "id": c["id"],
                        "quantity": int(c["quantity"]),
                        "item_price": float(c["item_price"]),
                    }
                    for c in contents
                ],
            )
        )
    for event_id, kind, customer_id, anonymous_id, at, product_id, properties in events:
        contact = customers.get(customer_id) if customer_id else None
        if contact is None and anonymous_id:
            contact = cookies.get(anonymous_id)
        if contact is None:
            continue  # nobody known: nothing to match on
        extra = _properties(properties)
        found.append(
            Conversion(
                event_name=EVENT_TYPES[kind],
                event_id=str(event_id),
                customer_id=customer_id,
                contact_id=contact,
                occurred_at=as_utc(at),
                contents=[{"id": product_id, "quantity": 1}] if product_id else [],
                source_url=_text(extra.get("url")),
                user_agent=_text(extra.get("user_agent")),
            )
        )
    return found


# -- the platforms' formats ---------------------------------------------------------------


def meta_user_data(person: Person, customer_id: str | None) -> dict[str, Any]:
    """Meta's `user_data`: every identifier normalised as Meta documents, then hashed;
    only what is known. em, ph and external_id as lists, the others as strings."""
    data: dict[str, Any] = {}
    for key, value in zip(META_KEYS, meta_values(person), strict=True):
        if value:
            data[key] = [sha256_hex(value)] if key in ("em", "ph") else sha256_hex(value)
    if customer_id:
        data["external_id"] = [sha256_hex(customer_id)]
    return data


def meta_event(conversion: Conversion, person: Person) -> dict[str, Any] | None:
    """The Conversions API server event, or None when the person has nothing to match on."""
    user_data = meta_user_data(person, conversion.customer_id)
    if not ({"em", "ph"} & user_data.keys()):
        return None
    if conversion.user_agent:
        user_data["client_user_agent"] = conversion.user_agent
    event: dict[str, Any] = {
        "event_name": conversion.event_name,
        "event_time": int(conversion.occurred_at.timestamp()),
        "event_id": conversion.event_id,
        "action_source": "website",
        "user_data": user_data,
    }
    if conversion.source_url:
        event["event_source_url"] = conversion.source_url
    custom: dict[str, Any] = {}
    if conversion.value is not None:
        custom["currency"] = conversion.currency
        custom["value"] = conversion.value
    if conversion.contents:
        custom["content_type"] = "product"
        custom["content_ids"] = [c["id"] for c in conversion.contents]
        custom["contents"] = conversion.contents
        custom["num_items"] = sum(c["quantity"] for c in conversion.contents)
    if conversion.order_id:
        custom["order_id"] = conversion.order_id
    if custom:
        event["custom_data"] = custom
    return event


def google_datetime(moment: datetime) -> str:
    """`yyyy-mm-dd hh:mm:ss+hh:mm`, as ClickConversion.conversion_date_time wants it."""
    text = as_utc(moment).strftime("%Y-%m-%d %H:%M:%S%z")  # ...+0000
    return f"{text[:-2]}:{text[-2:]}"


def google_conversion(
    conversion: Conversion, person: Person, settings: Settings
) -> dict[str, Any] | None:
    """A ClickConversion (REST JSON) for enhanced conversions, or None when the person has
    no email or phone. The people sent all allow ads, so adUserData consent is GRANTED."""
    ids = google_identifiers(person)
    identifiers: list[dict[str, Any]] = []
    if ids.hashed_email:
        identifiers.append({"hashedEmail": ids.hashed_email, "userIdentifierSource": "FIRST_PARTY"})
    if ids.hashed_phone_number:
        identifiers.append(
            {"hashedPhoneNumber": ids.hashed_phone_number, "userIdentifierSource": "FIRST_PARTY"}
        )
    if not identifiers:
        return None
    customer = str(settings.google_ads_customer_id).replace("-", "")
    body: dict[str, Any] = {
        "conversionAction": (
            f"customers/{customer}/conversionActions/{settings.google_ads_conversion_action_id}"
        ),
        "conversionDateTime": google_datetime(conversion.occurred_at),
        "orderId": conversion.order_id,
        "userIdentifiers": identifiers,
        "consent": {"adUserData": "GRANTED"},
    }
    if conversion.value is not None:
        body["conversionValue"] = conversion.value
        body["currencyCode"] = conversion.currency
    return body


# -- the queue ----------------------------------------------------------------------------


@dataclass
class QueueSummary:
    since: datetime
    until: datetime
    queued: int = 0
    skipped: int = 0
    known: int = 0  # already in the queue from an earlier run
    by_platform: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"], out["until"] = self.since.isoformat(), self.until.isoformat()
        return out


def _existing(conn: Connection, platform: str, event_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(event_ids):
        found.update(
            conn.execute(
                select(conversion_sends.c.event_id).where(
                    conversion_sends.c.platform == platform,
                    conversion_sends.c.event_id.in_(part),
                )
            ).scalars()
        )
    return found


def queue_conversions(
    settings: Settings,
    engine: Engine,
    since: datetime | None,
    until: datetime | None,
    clock: Clock,
) -> QueueSummary:
    """Queue the conversion events of [since, until] (default: the last 7 days) for every
    configured platform: one row per platform and event, never twice."""
    now = as_utc(clock.now())
    high = as_utc(until) if until else now
    low = as_utc(since) if since else high - DEFAULT_WINDOW
    summary = QueueSummary(since=low, until=high)
    targets = platforms(settings)
    if not targets:
        return summary
    with engine.begin() as conn:
        found = find_conversions(settings, conn, low, high)
        contact_ids = sorted({c.contact_id for c in found if c.contact_id is not None})
        consent = ads_consent(conn, contact_ids)
        profiles = people(conn, contact_ids)
        for platform in targets:
            wanted = [c for c in found if platform == META or c.event_name == PURCHASE]
            known = _existing(conn, platform, [c.event_id for c in wanted])
            rows: list[dict[str, Any]] = []
            for c in wanted:
                if c.event_id in known:
                    summary.known += 1
                    continue
                row: dict[str, Any] = {
                    "platform": platform,
                    "event_name": c.event_name,
                    "event_id": c.event_id,
                    "contact_id": c.contact_id,
                    "occurred_at": c.occurred_at,
                    "status": "queued",
                    "reason": None,
                    "attempts": 0,
                    "payload": {},
                    "created_at": now,
                    "sent_at": None,
                }
                allowed = c.contact_id in consent and consent[c.contact_id].allowed
                person = profiles.get(c.contact_id) if c.contact_id is not None else None
                payload = None
                if allowed and person is not None:
                    payload = (
                        meta_event(c, person)
                        if platform == META
                        else google_conversion(c, person, settings)
                    )
                if not allowed or payload is None:
                    row["status"], row["reason"] = "skipped", UNMATCHABLE if allowed else NO_CONSENT
                    summary.skipped += 1
                else:
                    row["payload"] = payload
                    summary.queued += 1
                    summary.by_platform[platform] = summary.by_platform.get(platform, 0) + 1
                rows.append(row)
            for part in chunks(rows):
                insert_missing(conn, conversion_sends, part)
    return summary
