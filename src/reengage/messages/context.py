"""What copy can speak of: the context of one message, and the way its values are written.

The context is the contract between the code and the copywriters: every name below can be used
in `copy/<lang>.yaml`, and no other (docs/messages.md lists them). Values arrive formatted for
the message's language — prices as "€12.50" / "€ 12,50" / "12,50 €", dates as
"3 December 2026" / "3 dicembre 2026" / "3 décembre 2026" — so copy never formats numbers.
`for_contact` builds it for one contact from state and facts; a journey that already holds
the data may build a `Context` itself, and store `Context.to_payload()` in the outbox row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from reengage.clock import as_utc
from reengage.errors import InputError
from reengage.state.schema import contacts, identities, offers, products, scores

if TYPE_CHECKING:
    from collections.abc import Callable

    from reengage.clock import Clock
    from reengage.config import Home
    from reengage.messages.intents import Intent

# the names a copy template may use (the dataclass fields of Context, in the documented order)
VARIABLES = (
    "first_name",
    "shop_name",
    "shop_url",
    "cart",
    "cart_total",
    "cart_count",
    "cart_url",
    "product",
    "products",
    "last_order",
    "offer",
    "deadline",
    "days_since_order",
    "returns_days",
    "support_email",
    "review_url",
    "help_url",
)


@dataclass(frozen=True, slots=True)
class CartItem:
    title: str
    price: str
    quantity: int = 1
    url: str = ""
    image_url: str = ""


@dataclass(frozen=True, slots=True)
class Product:
    title: str
    price: str
    url: str = ""
    image_url: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class LastOrder:
    date: str
    items: tuple[str, ...]
    total: str


@dataclass(frozen=True, slots=True)
class Offer:
    code: str
    discount: str
    expires: str
    days_left: int


@dataclass(frozen=True)
class Context:
    """Everything one message may say; see VARIABLES and docs/messages.md."""

    shop_name: str
    shop_url: str
    first_name: str = ""
    cart: tuple[CartItem, ...] = ()
    cart_total: str = ""
    cart_count: int = 0
    cart_url: str = ""
    product: Product | None = None
    products: tuple[Product, ...] = ()
    last_order: LastOrder | None = None
    offer: Offer | None = None
    deadline: str | None = None
    days_since_order: int | None = None
    returns_days: int = 30
    support_email: str = ""
    review_url: str = ""
    help_url: str = ""
    _variables: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def variables(self) -> dict[str, Any]:
        """The names copy sees (computed once per context)."""
        if not self._variables:
            self._variables.update({name: getattr(self, name) for name in VARIABLES})
            self._variables["cart_url"] = self.cart_url or f"{self.shop_url}/cart"
            self._variables["review_url"] = self.review_url or self.shop_url
            self._variables["help_url"] = self.help_url or self.shop_url
        return self._variables

    def to_payload(self) -> dict[str, Any]:
        """JSON-safe: for the outbox row's `payload`; `from_payload` gives it back."""
        out: dict[str, Any] = {}
        for name in VARIABLES:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = [_plain(v) for v in value]
            out[name] = _plain(value)
        return out

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Context:
        known = {f.name for f in fields(cls) if f.init}
        values = {k: v for k, v in data.items() if k in known}
        values["cart"] = tuple(CartItem(**i) for i in values.get("cart") or ())
        values["products"] = tuple(Product(**p) for p in values.get("products") or ())
        if values.get("product"):
            values["product"] = Product(**values["product"])
        if values.get("last_order"):
            order = dict(values["last_order"])
            order["items"] = tuple(order.get("items") or ())
            values["last_order"] = LastOrder(**order)
        if values.get("offer"):
            values["offer"] = Offer(**values["offer"])
        return cls(**values)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: getattr(value, f.name) for f in fields(value)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
    return value


# --- how values are written in each language ---------------------------------------------

