"""Product feeds: Meta's catalogue CSV and Google Merchant's RSS, checked against each
platform's documented required fields and formats; and a segment's product set."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.errors import InputError
from reengage.facts.kinds import EVENTS
from reengage.facts.writer import append
from reengage.retarget.feeds import META_COLUMNS, build, price_text, truncate
from reengage.retarget.product_sets import segment_products
from reengage.state.schema import contacts, identities, products, segment_members, segments

G = "{http://base.google.com/ns/1.0}"
LONG = ("Handmade organic cotton shirt with mother of pearl buttons " * 6).strip()


def _product(pid: str, now: Any, **values: Any) -> dict[str, Any]:
    row = {
        "product_id": pid,
        "title": f"Product {pid}",
        "category": "Shirts > Cotton",
        "brand": None,
        "price": Decimal("12.50"),
        "currency": "EUR",
        "url": f"https://shop.example.com/p/{pid}",
        "image_url": f"https://cdn.example.com/{pid}.jpg",
        "description": None,
        "in_stock": True,
        "created_at": now,
        "updated_at": now,
        "origin": "test",
    }
    row.update(values)
    return row


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Settings:
    now = clock.now()
    rows = [
        _product("P1", now, price=Decimal("12.5"), description="<p>Soft &amp; warm</p>"),
        _product("P2", now, price=Decimal("30"), in_stock=False, brand="Acme"),
        _product("P3", now, price=Decimal("9.999"), title=LONG, url="/p/P3"),
        _product("P4", now, image_url=None),  # no image: listed, not dropped silently
        _product("P5", now, price=None),
        _product("P6", now, url=None),  # no url: the shop's product path
        _product("P7", now, title="Tom & Jerry <mug> \x01 \"ok\", 'yes'", currency="usd"),
    ]
    with engine.begin() as conn:
        conn.execute(products.insert(), rows)
    return load_settings(
        {**env, "REENGAGE_SHOP_URL": "https://shop.example.com", "REENGAGE_SHOP_NAME": "Shop"}
    )


def _meta(settings: Settings, engine: Engine, **kw: Any) -> tuple[list[dict[str, str]], Any]:
    feed = build(settings, engine, "meta", **kw)
    reader = csv.DictReader(io.StringIO(feed.body))
    assert tuple(reader.fieldnames or ()) == META_COLUMNS
    return list(reader), feed


def _google(settings: Settings, engine: Engine) -> tuple[list[ET.Element], Any]:
    feed = build(settings, engine, "google")
    root = ET.fromstring(feed.body.encode("utf-8"))
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    return channel.findall("item"), feed


def test_price_formats() -> None:
    assert price_text(12, "EUR") == "12.00 EUR"
    assert price_text(Decimal("12.5"), "eur") == "12.50 EUR"
    assert price_text(Decimal("9.999"), "USD") == "10.00 USD"
    assert price_text(1234567.891, "GBP") == "1234567.89 GBP"  # no grouping, a dot
    assert price_text("0.005", "EUR") == "0.01 EUR"
    assert price_text(None, "EUR") is None
    assert price_text(0, "EUR") is None
    assert price_text(-3, "EUR") is None
    assert price_text("n/a", "EUR") is None


def test_truncate_at_a_word_boundary() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate(LONG, 150)
    assert len(cut) <= 150 and LONG.startswith(cut) and LONG[len(cut)] == " "
    assert truncate("x" * 300, 200) == "x" * 200  # one long word: cut inside, never dropped


def test_meta_feed_fields_and_formats(shop: Settings, engine: Engine) -> None:
    items, feed = _meta(shop, engine)
    by_id = {i["id"]: i for i in items}
    assert sorted(by_id) == ["P1", "P2", "P3", "P6", "P7"]
    assert feed.written == 5
    assert {i["availability"] for i in items} == {"in stock", "out of stock"}
    assert by_id["P2"]["availability"] == "out of stock"
    assert all(i["condition"] == "new" for i in items)
    assert by_id["P1"]["price"] == "12.50 EUR"
    assert by_id["P2"]["price"] == "30.00 EUR"
    assert by_id["P3"]["price"] == "10.00 EUR"
    assert by_id["P7"]["price"] == "12.50 USD"
    assert by_id["P1"]["description"] == "Soft & warm"  # HTML removed
    assert by_id["P2"]["description"] == "Product P2"  # empty: the title
    assert by_id["P1"]["brand"] == "Shop" and by_id["P2"]["brand"] == "Acme"
    assert by_id["P1"]["product_type"] == "Shirts > Cotton"
    title = by_id["P3"]["title"]
    assert len(title) <= 200 and LONG.startswith(title) and len(title) > 150
    assert by_id["P7"]["title"] == "Tom & Jerry \"ok\", 'yes'"
    for item in items:
        for column in ("id", "title", "description", "price", "link", "image_link", "brand"):
            assert item[column], (item["id"], column)
        assert item["image_link"].startswith("https://")
        query = parse_qs(urlsplit(item["link"]).query)
        assert query["utm_source"] == ["reengage"]
        assert query["utm_medium"] == ["ads"]
        assert query["utm_campaign"] == ["dynamic_ads"]
        assert query["utm_content"] == ["meta"]
    assert by_id["P3"]["link"].startswith("https://shop.example.com/p/P3?")
    assert by_id["P6"]["link"].startswith("https://shop.example.com/products/P6?")


def test_missing_fields_are_listed_with_the_reason(shop: Settings, engine: Engine) -> None:
    for fmt in ("meta", "google"):
        feed = build(shop, engine, fmt)
        assert feed.summary()["skipped"] == [
            {"product_id": "P4", "reason": "no image"},
            {"product_id": "P5", "reason": "no price"},
        ]
        assert "P4" not in feed.body and "P5" not in feed.body


def test_no_link_without_shop_url(shop: Settings, engine: Engine, env: dict[str, str]) -> None:
    feed = build(load_settings(env), engine, "meta")
    reasons = {s.product_id: s.reason for s in feed.skipped}
    assert reasons["P3"] == "link '/p/P3' is not an http(s) address"
    assert reasons["P6"] == "no link (no product url and no shop_url)"
    assert "P1" not in reasons


def test_google_feed_is_well_formed_and_namespaced(shop: Settings, engine: Engine) -> None:
    items, feed = _google(shop, engine)
    assert 'xmlns:g="http://base.google.com/ns/1.0"' in feed.body
    assert feed.written == len(items) == 5
    by_id = {}
    for item in items:
        fields = {child.tag: child.text or "" for child in item}
        for name in ("id", "image_link", "availability", "condition", "price", "brand"):
            assert fields[G + name], name
        for name in ("title", "description", "link"):
            assert fields[name], name
        by_id[fields[G + "id"]] = fields
    assert by_id["P1"][G + "availability"] == "in_stock"
    assert by_id["P2"][G + "availability"] == "out_of_stock"
    assert by_id["P1"][G + "price"] == "12.50 EUR"
    assert by_id["P1"][G + "product_type"] == "Shirts > Cotton"
    assert by_id["P7"]["title"] == "Tom & Jerry \"ok\", 'yes'"
    title = by_id["P3"]["title"]
    assert len(title) <= 150 and LONG.startswith(title) and LONG[len(title)] == " "
    assert "utm_content=google" in by_id["P1"]["link"]


def test_google_ids_over_fifty_characters_are_listed(
    shop: Settings, engine: Engine, clock: FixedClock
) -> None:
    with engine.begin() as conn:
        conn.execute(products.insert(), [_product("X" * 60, clock.now())])
    google = build(shop, engine, "google")
    assert {"product_id": "X" * 60, "reason": "id longer than 50 characters"} in (
        google.summary()["skipped"]
    )
    assert ("X" * 60) in build(shop, engine, "meta").body  # Meta allows 100


def test_unknown_format(shop: Settings, engine: Engine) -> None:
    with pytest.raises(InputError):
        build(shop, engine, "tiktok")


def test_a_segments_product_set(shop: Settings, engine: Engine, clock: FixedClock) -> None:
    now = clock.now()
    with engine.begin() as conn:
        ids = []
        for customer in ("C1", "C2", "C3"):
            key = conn.execute(
                contacts.insert().values(
                    customer_id=customer, created_at=now, updated_at=now, origin="test"
                )
            ).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        conn.execute(
            identities.insert().values(
                contact_id=ids[1], kind="anonymous_id", value="anon-2", first_seen=now
            )
        )
        conn.execute(
            segments.insert().values(
                name="browsers", rule="true", refreshed_at=now, size=2, entered=2, exited=0
            )
        )
        conn.execute(
            segments.insert().values(
                name="empty", rule="false", refreshed_at=now, size=0, entered=0, exited=0
            )
        )
        conn.execute(
            segment_members.insert(),
            [{"segment": "browsers", "contact_id": i, "entered_at": now} for i in ids[:2]],
        )
    events = []

    def event(customer: str | None, anon: str | None, kind: str, pid: str, days: float) -> None:
        events.append(
            {
                "event_id": f"e{len(events)}",
                "customer_id": customer,
                "anonymous_id": anon,
                "type": kind,
                "occurred_at": now - timedelta(days=days),
                "product_id": pid,
                "session_id": None,
                "source": "web",
                "device": None,
                "duration_s": None,
                "properties": None,
            }
        )

    event("C1", None, "product_view", "P2", 1)
    event("C1", None, "add_to_cart", "P2", 1)
    event(None, "anon-2", "product_view", "P2", 2)  # before login: still the member
    event("C2", None, "product_view", "P1", 3)
    event("C2", None, "product_view", "P4", 3)  # no image: listed as skipped
    event("C1", None, "product_view", "P3", 40)  # too long ago
    event("C3", None, "product_view", "P6", 1)  # not a member
    event("C1", None, "order_placed", "P7", 1)  # not interest
    append(shop.facts_path, EVENTS, pa.Table.from_pylist(events), ingested_at=now)

    assert segment_products(shop, engine, "browsers", now) == ["P2", "P1", "P4"]
    assert segment_products(shop, engine, "empty", now) == []
    with pytest.raises(InputError, match="unknown segment"):
        segment_products(shop, engine, "nobody", now)
    items, feed = _meta(shop, engine, segment="browsers", now=now)
    assert [i["id"] for i in items] == ["P2", "P1"]
    assert feed.summary()["skipped"] == [{"product_id": "P4", "reason": "no image"}]
    assert all("utm_campaign=browsers" in i["link"] for i in items)
