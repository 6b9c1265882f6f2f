"""On-site messages in process: what a visitor is shown on a page (recommendations, exit
intent, welcome back), the cap counted from recorded impressions, the headline in the contact's
style and language, a refused on-site channel, and the route's CORS and HTML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, insert
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reengage.clock import FixedClock
from reengage.config import Home, Settings
from reengage.facts.kinds import KINDS
from reengage.facts.writer import append
from reengage.onsite.decide import Visitor, decide, headline
from reengage.state.products import upsert_products
from reengage.state.schema import consents, contacts, identities, scores
from reengage.web import onsite
from reengage.web.app import WebContext

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
SHOP = "https://shop.example"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
AID = "anon-visitor-0001"
CATALOGUE = [  # one category: up-sells and down-sells by price
    ("sku-espresso", "Espresso cups", 24.0),
    ("sku-moka", "Moka pot", 39.9),
    ("sku-beans", "Coffee beans", 18.5),
    ("sku-grinder", "Hand grinder", 64.0),
    ("sku-scale", "Coffee scale", 45.0),
]


def seed_products(engine: Engine) -> None:
    rows = [
        {
            "product_id": pid,
            "title": title,
            "price": price,
            "currency": "EUR",
            "category": "coffee",
            "url": f"{SHOP}/product.html?id={pid}",
            "image_url": f"{SHOP}/{pid}.jpg",
        }
        for pid, title, price in CATALOGUE
    ]
    with engine.begin() as conn:
        upsert_products(conn, rows, origin="test", now=NOW)


def write_events(settings: Settings, rows: list[dict[str, Any]]) -> None:
    schema = KINDS["events"].schema
    full = [
        {
            "event_id": f"ev-{i}-{r['type']}-{r.get('occurred_at', NOW).timestamp()}",
            "occurred_at": NOW - timedelta(hours=1),
            "ingested_at": NOW,
            **{k: (json.dumps(v) if k == "properties" else v) for k, v in r.items()},
        }
        for i, r in enumerate(rows)
    ]
    table = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in full], schema)
    append(settings.facts_path, KINDS["events"], table, ingested_at=NOW)


def write_orders(settings: Settings, baskets: list[list[str]]) -> None:
    schema = KINDS["orders"].schema
    rows = [
        {
            "line_id": f"o{n}-{pid}",
            "order_id": f"o{n}",
            "customer_id": f"C-{n}",
            "ordered_at": NOW - timedelta(days=10, hours=n),
            "product_id": pid,
            "quantity": 1,
            "unit_price": 10.0,
            "currency": "EUR",
            "discount": 0.0,
            "status": "paid",
            "ingested_at": NOW,
        }
        for n, basket in enumerate(baskets)
        for pid in basket
    ]
    table = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
    append(settings.facts_path, KINDS["orders"], table, ingested_at=NOW)


def add_contact(
    engine: Engine,
    *,
    customer_id: str = "C-LAPSED",
    language: str | None = None,
    style: str | None = None,
    lifecycle: str = "active",
) -> int:
    with engine.begin() as conn:
        cid = conn.execute(
            insert(contacts).values(
                customer_id=customer_id,
                language=language,
                created_at=NOW,
                updated_at=NOW,
                origin="test",
                attributes={},
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(identities).values(
                contact_id=cid, kind="anonymous_id", value=AID, first_seen=NOW
            )
        )
        conn.execute(
            insert(scores).values(
                contact_id=cid,
                as_of=NOW - timedelta(days=1),
                computed_at=NOW,
                orders=2,
                total_spent=50.0,
                lifecycle=lifecycle,
                threshold_days=60.0,
                style=style,
                details={},
            )
        )
    return int(cid)


def impression(placement: str, at: datetime, aid: str = AID) -> dict[str, Any]:
    return {
        "type": "onsite_impression",
        "anonymous_id": aid,
        "occurred_at": at,
        "properties": {"placement": placement, "variant": "x.neutral"},
    }


@pytest.fixture
def shop(home: Home, engine: Engine) -> Settings:
    seed_products(engine)
    return home.settings.model_copy(update={"allowed_origins": [SHOP]})


def on_product(pid: str, **more: Any) -> Visitor:
    return Visitor(anonymous_id=AID, page="product", product_id=pid, **more)


def test_a_product_page_gets_recommendations_and_a_cheaper_alternative_on_exit(
    shop: Settings, engine: Engine
) -> None:
    found = {p.placement: p for p in decide(shop, engine, on_product("sku-moka"), NOW)}
    assert set(found) == {"recommendations", "exit_intent"}
    recs = found["recommendations"]
    assert recs.kind == "up_sell" and recs.style == "neutral" and recs.language == "en"
    # the same category, dearer (up to twice the price), most bought first then by id
    assert [o.product_id for o in recs.products] == ["sku-grinder", "sku-scale"]
    assert recs.products[0].url == f"{SHOP}/product.html?id=sku-grinder"
    exit_ = found["exit_intent"]
    assert exit_.kind == "down_sell" and exit_.variant == "down_sell.neutral"
    assert [o.product_id for o in exit_.products] == ["sku-beans", "sku-espresso"]
    assert exit_.headline == headline("down_sell", "neutral", "en")


def test_people_who_bought_this_also_bought_comes_first(shop: Settings, engine: Engine) -> None:
    # moka and beans bought together (not by chance): a cross-sell, ahead of the up-sells
    write_orders(
        shop,
        [["sku-moka", "sku-beans"]] * 3 + [["sku-grinder"], ["sku-scale"], ["sku-espresso"]] * 3,
    )
    recs = decide(shop, engine, on_product("sku-moka"), NOW)[0]
    assert recs.placement == "recommendations" and recs.kind == "cross_sell"
    assert recs.products[0].product_id == "sku-beans"
    assert recs.headline == "People who viewed this then bought"


def test_a_cart_is_reminded_on_exit_rather_than_a_down_sell(shop: Settings, engine: Engine) -> None:
    write_events(
        shop,
        [
            {"type": "add_to_cart", "anonymous_id": AID, "product_id": "sku-grinder"},
            {"type": "add_to_cart", "anonymous_id": AID, "product_id": "sku-beans"},
            {"type": "remove_from_cart", "anonymous_id": AID, "product_id": "sku-beans"},
        ],
    )
    placements = decide(shop, engine, Visitor(anonymous_id=AID), NOW)
    assert [(p.placement, p.kind) for p in placements] == [("exit_intent", "cart")]
    assert [o.product_id for o in placements[0].products] == ["sku-grinder"]


def test_nothing_interrupts_beyond_the_cap(shop: Settings, engine: Engine) -> None:
    # the default on-site cap: one interrupting message a day
    write_events(shop, [impression("exit_intent", NOW - timedelta(hours=2))])
    found = [p.placement for p in decide(shop, engine, on_product("sku-moka"), NOW)]
    assert found == ["recommendations"]  # part of the page, not capped
    # the next day there is room again
    later = NOW + timedelta(days=1)
    found = [p.placement for p in decide(shop, engine, on_product("sku-moka"), later)]
    assert found == ["recommendations", "exit_intent"]
    # a recommendations impression does not count
    other = Visitor(anonymous_id="anon-visitor-0002", page="product", product_id="sku-moka")
    write_events(shop, [impression("recommendations", NOW, aid="anon-visitor-0002")])
    assert len(decide(shop, engine, other, NOW)) == 2


def test_the_week_cap_of_the_settings_applies(shop: Settings, engine: Engine) -> None:
    capped = shop.model_copy(
        update={"frequency_caps": {**shop.frequency_caps, "onsite": {"day": 5, "week": 2}}}
    )
    write_events(
        shop,
        [
            impression("exit_intent", NOW - timedelta(days=3)),
            impression("welcome_back", NOW - timedelta(days=2)),
        ],
    )
    found = [p.placement for p in decide(capped, engine, on_product("sku-moka"), NOW)]
    assert found == ["recommendations"]
    week_later = NOW + timedelta(days=5)
    assert "exit_intent" in [
        p.placement for p in decide(capped, engine, on_product("sku-moka"), week_later)
    ]


def test_impressions_under_another_cookie_of_the_contact_count(
    shop: Settings, engine: Engine
) -> None:
    contact = add_contact(engine, customer_id="C-TWO")
    with engine.begin() as conn:
        conn.execute(
            insert(identities).values(
                contact_id=contact, kind="anonymous_id", value="anon-laptop-001", first_seen=NOW
            )
        )
    write_events(shop, [impression("exit_intent", NOW - timedelta(hours=1), "anon-laptop-001")])
    found = [p.placement for p in decide(shop, engine, on_product("sku-moka"), NOW)]
    assert found == ["recommendations"]


def test_a_lapsed_customer_is_welcomed_back_in_their_style_and_language(
    shop: Settings, engine: Engine
) -> None:
    add_contact(engine, language="it", style="nurturer", lifecycle="at_risk")
    placements = decide(shop, engine, Visitor(anonymous_id=AID), NOW)
    assert [p.placement for p in placements] == ["welcome_back"]
    welcome = placements[0]
    assert welcome.variant == "welcome_back.nurturer" and welcome.language == "it"
    assert welcome.headline == "Bentornato, che piacere rivederti"
    # the page's language first
    page_fr = Visitor(anonymous_id=AID, language="fr-FR")
    assert decide(shop, engine, page_fr, NOW)[0].headline == "Bon retour, ravis de vous revoir"


def test_every_headline_exists_per_style_and_language() -> None:
    seen = set()
    for kind in ("cross_sell", "up_sell", "down_sell", "cart", "welcome_back"):
        for style in ("go_getter", "promoter", "nurturer", "examiner", "neutral"):
            for language in ("en", "it", "fr"):
                text = headline(kind, style, language)
                assert text and len(text) <= 60, (kind, style, language)
                seen.add(text)
    assert len(seen) > 60  # not one text for all


def test_a_refused_onsite_channel_gets_nothing(shop: Settings, engine: Engine) -> None:
    contact = add_contact(engine, lifecycle="lost")
    with engine.begin() as conn:
        conn.execute(
            insert(consents).values(
                contact_id=contact,
                channel="onsite",
                purpose="marketing",
                granted=False,
                source="test",
                recorded_at=NOW - timedelta(days=1),
            )
        )
    assert decide(shop, engine, on_product("sku-moka"), NOW) == []


def test_an_unknown_visitor_on_a_page_without_product_gets_nothing(
    shop: Settings, engine: Engine
) -> None:
    assert decide(shop, engine, Visitor(anonymous_id=AID), NOW) == []
    assert decide(shop, engine, Visitor(anonymous_id=None), NOW) == []
    assert [p.placement for p in decide(shop, engine, on_product("sku-unknown"), NOW)] == []


# ---- the route ---------------------------------------------------------------------------------


@pytest.fixture
def client(shop: Settings, engine: Engine) -> Iterator[TestClient]:
    app = Starlette(routes=onsite.routes())
    app.state.web = WebContext(shop, engine, FixedClock(NOW))
    with TestClient(app, headers={"user-agent": BROWSER}) as c:
        yield c


def test_the_route_answers_placements_with_html_and_cors(client: TestClient) -> None:
    answer = client.get(
        "/t/onsite",
        params={"aid": AID, "page": "product", "pid": "sku-moka"},
        headers={"origin": SHOP},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert answer.headers["cache-control"] == "no-store"
    placements = answer.json()["placements"]
    assert [p["placement"] for p in placements] == ["recommendations", "exit_intent"]
    recs = placements[0]
    assert recs["properties"] == {"placement": "recommendations", "variant": "up_sell.neutral"}
    assert 'data-pid="sku-grinder"' in recs["html"]
    assert "window.reengage.track(&quot;onsite_click&quot;" in recs["html"]
    assert "data-close" in placements[1]["html"] and "data-close" not in recs["html"]
    # the page defaults to a product page when a product is named
    again = client.get(
        "/t/onsite", params={"aid": AID, "pid": "sku-moka"}, headers={"origin": SHOP}
    )
    assert again.json()["placements"][0]["placement"] == "recommendations"


def test_the_route_escapes_what_the_catalogue_says(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_products(
            conn,
            [{"product_id": "sku-grinder", "title": '<img src=x onerror="alert(1)">'}],
            origin="test",
            now=NOW,
        )
    answer = client.get("/t/onsite", params={"aid": AID, "pid": "sku-moka"})
    html = answer.json()["placements"][0]["html"]
    assert "<img src=x" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_another_origin_and_bots_get_nothing(client: TestClient) -> None:
    params = {"aid": AID, "pid": "sku-moka"}
    other = client.get("/t/onsite", params=params, headers={"origin": "https://evil.example"})
    assert other.json() == {"placements": []}
    assert "access-control-allow-origin" not in other.headers
    bot = client.get("/t/onsite", params=params, headers={"user-agent": "Googlebot/2.1"})
    assert bot.json() == {"placements": []}
