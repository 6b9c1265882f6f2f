"""What on-site messages to show a visitor on a page: rules, not journey steps
(docs/retargeting.md, section on-site messages).

- **recommendations** (a product page with a known product): "people who viewed this then
  bought" (cross-sell by lift, as `reengage recommend`), filled up with up-sells in the same
  category; rendered into the element the shop marks. Part of the page, not an interruption:
  not counted toward the cap.
- **exit_intent** (any page, shown by the snippet when the pointer leaves through the top): a
  reminder of the cart when the visitor has products in it, else on a product page a down-sell
  to a cheaper alternative in the same category; nothing when there is neither.
- **welcome_back** (any page): a returning lapsed customer, lifecycle at_risk, inactive or lost
  in their latest scores.

exit_intent and welcome_back interrupt: at most one of them per page (welcome_back first),
each at most once per browser session (the snippet keeps that), and together no more often than
`frequency_caps.onsite` (default DEFAULT_CAP), counted from the recorded `onsite_impression`
events of the visitor: every anonymous id stitched to their contact and their customer id.
On-site messages do not count toward the `all` cap of the sent messages, nor do quiet hours or
the purchase cooldown apply (the visitor is on the site); a contact who refused the on-site
channel for marketing (`consents`, channel onsite) gets none. Consent to tracking is the
snippet's: it asks for nothing before it.

Headlines follow the contact's style (neutral when unknown) in the page's language, else the
contact's, else the home's (onsite/copy.yaml).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml
from sqlalchemy import Connection, Engine, func, select

from reengage.channels.caps import Cap, Counted, caps_for, is_full
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts import reader
from reengage.facts.kinds import KINDS
from reengage.facts.layout import all_part_files
from reengage.messages.intents import VARIANTS
from reengage.state.contacts import contact_ids_by_customer, current_consent, identity_owners
from reengage.state.schema import contacts, identities, products, scores

PLACEMENTS = ("recommendations", "exit_intent", "welcome_back")
INTERRUPTING = ("exit_intent", "welcome_back")  # counted toward the cap
CHANNEL = "onsite"
DEFAULT_CAP: dict[str, int] = {"day": 1, "week": 3}
LAPSED = ("at_risk", "inactive", "lost")
LANGUAGES = ("en", "it", "fr")
RECOMMENDED = 4  # products in the recommendations block
OFFERED = 2  # products in an exit-intent message
CART_DAYS = 14  # add_to_cart events older than this are not a cart any more
WEEK = timedelta(days=7)
COPY = Path(__file__).parent / "copy.yaml"


@dataclass(frozen=True)
class Visitor:
    """Who asks, and where: the snippet's cookie id, a customer id when the page knows it."""

    anonymous_id: str | None
    customer_id: str | None = None
    page: str = "other"  # "product" or any other kind of page
    product_id: str | None = None
    language: str | None = None  # the page's


@dataclass(frozen=True)
class Offer:
    product_id: str
    title: str | None
    url: str | None
    image_url: str | None
    price: float | None
    currency: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "title": self.title,
            "url": self.url,
            "image_url": self.image_url,
            "price": self.price,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class Placement:
    placement: str  # one of PLACEMENTS
    kind: str  # cross_sell, up_sell, down_sell, cart or welcome_back
    style: str  # the copy variant: a style or neutral
    language: str
    headline: str
    products: tuple[Offer, ...] = ()

    @property
    def variant(self) -> str:
        """What the impressions and clicks record as properties.variant: kind.style."""
        return f"{self.kind}.{self.style}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "placement": self.placement,
            "variant": self.variant,
            "kind": self.kind,
            "style": self.style,
            "language": self.language,
            "headline": self.headline,
            "products": [p.as_dict() for p in self.products],
        }


@dataclass
class Known:
    """What the state store says about the visitor."""

    contact_id: int | None = None
    customer_id: str | None = None
    anonymous_ids: list[str] = field(default_factory=list)
    language: str | None = None
    style: str | None = None
    lifecycle: str | None = None
    refused: bool = False  # the on-site channel refused for marketing


