"""Product feeds for dynamic ads: the catalogue as Meta's catalogue feed (CSV) and as Google
Merchant Center's product feed (RSS 2.0 with the `g:` namespace).

Both carry id, title, description, availability, condition, price with its currency, link,
image link, brand and the product type (the shop's category). Links carry utm tags
(channel `ads`, campaign `dynamic_ads` or the segment's name, content the platform).

A product missing a required field (a title, a price, an image, a link) is left out of the
feed and listed in `Feed.skipped` with the reason: never dropped silently. Texts over the
platform's limit are cut at a word boundary, never dropped.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree as ET

from sqlalchemy import Engine, select

from reengage.config import Settings
from reengage.errors import InputError
from reengage.measure.utm import Origin, tag, tags
from reengage.state.schema import products

FORMATS = ("meta", "google")
G = "http://base.google.com/ns/1.0"
JOURNEY = "dynamic_ads"

META_COLUMNS = (
    "id",
    "title",
    "description",
    "availability",
    "condition",
    "price",
    "link",
    "image_link",
    "brand",
    "product_type",
)


@dataclass(frozen=True)
class Limits:
    id: int
    title: int
    description: int
    product_type: int


# Meta: id 100, title 200, description 9999; Google: id 50, title 150, description 5000,
# product_type 750 (Meta documents no product_type limit: Google's is kept for both)
LIMITS = {"meta": Limits(100, 200, 9999, 750), "google": Limits(50, 150, 5000, 750)}
AVAILABILITY = {
    "meta": {True: "in stock", False: "out of stock"},
    "google": {True: "in_stock", False: "out_of_stock"},
}
CONTENT_TYPES = {"meta": "text/csv; charset=utf-8", "google": "application/xml; charset=utf-8"}


@dataclass(frozen=True)
class Skipped:
    product_id: str
    reason: str


@dataclass
class Feed:
    format: str
    body: str
    written: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def summary(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "skipped": [{"product_id": s.product_id, "reason": s.reason} for s in self.skipped],
        }


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_TAG = re.compile(r"<[^>]*>")


def clean(text: Any) -> str:
    """Plain one-line text: no HTML tags, entities decoded, no control characters (which XML
    cannot carry), runs of white space made one space."""
    if text is None:
        return ""
    plain = html.unescape(_TAG.sub(" ", str(text)))
    return " ".join(_CONTROL.sub(" ", plain).split())


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at the last word boundary that fits (a
    single word longer than the limit is cut inside)."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    if space > 0:
        return cut[:space].rstrip(" ,;:-") or cut[:limit]
    return text[:limit]


def price_text(price: Any, currency: str) -> str | None:
    """'12.50 EUR': the amount with two decimals (a dot, no grouping), a space, the ISO
    code; None for no price, a price that is not a number, zero or less."""
    if price is None:
        return None
    try:
        amount = Decimal(str(price))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    rounded = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{rounded:.2f} {currency.upper()}"


def _absolute(url: str | None, shop_url: str | None) -> str | None:
    """An http(s) address: as given, or relative to the shop; None when it cannot be."""
    text = (url or "").strip()
    if not text:
        return None
    if not urlsplit(text).scheme and shop_url:
        text = urljoin(shop_url.rstrip("/") + "/", text)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return text


def _link(row: Any, shop_url: str | None) -> str | None:
    found = _absolute(row.url, shop_url)
    if found is None and not (row.url or "").strip() and shop_url:
        return f"{shop_url.rstrip('/')}/products/{row.product_id}"
    return found


def _item(
    settings: Settings, row: Any, fmt: str, utm: dict[str, str]
) -> tuple[dict[str, str] | None, str | None]:
    """The feed's fields for one product, or the reasons it cannot be listed."""
    limits = LIMITS[fmt]
    reasons = []
    pid = str(row.product_id)
    if len(pid) > limits.id:
        reasons.append(f"id longer than {limits.id} characters")
    title = clean(row.title)
    if not title:
        reasons.append("no title")
    price = price_text(row.price, row.currency or settings.currency)
    if price is None:
        reasons.append("no price" if row.price is None else f"price {row.price} is not positive")
    link = _link(row, settings.shop_url)
    if link is None:
        reasons.append(
            "no link (no product url and no shop_url)"
            if not (row.url or "").strip()
            else f"link {row.url!r} is not an http(s) address"
        )
    image = _absolute(row.image_url, settings.shop_url)
    if image is None:
        reasons.append(
            "no image"
            if not (row.image_url or "").strip()
            else f"image {row.image_url!r} is not an http(s) address"
        )
    if reasons or link is None or price is None or image is None:
        return None, "; ".join(reasons)
    description = clean(row.description) or title
    brand = clean(row.brand) or clean(settings.feed_brand) or clean(settings.shop_name)
    return {
        "id": pid,
        "title": truncate(title, limits.title),
        "description": truncate(description, limits.description),
        "availability": AVAILABILITY[fmt][bool(row.in_stock)],
        "condition": "new",
        "price": price,
        "link": tag(link, utm),
        "image_link": image,
        "brand": truncate(brand, 100 if fmt == "meta" else 70),
        "product_type": truncate(clean(row.category), limits.product_type),
    }, None


def _meta(items: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(META_COLUMNS)
    for item in items:
        writer.writerow([item[c] for c in META_COLUMNS])
    return buffer.getvalue()


def _google(settings: Settings, items: list[dict[str, str]], title: str) -> str:
    ET.register_namespace("g", G)
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = title
    ET.SubElement(channel, "link").text = settings.shop_url or settings.public_url
    ET.SubElement(channel, "description").text = f"Products of {clean(settings.shop_name)}"
    for item in items:
        entry = ET.SubElement(channel, "item")
        ET.SubElement(entry, f"{{{G}}}id").text = item["id"]
        ET.SubElement(entry, "title").text = item["title"]
        ET.SubElement(entry, "description").text = item["description"]
        ET.SubElement(entry, "link").text = item["link"]
        for name in ("image_link", "availability", "condition", "price", "brand"):
            ET.SubElement(entry, f"{{{G}}}{name}").text = item[name]
        if item["product_type"]:
            ET.SubElement(entry, f"{{{G}}}product_type").text = item["product_type"]
    body = ET.tostring(rss, encoding="unicode", xml_declaration=False)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown feed format {fmt!r} (known: {', '.join(FORMATS)})")
    return fmt


def build(
    settings: Settings,
    engine: Engine,
    fmt: str,
    *,
    segment: str | None = None,
    now: datetime | None = None,
) -> Feed:
    """The feed of the whole catalogue (by id), or, with `segment`, of the products its
    members viewed or carted in the last 30 days before `now` (most interacted first)."""
    check_format(fmt)
    with engine.connect() as conn:
        rows = {r.product_id: r for r in conn.execute(select(products)).all()}
    if segment is None:
        chosen = sorted(rows)
    else:
        if now is None:
            raise ValueError("a segment's product set needs `now`")
        from reengage.retarget.product_sets import segment_products

        chosen = [p for p in segment_products(settings, engine, segment, now) if p in rows]
    utm = tags(settings.utm, Origin(channel="ads", journey=segment or JOURNEY, step=fmt))
    feed = Feed(fmt, "")
    items = []
    for pid in chosen:
        item, reason = _item(settings, rows[pid], fmt, utm)
        if item is None:
            feed.skipped.append(Skipped(str(pid), reason or "unusable"))
        else:
            items.append(item)
    feed.written = len(items)
    name = clean(settings.shop_name) + (f" - {segment}" if segment else "")
    feed.body = _meta(items) if fmt == "meta" else _google(settings, items, name)
    return feed