NBSP, NNBSP = "\u00a0", "\u202f"
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}
NO_DECIMALS = {"JPY", "KRW", "HUF", "ISK", "CLP"}
_SEPARATORS = {"en": (",", "."), "it": (".", ","), "fr": (NNBSP, ",")}
MONTHS = {
    "en": "January February March April May June July August September October November December",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre "
    "dicembre",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
}
_MONTHS = {lang: names.split() for lang, names in MONTHS.items()}
FREE_SHIPPING = {"en": "free shipping", "it": "spedizione gratuita", "fr": "livraison offerte"}


def _number(value: Decimal, places: int, language: str) -> str:
    group, point = _SEPARATORS.get(language, _SEPARATORS["en"])
    whole, _, frac = f"{abs(value):.{places}f}".partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        whole, tail = whole[:-3], whole[-3:]
        groups.insert(0, tail)
    text = group.join([whole, *groups])
    return f"{text}{point}{frac}" if places else text


def format_money(amount: float | Decimal | int | str, currency: str, language: str) -> str:
    """12.5 EUR as "€12.50" (en), "€ 12,50" (it), "12,50 €" (fr); codes without a symbol
    ("CHF 12.50") keep the code."""
    places = 0 if currency in NO_DECIMALS else 2
    value = Decimal(str(amount)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    number = _number(value, places, language)
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(currency, currency)
    if language == "fr":
        return f"{sign}{number}{NBSP}{symbol}"
    if language == "it" or symbol == currency:
        return f"{sign}{symbol}{NBSP}{number}"
    return f"{sign}{symbol}{number}"


def format_percent(value: float | Decimal | int, language: str) -> str:
    """10 as "10%" (en, it) or "10 %" (fr); 12.5 as "12.5%" / "12,5%" / "12,5 %"."""
    number = Decimal(str(value)).normalize()
    places = max(0, -number.as_tuple().exponent)  # type: ignore[operator]
    text = _number(number, places, language)
    return f"{text}{NBSP}%" if language == "fr" else f"{text}%"


def format_discount(kind: str, value: float | Decimal | int, currency: str, language: str) -> str:
    """An offer's worth: a percentage, an amount, or free shipping."""
    if kind == "percent":
        return format_percent(value, language)
    if kind == "free_shipping":
        return FREE_SHIPPING.get(language, FREE_SHIPPING["en"])
    return format_money(value, currency, language)


def format_date(value: date | datetime | str, language: str) -> str:
    """3 December 2026, 3 dicembre 2026, 3 décembre 2026 (1er décembre in French)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    month = _MONTHS.get(language, _MONTHS["en"])[value.month - 1]
    day = "1er" if language == "fr" and value.day == 1 else str(value.day)
    return f"{day} {month} {value.year}"


def format_datetime(value: datetime | str, language: str, zone: str | None = None) -> str:
    """3 December 2026, 18:00 — in the zone given (the contact's or the shop's)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if zone and value.tzinfo is not None:
        value = value.astimezone(ZoneInfo(zone))
    joint = " à " if language == "fr" else ", "
    return f"{format_date(value, language)}{joint}{value:%H:%M}"


# --- one contact's context, from state and facts -------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Whom a message is for and what it can say: the context, and the copy to choose."""

    contact_id: int
    language: str
    style: str
    variant: str
    context: Context


def language_for(preferred: str | None, fallback: str) -> str:
    """The contact's language when copy ships for it ("it-IT" counts as "it"), else fallback."""
    from reengage.config import LANGUAGES

    code = (preferred or "").strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else fallback


def for_contact(
    home: Home,
    engine: Engine,
    customer_id: str,
    intent: str,
    *,
    clock: Clock,
    product_id: str | None = None,
    deadline: datetime | None = None,
    language: str | None = None,
    k: int = 4,
) -> Recipient:
    """The context of `intent` for one contact (customer id, email or phone), as of now.

    From state: the contact (first name, language, time zone), their latest scores (style,
    open cart) and latest unexpired offer; from the facts: their last valid order, the last
    product they viewed and, when the intent shows recommendations, the best `k`. The main
    product is `product_id`, else the first found of: for cart intents the first in the cart,
    the last viewed, the first of the last order; for browse_reminder and down_sell the last
    viewed first; for the others the last order's first. `language` overrides the contact's.
    """
    from reengage.messages.intents import intent as intent_spec
    from reengage.messages.intents import variant_for

    spec = intent_spec(intent)
    settings = home.settings
    now = clock.now()
    with engine.connect() as conn:
        contact = _find_contact(conn, customer_id)
        score = conn.execute(
            select(scores.c.style, scores.c.details)
            .where(scores.c.contact_id == contact.id)
            .order_by(scores.c.as_of.desc())
            .limit(1)
        ).first()
        offer = conn.execute(
            select(offers)
            .where(offers.c.contact_id == contact.id, offers.c.status == "issued")
            .where(offers.c.expires_at > now)
            .order_by(offers.c.issued_at.desc())
            .limit(1)
        ).first()
        shop_url = settings.shop_url or _shop_url(conn, settings.public_url)
    language = language or language_for(contact.language, settings.language)
    zone = ZoneInfo(contact.timezone if _known_zone(contact.timezone) else settings.timezone)
    details = (score.details if score is not None else None) or {}
    cart_ids = [str(p) for p in details.get("cart_products") or []]
    facts = _facts(home, engine, contact.customer_id, now, spec, k)
    in_cart, viewed = next(iter(cart_ids), None), facts.viewed
    ordered = facts.last_order[0]["product_id"] if facts.last_order else None
    if spec.id.startswith("cart_"):
        order = (in_cart, viewed, ordered)
    elif spec.id in ("browse_reminder", "down_sell"):
        order = (viewed, in_cart, ordered)
    else:
        order = (ordered, viewed, in_cart)
    main_id = product_id or next((p for p in order if p), None)
    wanted = {*cart_ids, *facts.recommended, *(r["product_id"] for r in facts.last_order)}
    with engine.connect() as conn:
        rows = conn.execute(
            select(products).where(products.c.product_id.in_(sorted(wanted | {main_id} - {None})))
        )
        catalogue = {r.product_id: r for r in rows}

    def money(value: Any) -> str:
        return format_money(value, settings.currency, language)

    def product(pid: str | None) -> Product | None:
        row = catalogue.get(pid)
        if row is None or not row.title:
            return None
        price = money(row.price) if row.price is not None else ""
        url = row.url or f"{shop_url}/products/{pid}"
        return Product(row.title, price, url, row.image_url or "", row.category or "")

    cart = [p for p in map(product, cart_ids) if p is not None]
    prices = [Decimal(catalogue[p].price or 0) for p in cart_ids if p in catalogue]
    main = product(main_id)
    context = Context(
        shop_name=settings.shop_name,
        shop_url=shop_url,
        first_name=(contact.first_name or "").strip(),
        cart=tuple(CartItem(p.title, p.price, 1, p.url, p.image_url) for p in cart),
        cart_total=money(sum(prices, Decimal(0))) if cart else "",
        cart_count=len(cart),
        cart_url=f"{shop_url}/cart",
        product=main,
        products=tuple(p for p in map(product, facts.recommended) if p is not None)[:k],
        last_order=_last_order(facts.last_order, catalogue, zone, language, money),
        offer=_offer(offer, now, zone, language) if offer is not None else None,
        deadline=format_datetime(deadline, language, str(zone)) if deadline else None,
        days_since_order=(
            (
                now.astimezone(zone).date()
                - facts.last_order[0]["ordered_at"].astimezone(zone).date()
            ).days
            if facts.last_order
            else None
        ),
        support_email=settings.support_email
        or parseaddr(settings.mail_from)[1]
        or settings.mail_from,
        review_url=f"{main.url}#reviews" if main else shop_url,
        help_url=settings.help_url or f"{shop_url}/help",
        returns_days=settings.returns_days,
    )
    style = (score.style if score is not None else None) or "unknown"
    return Recipient(contact.id, language, style, variant_for(style), context)


def _last_order(
    lines: list[dict[str, Any]],
    catalogue: dict[str, Any],
    zone: ZoneInfo,
    language: str,
    money: Callable[[Any], str],
) -> LastOrder | None:
    if not lines:
        return None
    total = sum(r["quantity"] * r["unit_price"] - (r["discount"] or 0) for r in lines)
    titles = tuple(
        (catalogue[r["product_id"]].title if r["product_id"] in catalogue else None)
        or r["product_id"]
        for r in lines
    )
    return LastOrder(
        format_date(lines[0]["ordered_at"].astimezone(zone), language), titles, money(total)
    )


def _offer(row: Any, now: datetime, zone: ZoneInfo, language: str) -> Offer:
    expires = as_utc(row.expires_at)
    return Offer(
        code=row.code,
        discount=format_discount(row.kind, row.value, row.currency, language),
        expires=format_date(expires.astimezone(zone), language),
        days_left=max(0, (expires.astimezone(zone).date() - now.astimezone(zone).date()).days),
    )


def _find_contact(conn: Connection, key: str) -> Any:
    row = conn.execute(select(contacts).where(contacts.c.customer_id == key)).first()
    if row is None:
        row = conn.execute(
            select(contacts)
            .join(identities, identities.c.contact_id == contacts.c.id)
            .where(identities.c.value == key.strip().lower())
            .limit(1)
        ).first()
    if row is None:
        raise InputError(f"no contact with the id, email or phone {key!r}")
    return row


def _shop_url(conn: Connection, fallback: str) -> str:
    """The shop's address, read off its product pages (reengage's own URL when none has one)."""
    url = conn.execute(
        select(products.c.url).where(products.c.url.is_not(None)).order_by(products.c.product_id)
    ).scalar()
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return fallback


def _known_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return False
    return True


@dataclass
class _Facts:
    last_order: list[dict[str, Any]]  # the lines of the last valid order
    viewed: str | None  # the last product viewed
    recommended: list[str]


def _facts(
    home: Home, engine: Engine, customer_id: str | None, now: datetime, spec: Intent, k: int
) -> _Facts:
    import ibis

    from reengage.analytics import recommend
    from reengage.analytics.features import valid_lines
    from reengage.analytics.scoring import catalogue
    from reengage.facts import reader

    if customer_id is None:
        return _Facts([], None, [])
    con = reader.connect(home.settings.facts_path)
    try:
        facts = ibis.duckdb.from_connection(con)
        orders, events = facts.table("orders"), facts.table("events")
        mine = valid_lines(orders.filter(orders.customer_id == customer_id), now)
        lines = (
            mine.order_by([ibis.desc(mine.ordered_at), ibis.desc(mine.order_id), mine.product_id])
            .select("order_id", "ordered_at", "product_id", "quantity", "unit_price", "discount")
            .to_pyarrow()
            .to_pylist()
        )
        last = [r for r in lines if r["order_id"] == lines[0]["order_id"]] if lines else []
        views = events.filter(
            (events.customer_id == customer_id)
            & (events.type == "product_view")
            & (events.occurred_at < now)
        )
        seen = views.order_by(ibis.desc(views.occurred_at)).limit(1).product_id.to_pyarrow()
        viewed = seen[0].as_py() if len(seen) else None
        recommended: list[str] = []
        if "recommendations" in spec.blocks:
            known = ibis.memtable(catalogue(engine))
            if spec.id == "browse_reminder" and viewed:
                t = recommend.for_products(known, orders, now, k)
                t = t.filter(t.product_id == viewed).select("kind", "rank", product_id=t.other_id)
            else:
                t = recommend.for_contacts(known, orders, now, k)
                t = t.filter(t.customer_id == customer_id).select("kind", "rank", "product_id")
            if spec.id in ("cross_sell", "up_sell", "down_sell"):
                t = t.filter(t.kind == spec.id)
            for r in t.order_by(["rank", "kind"]).to_pyarrow().to_pylist():
                if r["product_id"] not in recommended:
                    recommended.append(r["product_id"])
    finally:
        con.close()
    return _Facts(last, viewed, recommended[:k])