@functools.cache
def copy() -> dict[str, Any]:
    loaded = yaml.safe_load(COPY.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def headline(kind: str, style: str, language: str) -> str:
    texts = copy()[kind]
    by_language = texts.get(style) or texts["neutral"]
    return str(by_language.get(language) or by_language["en"])


def close_label(language: str) -> str:
    labels = copy()["close"]
    return str(labels.get(language) or labels["en"])


def onsite_caps(settings: Settings) -> list[Cap]:
    """The caps of the interrupting placements: `frequency_caps.onsite`, else DEFAULT_CAP."""
    limits = settings.frequency_caps.get(CHANNEL) or DEFAULT_CAP
    return [c for c in caps_for(CHANNEL, {CHANNEL: limits}) if c.scope == CHANNEL]


# ---- the state store ---------------------------------------------------------------------------


def known(conn: Connection, visitor: Visitor) -> Known:
    found = Known(customer_id=visitor.customer_id)
    contact_id = None
    if visitor.customer_id:
        contact_id = contact_ids_by_customer(conn, [visitor.customer_id]).get(visitor.customer_id)
    if contact_id is None and visitor.anonymous_id:
        owners = identity_owners(conn, "anonymous_id", [visitor.anonymous_id])
        contact_id = owners.get(visitor.anonymous_id)
    if visitor.anonymous_id:
        found.anonymous_ids.append(visitor.anonymous_id)
    if contact_id is None:
        return found
    found.contact_id = contact_id
    row = conn.execute(
        select(contacts.c.customer_id, contacts.c.language).where(contacts.c.id == contact_id)
    ).first()
    if row is not None:
        found.customer_id = row.customer_id or found.customer_id
        found.language = row.language
    stitched = conn.execute(
        select(identities.c.value).where(
            identities.c.contact_id == contact_id, identities.c.kind == "anonymous_id"
        )
    ).scalars()
    found.anonymous_ids = sorted({*found.anonymous_ids, *stitched})
    latest = conn.execute(
        select(scores.c.style, scores.c.lifecycle)
        .where(scores.c.contact_id == contact_id)
        .order_by(scores.c.as_of.desc())
        .limit(1)
    ).first()
    if latest is not None:
        found.style, found.lifecycle = latest.style, latest.lifecycle
    found.refused = current_consent(conn, contact_id, CHANNEL, "marketing") is False
    return found


def offers(conn: Connection, ids: Sequence[str]) -> list[Offer]:
    """The products in state, in the order asked, the ones out of stock or unknown left out."""
    if not ids:
        return []
    rows = conn.execute(
        select(products).where(products.c.product_id.in_(list(ids)), products.c.in_stock)
    ).all()
    by_id = {
        r.product_id: Offer(
            r.product_id,
            r.title,
            r.url,
            r.image_url,
            None if r.price is None else float(r.price),
            r.currency,
        )
        for r in rows
    }
    return [by_id[i] for i in ids if i in by_id]


# ---- the facts ---------------------------------------------------------------------------------

_RECOMMENDED: dict[tuple[Any, ...], pa.Table] = {}


def _recommended_key(settings: Settings, engine: Engine, now: datetime) -> tuple[Any, ...]:
    """What the per-product table depends on: the day, the order facts' files, the catalogue."""
    files = all_part_files(settings.facts_path, KINDS["orders"])
    newest = max((f.stat().st_mtime_ns for f in files), default=0)
    with engine.connect() as conn:
        shelf = conn.execute(select(func.count(), func.max(products.c.updated_at))).one()
    day = as_utc(now).date()
    return (str(settings.facts_path), day, len(files), newest, *shelf)


def recommended(
    settings: Settings, engine: Engine, con: duckdb.DuckDBPyConnection, now: datetime
) -> pa.Table:
    """product_id, kind, rank, other_id for every product (reengage.analytics.recommend),
    computed again when the orders or the catalogue change, and daily."""
    import ibis

    from reengage.analytics import recommend
    from reengage.analytics.scoring import catalogue

    key = _recommended_key(settings, engine, now)
    if key not in _RECOMMENDED:
        facts = ibis.duckdb.from_connection(con)
        known_products = ibis.memtable(catalogue(engine))
        table = recommend.for_products(known_products, facts.table("orders"), now, RECOMMENDED)
        _RECOMMENDED.clear()
        _RECOMMENDED[key] = table.to_pyarrow()
    return _RECOMMENDED[key]


def for_product(table: pa.Table, product_id: str, kind: str) -> list[str]:
    rows = [r for r in table.to_pylist() if r["product_id"] == product_id and r["kind"] == kind]
    return [r["other_id"] for r in sorted(rows, key=lambda r: r["rank"])]


def _who(visitor_ids: Sequence[str], customer_id: str | None) -> dict[str, Any]:
    return {"anon": list(visitor_ids) or [""], "cid": customer_id or ""}


def shown(
    con: duckdb.DuckDBPyConnection,
    anonymous_ids: Sequence[str],
    customer_id: str | None,
    now: datetime,
) -> list[Counted]:
    """The interrupting on-site messages recorded for the visitor in the week before `now`."""
    rows = con.execute(
        """SELECT occurred_at FROM events
           WHERE type = 'onsite_impression'
             AND json_extract_string(properties, '$.placement') IN ('exit_intent', 'welcome_back')
             AND (customer_id = $cid OR list_contains($anon, anonymous_id))
             AND occurred_at > $since""",
        {**_who(anonymous_ids, customer_id), "since": as_utc(now) - WEEK},
    ).fetchall()
    return [Counted(None, CHANNEL, as_utc(at)) for (at,) in rows]


def cart(
    con: duckdb.DuckDBPyConnection,
    anonymous_ids: Sequence[str],
    customer_id: str | None,
    now: datetime,
) -> list[str]:
    """The products the visitor put in the cart in the last CART_DAYS and did not take out,
    nor order since: the latest added first."""
    since = as_utc(now) - timedelta(days=CART_DAYS)
    ordered = con.execute(
        "SELECT max(ordered_at) FROM orders WHERE customer_id = $cid",
        {"cid": customer_id or ""},
    ).fetchone()
    if ordered is not None and ordered[0] is not None:
        since = max(since, as_utc(ordered[0]))
    rows = con.execute(
        """SELECT product_id, sum(CASE type WHEN 'add_to_cart' THEN 1 ELSE -1 END),
                  max(occurred_at)
           FROM events
           WHERE type IN ('add_to_cart', 'remove_from_cart') AND product_id IS NOT NULL
             AND (customer_id = $cid OR list_contains($anon, anonymous_id))
             AND occurred_at > $since
           GROUP BY product_id HAVING sum(CASE type WHEN 'add_to_cart' THEN 1 ELSE -1 END) > 0
           ORDER BY 3 DESC, 1""",
        {**_who(anonymous_ids, customer_id), "since": since},
    ).fetchall()
    return [str(r[0]) for r in rows]


# ---- the decision ------------------------------------------------------------------------------


def _language(settings: Settings, visitor: Visitor, found: Known) -> str:
    for wanted in (visitor.language, found.language, settings.language):
        short = (wanted or "").split("-")[0].lower()
        if short in LANGUAGES:
            return short
    return "en"


def decide(settings: Settings, engine: Engine, visitor: Visitor, now: datetime) -> list[Placement]:
    """The placements for this visitor on this page, at most one of them interrupting."""
    if not visitor.anonymous_id and not visitor.customer_id:
        return []
    with engine.connect() as conn:
        found = known(conn, visitor)
    if found.refused:
        return []
    style = found.style if found.style in VARIANTS else "neutral"
    language = _language(settings, visitor, found)

    def placement(name: str, kind: str, offered: Sequence[Offer] = ()) -> Placement:
        text = headline(kind, style, language)
        return Placement(name, kind, style, language, text, tuple(offered))

    con = reader.connect(settings.facts_path)
    try:
        table = None
        placements: list[Placement] = []
        product = visitor.product_id if visitor.page == "product" else None
        if product:
            table = recommended(settings, engine, con, now)
            cross = for_product(table, product, "cross_sell")
            up = for_product(table, product, "up_sell")
            ids = list(dict.fromkeys([*cross, *up]))[:RECOMMENDED]
            with engine.connect() as conn:
                picked = offers(conn, ids)
            if picked:
                kind = "cross_sell" if picked[0].product_id in cross else "up_sell"
                placements.append(placement("recommendations", kind, picked))
        counted = shown(con, found.anonymous_ids, found.customer_id, now)
        if any(is_full(cap, counted, now, settings.zone) for cap in onsite_caps(settings)):
            return placements
        if found.lifecycle in LAPSED:
            placements.append(placement("welcome_back", "welcome_back"))
            return placements
        in_cart = cart(con, found.anonymous_ids, found.customer_id, now)
        with engine.connect() as conn:
            reminded = offers(conn, in_cart[:OFFERED])
            if reminded:
                placements.append(placement("exit_intent", "cart", reminded))
            elif product and table is not None:
                cheaper = offers(conn, for_product(table, product, "down_sell")[:OFFERED])
                if cheaper:
                    placements.append(placement("exit_intent", "down_sell", cheaper))
    finally:
        con.close()
    return placements
