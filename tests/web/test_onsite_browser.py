"""On-site messages in a real browser, set up as test_tracker.py: the sample shop on one origin,
reengage on another, a desktop Chromium in between. After consent the product page shows the
recommendations block, leaving the page through the top shows the exit-intent message once,
and not again beyond the cap; impressions and clicks are stored as events. Nothing before
consent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from browser import free_port, screenshot_path, served
from sqlalchemy import Engine
from test_tracker import COOKIE, Site, shop_app

from reengage.clock import SystemClock
from reengage.config import load_settings
from reengage.home import init_home
from reengage.state.db import engine_for
from reengage.state.products import upsert_products
from reengage.web.app import create_app

CATALOGUE = [  # the sample shop's products (shop.js), in one category
    ("sku-espresso", "Espresso cups (set of 4)", 24.0),
    ("sku-moka", "Moka pot, 6 cups", 39.9),
    ("sku-beans", "Coffee beans, 1 kg", 18.5),
    ("sku-grinder", "Hand grinder", 64.0),
]
# the pointer leaves the window through the top: what Chromium reports as it goes
LEAVE = """document.documentElement.dispatchEvent(new MouseEvent("mouseout",
  {bubbles: true, clientX: 400, clientY: -1, relatedTarget: null}))"""
# the shop turns on-site messages on (they are opt-in): as a command queued before the snippet
ONSITE_ON = 'window.reengage = [["init", {onsite: true}]];'
RECOMMENDATIONS = "[data-reengage='recommendations'] [data-placement='recommendations']"
EXIT = "[data-placement='exit_intent']"


class Asked:
    """The app, with the paths asked of it (as test_tracker's Counted)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/t/tracker.js":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def seed(engine: Engine, shop: str) -> None:
    rows = [
        {
            "product_id": pid,
            "title": title,
            "price": price,
            "currency": "EUR",
            "category": "coffee",
            "url": f"{shop}/product.html?id={pid}",
        }
        for pid, title, price in CATALOGUE
    ]
    with engine.begin() as conn:
        upsert_products(conn, rows, origin="test", now=datetime.now(UTC))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("onsite")
    shop_port = free_port()
    shop_origin = f"http://localhost:{shop_port}"
    env = {
        "REENGAGE_HOME": str(root / "home"),
        "REENGAGE_DATABASE_URL": f"sqlite:///{root / 'state.db'}",
        "REENGAGE_ALLOWED_ORIGINS": shop_origin,
    }
    settings = init_home(load_settings(env)).home.settings
    engine = engine_for(settings.state_url)
    try:
        seed(engine, shop_origin)
        app = Asked(create_app(settings, engine, SystemClock()))
        with served(app) as reengage, served(shop_app(reengage), port=shop_port):
            yield Site(settings, engine, reengage, shop_origin, app.paths)
    finally:
        engine.dispose()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A desktop Chrome-like profile."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(ONSITE_ON)
    try:
        yield ctx
    finally:
        ctx.close()


def open_page(site: Site, page: Any, path: str) -> None:
    page.goto(site.shop + path)
    page.wait_for_function("window.reengage && window.reengage.loaded === true")


def stored(site: Site, anonymous_id: str, type_: str) -> list[tuple[str | None, str]]:
    return [(p, props) for t, p, _, props in site.events_of(anonymous_id) if t == type_]


def test_nothing_before_consent(site: Site, context: Any) -> None:
    page = context.new_page()
    asked = len(site.asked)
    open_page(site, page, "/product.html?id=sku-moka")
    assert page.is_visible("#consent-banner")
    page.evaluate(LEAVE)
    page.wait_for_timeout(500)
    assert page.query_selector("[data-placement]") is None
    assert site.asked[asked:] == []
    assert context.cookies() == []


def test_recommendations_and_exit_intent_within_the_cap(site: Site, context: Any) -> None:
    page = context.new_page()
    open_page(site, page, "/product.html?id=sku-moka")
    with page.expect_response(lambda r: "/t/onsite?" in r.url) as answered:
        page.click("#consent-accept")
    assert answered.value.status == 200
    anonymous_id = next(c["value"] for c in context.cookies() if c["name"] == COOKIE)

    # the block, with products of the catalogue (dearer, same category), in the shop's element
    page.wait_for_selector(RECOMMENDATIONS)
    links = page.eval_on_selector_all(
        f"{RECOMMENDATIONS} a[data-pid]", "els => els.map(e => e.dataset.pid)"
    )
    assert links == ["sku-grinder"]
    assert page.query_selector(EXIT) is None  # not before the pointer leaves

    page.mouse.move(640, 300)
    page.mouse.move(640, 0)
    page.evaluate(LEAVE)
    dialog = page.wait_for_selector(EXIT)
    assert dialog.is_visible()
    text = dialog.inner_text()
    assert "Before you go" in text and "Coffee beans" in text  # a cheaper alternative
    page.screenshot(path=str(screenshot_path("shop-onsite-exit-intent")))
    page.click(f"{EXIT} button[data-close]")
    assert page.query_selector(EXIT) is None

    # leaving again on the same page, and after a reload: not again in this session
    page.evaluate(LEAVE)
    page.reload()
    page.wait_for_selector(RECOMMENDATIONS)
    page.evaluate(LEAVE)
    page.wait_for_timeout(300)
    assert page.query_selector(EXIT) is None

    def impressions() -> list[str] | None:
        found = [props for _, props in stored(site, anonymous_id, "onsite_impression")]
        shown = sum('"recommendations"' in p for p in found)
        return found if shown >= 2 and any('"exit_intent"' in p for p in found) else None

    found = site.wait_for(impressions, "the impressions are stored")
    assert sum('"exit_intent"' in p for p in found) == 1
    assert sum('"recommendations"' in p for p in found) == 2  # the page, then its reload
    assert all('"variant"' in p for p in found)

    # a click on a recommended product: recorded, and the shop's product page opens
    with page.expect_navigation():
        page.click(f"{RECOMMENDATIONS} a[data-pid='sku-grinder']")
    assert "id=sku-grinder" in page.url

    def clicks() -> list[tuple[str | None, str]] | None:
        return stored(site, anonymous_id, "onsite_click") or None

    clicked = site.wait_for(clicks, "the click is stored")
    assert clicked[0][0] == "sku-grinder" and '"recommendations"' in clicked[0][1]

    # a new tab (a new session for the snippet): the server's cap, one a day, says no more
    other = context.new_page()
    with other.expect_response(lambda r: "/t/onsite?" in r.url) as answered:
        open_page(site, other, "/product.html?id=sku-espresso")
    placements = [p["placement"] for p in answered.value.json()["placements"]]
    assert placements == ["recommendations"]
    other.wait_for_selector(RECOMMENDATIONS)
    other.evaluate(LEAVE)
    other.wait_for_timeout(300)
    assert other.query_selector(EXIT) is None
