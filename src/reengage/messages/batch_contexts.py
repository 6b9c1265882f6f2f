"""The render contexts of a batch of outbox rows, built with a few queries for the whole
batch (contacts, latest scores, products, offers, last orders and views) rather than one
`messages.context.for_contact` call per message; the delivery run uses them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, func, select

from reengage.clock import Clock, as_utc
from reengage.config import Home
from reengage.messages.claims import Claimed
from reengage.messages.context import (
    VARIABLES,
    CartItem,
    Context,
    Product,
    _known_zone,
    _last_order,
    _offer,
    _shop_url,
    format_datetime,
    format_money,
)
from reengage.messages.intents import INTENTS
from reengage.state.contacts import chunks
from reengage.state.schema import offers, products, scores

RECOMMENDATIONS = 4  # products in the recommendations block, as `for_contact`
# the recommendation tables last computed, by what they depend on (`_recommendations_key`)
_RECOMMENDED: dict[tuple[Any, ...], tuple[pa.Table, pa.Table]] = {}


@dataclass(frozen=True)
class Person:
    id: int
    customer_id: str | None
    email: str | None
    phone: str | None
    country: str | None
    first_name: str | None
    timezone: str | None


class BatchContexts:
    """Builds the contexts of a batch of rows, a few queries per batch (never one per
    contact). Recommendations are computed once per run, for every customer, on first need."""

    def __init__(
        self,
        home: Home,
        engine: Engine,
        clock: Clock,
        k: int = RECOMMENDATIONS,
        facts: Any = None,
    ):
        self.home = home
        self.engine = engine
        self.clock = clock
        self.k = k
        settings = home.settings
        self.settings = settings
        with engine.connect() as conn:
            self.shop_url = settings.shop_url or _shop_url(conn, settings.public_url)
        self.support_email = (
            settings.support_email or parseaddr(settings.mail_from)[1] or settings.mail_from
        )
        self.help_url = settings.help_url or f"{self.shop_url}/help"
        self._con: Any = None
        self._shared = facts  # a facts connection of the caller's (a replay's), or None
        self._by_contact: pa.Table | None = None
        self._by_product: pa.Table | None = None
        self._started = clock.now()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    # facts ------------------------------------------------------------------------------

    def _duckdb(self) -> Any:
        from reengage.facts import reader

        if self._con is None:
            if self._shared is not None:
                self._con = self._shared.cursor()  # the same database, its own handle
            else:
                self._con = reader.connect(self.settings.facts_path, threads=1)
        return self._con

    def _facts(self) -> Any:
        import ibis

        return ibis.duckdb.from_connection(self._duckdb())

    def _orders_and_views(
        self, customers: Sequence[str], now: datetime
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
        """The lines of each customer's last valid order, and the last product each viewed:
        two DuckDB queries for the batch (SQL written out: compiling an Ibis expression per
        batch would cost more than running it)."""
        from reengage.analytics.features import VOID_STATUSES

        if not customers:
            return {}, {}
        con = self._duckdb()
        con.register("rg_batch", pa.table({"customer_id": pa.array(list(customers), pa.string())}))
        try:
            last = _fetch(con, _LAST_ORDERS, {"now": now, "void": list(VOID_STATUSES)})
            seen = _fetch(con, _LAST_VIEWS, {"now": now})
        finally:
            con.unregister("rg_batch")
        lines: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(last, key=lambda r: (r["customer_id"], r["product_id"])):
            lines.setdefault(row["customer_id"], []).append(row)
        viewed = {r["customer_id"]: r["product_id"] for r in seen if r["product_id"]}
        return lines, viewed

    def _recommendations(self, kind: str, keys: Iterable[str]) -> dict[str, list[tuple[Any, ...]]]:
        """(rank, kind, product) lists by customer (kind "contact") or product ("product"),
        from tables computed once per run, as `reengage recommend` computes them."""
        import ibis

        from reengage.analytics import recommend
        from reengage.analytics.scoring import catalogue

        wanted = sorted(set(keys))
        if not wanted:
            return {}
        if self._by_contact is None or self._by_product is None:
            key = self._recommendations_key()
            if key in _RECOMMENDED:
                self._by_contact, self._by_product = _RECOMMENDED[key]
            else:
                facts = self._facts()
                known = ibis.memtable(catalogue(self.engine))
                orders = facts.table("orders")
                self._by_contact = recommend.for_contacts(
                    known, orders, self._started, self.k
                ).to_pyarrow()
                t = recommend.for_products(known, orders, self._started, self.k)
                self._by_product = t.select(
                    customer_id=t.product_id, kind=t.kind, rank=t["rank"], product_id=t.other_id
                ).to_pyarrow()
                _RECOMMENDED.clear()  # one week's tables are enough to keep
                _RECOMMENDED[key] = (self._by_contact, self._by_product)
        table = self._by_contact if kind == "contact" else self._by_product
        hits = table.filter(pc.is_in(table.column("customer_id"), value_set=pa.array(wanted)))
        found: dict[str, list[tuple[Any, ...]]] = {}
        for r in hits.to_pylist():
            found.setdefault(r["customer_id"], []).append((r["rank"], r["kind"], r["product_id"]))
        for listed in found.values():
            listed.sort()
        return found

    def _recommendations_key(self) -> tuple[Any, ...]:
        """What the recommendation tables depend on: the week, the order facts' files and
        the catalogue. A worker delivering every half minute computes them when orders or
        products change, and at least weekly, rather than on every pass; a replay once a
        simulated week."""
        from reengage.facts.kinds import KINDS
        from reengage.facts.layout import all_part_files

        files = all_part_files(self.settings.facts_path, KINDS["orders"])
        newest = max((f.stat().st_mtime_ns for f in files), default=0)
        with self.engine.connect() as conn:
            shelf = conn.execute(select(func.count(), func.max(products.c.updated_at))).one()
        week = as_utc(self._started).isocalendar()[:2]
        return (str(self.settings.facts_path), week, self.k, len(files), newest, *shelf)

    # the batch --------------------------------------------------------------------------

    def build(
        self, rows: Sequence[Claimed], people: Mapping[int, Person], now: datetime
    ) -> dict[int, Context | str]:
        """The context of each row (by outbox id), or why it could not be made."""
        ids = sorted({r.contact_id for r in rows})
        carts: dict[int, list[str]] = {}
        live: dict[int, Any] = {}
        coded: dict[str, Any] = {}
        codes = sorted({r.offer_code for r in rows if r.offer_code})
        with self.engine.connect() as conn:
            for part in chunks(ids):
                for contact_id, details in conn.execute(_latest_details(part)).all():
                    carts[contact_id] = [str(p) for p in (details or {}).get("cart_products") or []]
                for offer in conn.execute(
                    select(offers)
                    .where(
                        offers.c.contact_id.in_(part),
                        offers.c.status == "issued",
                        offers.c.expires_at > now,
                    )
                    .order_by(offers.c.issued_at.desc(), offers.c.id.desc())
                ):
                    live.setdefault(offer.contact_id, offer)
            for part_codes in chunks(codes):
                for offer in conn.execute(
                    select(offers).where(
                        offers.c.code.in_(part_codes),
                        offers.c.status == "issued",
                        offers.c.expires_at > now,
                    )
                ):
                    coded[offer.code] = offer
        customers = sorted(
            {cid for cid in (people[c].customer_id for c in ids if c in people) if cid}
        )
        last_orders, viewed = self._orders_and_views(customers, now)
        need_contacts = set()
        need_products = set()
        for r in rows:
            spec = INTENTS[r.intent]
            person = people.get(r.contact_id)
            if "recommendations" not in spec.blocks or "products" in r.payload or not person:
                continue
            if not person.customer_id:
                continue
            seen = viewed.get(person.customer_id)
            if spec.id == "browse_reminder" and seen:
                need_products.add(seen)
            else:
                need_contacts.add(person.customer_id)
        by_contact = self._recommendations("contact", need_contacts)
        by_product = self._recommendations("product", need_products)

        plans: dict[int, tuple[str | None, list[str], list[str]]] = {}
        wanted: set[str] = set()
        for r in rows:
            spec = INTENTS[r.intent]
            person = people.get(r.contact_id)
            customer = person.customer_id if person else None
            cart_ids = [] if "cart" in r.payload else carts.get(r.contact_id, [])
            seen = viewed.get(customer) if customer else None
            order = last_orders.get(customer, []) if customer else []
            in_cart = next(iter(cart_ids), None)
            ordered = order[0]["product_id"] if order else None
            if spec.id.startswith("cart_"):
                candidates = (in_cart, seen, ordered)
            elif spec.id in ("browse_reminder", "down_sell"):
                candidates = (seen, in_cart, ordered)
            else:
                candidates = (ordered, seen, in_cart)
            main_id = r.payload.get("product_id") or next((p for p in candidates if p), None)
            recommended: list[str] = []
            if "recommendations" in spec.blocks and "products" not in r.payload and customer:
                if spec.id == "browse_reminder" and seen:
                    listed = by_product.get(seen, [])
                else:
                    listed = by_contact.get(customer, [])
                if spec.id in ("cross_sell", "up_sell", "down_sell"):
                    listed = [x for x in listed if x[1] == spec.id]
                for _, _, pid in listed:
                    if pid not in recommended:
                        recommended.append(pid)
                recommended = recommended[: self.k]
            plans[r.id] = (str(main_id) if main_id else None, cart_ids, recommended)
            wanted.update(cart_ids, recommended, (line["product_id"] for line in order))
            if main_id:
                wanted.add(str(main_id))
        catalogue: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for part_ids in chunks(sorted(wanted)):
                for p in conn.execute(
                    select(
                        products.c.product_id,
                        products.c.title,
                        products.c.price,
                        products.c.url,
                        products.c.image_url,
                        products.c.category,
                    ).where(products.c.product_id.in_(part_ids))
                ):
                    catalogue[p.product_id] = p
        cards: dict[tuple[str, str], Product | None] = {}  # a product as shown, by language

        built: dict[int, Context | str] = {}
        for r in rows:
            person = people.get(r.contact_id)
            if person is None:
                built[r.id] = "contact: gone"
                continue
            main_id, cart_ids, recommended = plans[r.id]
            held = coded.get(r.offer_code) if r.offer_code else live.get(r.contact_id)
            try:
                built[r.id] = self._context(
                    r,
                    person,
                    now,
                    catalogue,
                    main_id,
                    cart_ids,
                    recommended,
                    last_orders.get(person.customer_id or "", []),
                    held,
                    cards,
                )
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                built[r.id] = f"payload: {type(exc).__name__}"
        return built

    def _context(
        self,
        row: Claimed,
        person: Person,
        now: datetime,
        catalogue: Mapping[str, Any],
        main_id: str | None,
        cart_ids: Sequence[str],
        recommended: Sequence[str],
        order: list[dict[str, Any]],
        offer: Any,
        cards: dict[tuple[str, str], Product | None],
    ) -> Context:
        settings = self.settings
        language = row.language
        own = person.timezone
        zone = ZoneInfo(own if own and _known_zone(own) else settings.timezone)
        shop_url = self.shop_url

        def money(value: Any) -> str:
            return format_money(value, settings.currency, language)

        def product(pid: str | None) -> Product | None:
            if not pid:
                return None
            key = (pid, language)
            if key in cards:
                return cards[key]
            found = catalogue.get(pid)
            card = None
            if found is not None and found.title:
                price = money(found.price) if found.price is not None else ""
                url = found.url or f"{shop_url}/products/{pid}"
                card = Product(found.title, price, url, found.image_url or "", found.category or "")
            cards[key] = card
            return card

        cart = [p for p in map(product, cart_ids) if p is not None]
        prices = [Decimal(catalogue[p].price or 0) for p in cart_ids if p in catalogue]
        main = product(main_id)
        ordered_at = order[0]["ordered_at"] if order else None
        context = Context(
            shop_name=settings.shop_name,
            shop_url=shop_url,
            first_name=(person.first_name or "").strip(),
            cart=tuple(CartItem(p.title, p.price, 1, p.url, p.image_url) for p in cart),
            cart_total=money(sum(prices, Decimal(0))) if cart else "",
            cart_count=len(cart),
            cart_url=f"{shop_url}/cart",
            product=main,
            products=tuple(p for p in map(product, recommended) if p is not None)[: self.k],
            last_order=_last_order(order, dict(catalogue), zone, language, money),
            offer=_offer(offer, now, zone, language) if offer is not None else None,
            deadline=None,
            days_since_order=(
                (now.astimezone(zone).date() - as_utc(ordered_at).astimezone(zone).date()).days
                if ordered_at is not None
                else None
            ),
            support_email=self.support_email,
            review_url=f"{main.url}#reviews" if main else shop_url,
            help_url=self.help_url,
            returns_days=settings.returns_days,
        )
        payload = row.payload
        given = {k: v for k, v in payload.items() if k in VARIABLES}
        changes: dict[str, Any] = {}
        if given:
            overlay = Context.from_payload(
                {"shop_name": context.shop_name, "shop_url": context.shop_url, **given}
            )
            changes = {k: getattr(overlay, k) for k in given}
            if "cart" in given:
                changes.setdefault("cart_count", sum(i.quantity for i in overlay.cart))
                changes.setdefault("cart_total", "")
        deadline = payload.get("deadline_at")
        if deadline and "deadline" not in given:
            moment = datetime.fromisoformat(str(deadline))
            changes["deadline"] = format_datetime(as_utc(moment), language, zone.key)
        return replace(context, **changes) if changes else context


# the last valid order of each customer of the batch (`analytics.features.valid_lines`: before
# now, the order's latest status neither cancelled nor refunded, lines of that status), and
# the last product each viewed
_LAST_ORDERS = """
WITH seen AS (
    SELECT o.* FROM orders o JOIN rg_batch b ON o.customer_id = b.customer_id
    WHERE o.ordered_at < $now
), latest AS (
    SELECT order_id, arg_max(status, ingested_at) AS order_status FROM seen GROUP BY order_id
), valid AS (
    SELECT s.* FROM seen s JOIN latest l ON s.order_id = l.order_id
    WHERE NOT list_contains($void, l.order_status) AND s.status = l.order_status
), ranked AS (
    SELECT *, dense_rank() OVER (
        PARTITION BY customer_id ORDER BY ordered_at DESC, order_id DESC) AS position
    FROM valid
)
SELECT customer_id, order_id, ordered_at, product_id, quantity, unit_price, discount
FROM ranked WHERE position = 1
"""
_LAST_VIEWS = """
SELECT e.customer_id, arg_max(e.product_id, e.occurred_at) AS product_id
FROM events e JOIN rg_batch b ON e.customer_id = b.customer_id
WHERE e.type = 'product_view' AND e.occurred_at < $now
GROUP BY e.customer_id
"""


def _fetch(con: Any, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = con.execute(query, params)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _latest_details(contact_ids: Sequence[int]) -> Any:
    ranked = (
        select(
            scores.c.contact_id,
            scores.c.details,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .where(scores.c.contact_id.in_(contact_ids))
        .subquery()
    )
    return select(ranked.c.contact_id, ranked.c.details).where(ranked.c.rank == 1)
