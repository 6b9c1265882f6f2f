"""The tracking snippet in a real browser: the sample shop (examples/shop) served on one origin,
reengage on another, headless Chromium in between.

Nothing leaves the browser and no cookie is set before consent, with consent refused or with
Global Privacy Control on; after consent the shop's events reach the collector, and once the
visitor logs in their anonymous browsing is on their contact's timeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from browser import WAIT_SECONDS, free_port, screenshot_path, served
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from reengage.clock import SystemClock
from reengage.config import Settings, load_settings
from reengage.facts import reader
from reengage.home import init_home
from reengage.state.db import engine_for
from reengage.state.schema import contacts
from reengage.timeline import timeline
from reengage.web.app import create_app

SHOP_DIR = Path(__file__).resolve().parents[2] / "examples" / "shop"
TRACKER = Path(__file__).resolve().parents[2] / "src" / "reengage" / "web" / "static" / "tracker.js"
SHOP_SAYS = "http://localhost:8420"  # where the shop's pages expect reengage
COOKIE = "reengage_id"
GPC_ON = """Object.defineProperty(Navigator.prototype, "globalPrivacyControl",
  {get: () => true, configurable: true});"""
# counts the snippet's beacons in the tab: Playwright does not report a beacon sent as a page
# is left, and it would be the one request a page could let slip out unseen
COUNT_BEACONS = """(() => {
  const send = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, body) => {
    const n = Number(sessionStorage.getItem("test-beacons") || 0);
    sessionStorage.setItem("test-beacons", String(n + 1));
    return send(url, body);
  };
})();"""
T = TypeVar("T")


def shop_app(reengage_url: str) -> Starlette:
    """The sample shop as a static site, its pages pointed at the reengage under test."""

    async def page(request: Request) -> Response:
        name = request.path_params.get("name", "index")
        path = SHOP_DIR / f"{name}.html"
        if "/" in name or not path.is_file():
            return Response("not found", status_code=404)
        return HTMLResponse(path.read_text(encoding="utf-8").replace(SHOP_SAYS, reengage_url))

    return Starlette(
        routes=[
            Route("/", page),
            Route("/{name}.html", page),
            Mount("/", StaticFiles(directory=SHOP_DIR)),
        ]
    )


class Counted:
    """The app, with a list of the paths asked for (but the snippet itself): the collector's
    own view of what reached it, beacons included."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/t/tracker.js":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@dataclass
class Site:
    settings: Settings
    engine: Engine
    reengage: str  # the collector's origin
    shop: str  # the shop's origin: another host name, so another site
    asked: list[str]  # the paths asked of reengage, in order

    def wait_for(self, what: Callable[[], T | None], message: str) -> T:
        """Polls until `what` returns something true; a generous bound, not a speed requirement."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not (found := what()):
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting: {message}")
            time.sleep(0.2)
        return found

    def contact_id(self, customer_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(contacts.c.id).where(contacts.c.customer_id == customer_id)
            ).scalar_one_or_none()

    def events_of(self, anonymous_id: str) -> list[tuple[str, str | None, str | None, str]]:
        """(type, product_id, source, properties) of the stored events with this cookie id."""
        con = reader.connect(self.settings.facts_path)
        try:
            rows = con.execute(
                """SELECT type, product_id, source, coalesce(properties, '') FROM events
                   WHERE anonymous_id = $a ORDER BY occurred_at""",
                {"a": anonymous_id},
            ).fetchall()
        finally:
            con.close()
        return [(str(t), p, s, str(props)) for t, p, s, props in rows]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("tracker")
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
        app = Counted(create_app(settings, engine, SystemClock()))
        with served(app) as reengage, served(shop_app(reengage), port=shop_port):
            yield Site(settings, engine, reengage, shop_origin, app.paths)
    finally:
        engine.dispose()


@dataclass
class Visit:
    """One browser profile on the shop, watching what goes to reengage."""

    site: Site
    context: Any
    page: Any
    sent: list[Any] = field(default_factory=list)  # requests to reengage but tracker.js
    warnings: list[str] = field(default_factory=list)  # the snippet's console warnings
    asked_before: int = 0  # how many requests reengage had had when the visit began

    def open(self, path: str) -> None:
        self.page.goto(self.site.shop + path)
        # the snippet is loaded (so silence below is its doing, not a missing script)
        self.page.wait_for_function("window.reengage && window.reengage.loaded === true")

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.context.cookies()}

    def beacons(self) -> int:
        return int(self.page.evaluate("Number(sessionStorage.getItem('test-beacons') || 0)"))

    def assert_silent(self) -> None:
        """Nothing went to reengage, seen from the page, from its beacons and from reengage;
        no cookie was set. Asks the snippet to send what it holds and leaves the page first
        (the beacon moment), then gives any request so caused a moment to show."""
        self.page.evaluate("window.reengage.flush()")
        self.open("/index.html")
        self.page.evaluate("window.reengage.flush()")
        self.page.wait_for_timeout(1000)
        assert self.cookies() == {}
        assert self.sent == []
        assert self.beacons() == 0
        assert self.site.asked[self.asked_before :] == []


@pytest.fixture
def visit(chromium: Any, site: Site) -> Iterator[Callable[..., Visit]]:
    opened: list[Any] = []

    def start(*init_scripts: str) -> Visit:
        context = chromium.new_context()
        opened.append(context)
        for script in (COUNT_BEACONS, *init_scripts):
            context.add_init_script(script)
        page = context.new_page()
        v = Visit(site, context, page, asked_before=len(site.asked))

        def on_request(request: Any) -> None:
            if request.url.startswith(site.reengage) and not request.url.endswith("/tracker.js"):
                v.sent.append(request)

        def on_console(message: Any) -> None:
            if message.text.startswith("reengage:"):
                v.warnings.append(message.text)

        page.on("request", on_request)
        page.on("console", on_console)
        return v

    yield start
    for context in opened:
        context.close()


def browse_and_shop(v: Visit) -> None:
    """Look around, open a product, put it in the cart, take one out, go to checkout."""
    before = int(v.page.inner_text("#cart-count").removeprefix("Cart: "))
    v.page.click("button.add-to-cart[data-product='sku-beans']")
    v.page.click("a.product-link[href*='sku-moka']")
    v.page.wait_for_function("window.reengage && window.reengage.loaded === true")
    v.page.click("#add-to-cart")
    v.page.click("#add-to-cart")
    v.page.click("#remove-from-cart")
    v.page.click("#checkout")
    assert v.page.inner_text("#cart-count") == f"Cart: {before + 2}"


def test_nothing_before_consent(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.open("/")
    assert v.page.is_visible("#consent-banner")
    v.page.fill("input[name=q]", "moka")
    v.page.click("#search button")
    browse_and_shop(v)
    v.assert_silent()
    assert v.page.evaluate("window.reengage.consented()") is False


def test_events_after_consent_join_the_contact_on_login(
    visit: Callable[..., Visit], site: Site
) -> None:
    v = visit()
    v.open("/")
    v.page.screenshot(path=str(screenshot_path("shop-consent-banner")))
    v.page.click("button.add-to-cart[data-product='sku-espresso']")  # waits in memory
    assert v.cookies() == {} and v.sent == []
    with v.page.expect_response(lambda r: r.url == site.reengage + "/t/events") as answered:
        v.page.click("#consent-accept")
        v.page.evaluate("window.reengage.flush()")
    assert answered.value.status == 202
    body = answered.value.json()
    assert body["accepted"] >= 2 and body["rejected"] == []  # session_start, page_view, cart
    anonymous_id = v.cookies()[COOKIE]
    assert v.page.is_hidden("#consent-banner")

    browse_and_shop(v)
    v.page.screenshot(path=str(screenshot_path("shop-product-page")))
    v.open("/index.html")  # leaving the product page sends its events
    v.page.fill("#customer-id", "C-TRACK-1")
    v.page.fill("#email", "Giulia.Verdi@Example.org")
    with v.page.expect_response(lambda r: r.url == site.reengage + "/t/events") as answered:
        v.page.click("#login-button")
    assert answered.value.status == 202 and answered.value.json()["rejected"] == []
    assert v.page.inner_text("#logged-in-as") == "C-TRACK-1"
    assert v.cookies()[COOKIE] == anonymous_id  # one cookie id through the whole visit

    contact = site.wait_for(lambda: site.contact_id("C-TRACK-1"), "the contact is made")

    def stitched() -> list[dict[str, Any]] | None:
        items = [i for i in timeline(site.settings, site.engine, contact) if i["kind"] == "event"]
        seen = {(i["type"], i["detail"]["product_id"]) for i in items}
        wanted = {
            ("page_view", None),
            ("product_view", "sku-moka"),
            ("add_to_cart", "sku-espresso"),
            ("add_to_cart", "sku-beans"),
            ("add_to_cart", "sku-moka"),
            ("remove_from_cart", "sku-moka"),
            ("checkout_start", None),
        }
        return items if wanted <= seen else None

    items = site.wait_for(stitched, "the anonymous browsing is on the contact's timeline")
    before_login = [i for i in items if i["type"] != "identify"]
    assert all(i["detail"]["anonymous"] for i in before_login)
    assert {i["detail"]["device"] for i in items} == {"desktop"}
    assert len({i["detail"]["session_id"] for i in items}) == 1
    cart = next(i for i in items if i["detail"]["product_id"] == "sku-espresso")
    assert cart["detail"]["properties"] == {
        "quantity": 1,
        "price": 24.0,
        "title": "Espresso cups (set of 4)",
    }
    stored = [(t, p) for t, p, _, _ in site.events_of(anonymous_id)]
    assert stored.count(("product_view", "sku-moka")) == 1  # sent once, stored once
    assert {i["detail"]["source"] for i in items} == {"direct"}
    assert "giulia" not in str(items).lower()  # the address is the contact's, not an event's
    assert v.warnings == []


def test_global_privacy_control_means_no_tracking(visit: Callable[..., Visit]) -> None:
    v = visit(GPC_ON)
    v.open("/")
    assert v.page.evaluate("window.reengage.gpc") is True
    assert v.page.is_visible("#gpc-note")
    v.page.click("#consent-accept")  # GPC wins over the banner
    browse_and_shop(v)
    v.page.evaluate("window.reengage.consent(true)")
    v.assert_silent()


def test_refusing_sends_nothing(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.open("/")
    v.page.click("button.add-to-cart[data-product='sku-grinder']")
    v.page.click("#consent-refuse")  # drops what was waiting
    assert v.page.is_hidden("#consent-banner")
    browse_and_shop(v)
    v.assert_silent()
    assert v.page.evaluate("window.reengage.consented()") is False


def test_tracker_is_small_javascript(site: Site) -> None:
    answer = httpx.get(site.reengage + "/t/tracker.js", timeout=WAIT_SECONDS)
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] in {
        "text/javascript",
        "application/javascript",
    }
    assert len(answer.content) < 10 * 1024
    assert answer.content == TRACKER.read_bytes()


def test_leaving_the_page_sends_a_beacon(visit: Callable[..., Visit], site: Site) -> None:
    # a queued command before the snippet loads: nothing is sent on a timer
    v = visit('window.reengage = [["init", {flushInterval: 3600000}]];')
    v.open("/product.html?id=sku-grinder&utm_source=newsletter&utm_medium=email")
    v.page.click("#consent-accept")
    v.page.click("#add-to-cart")
    anonymous_id = v.cookies()[COOKIE]
    assert v.sent == [] and v.beacons() == 0  # everything still waits in the page
    v.page.click("#back")  # pagehide: the waiting batch goes by sendBeacon
    v.page.wait_for_function("window.reengage && window.reengage.loaded === true")
    assert v.beacons() == 1
    assert v.sent == []  # and not by fetch
    site.wait_for(lambda: site.asked[v.asked_before :], "the beacon reaches reengage")
    assert site.asked[v.asked_before :] == ["/t/events"]

    def stored() -> list[tuple[str, str | None, str | None, str]] | None:
        events = site.events_of(anonymous_id)
        return events if any(e[:2] == ("add_to_cart", "sku-grinder") for e in events) else None

    events = site.wait_for(stored, "the beacon's events are stored")
    kinds = {(t, p) for t, p, _, _ in events}
    assert {("session_start", None), ("page_view", None), ("product_view", "sku-grinder")} <= kinds
    assert {source for _, _, source, _ in events} == {"email"}  # from utm_medium
    page_view = next(props for t, _, _, props in events if t == "page_view")
    assert json.loads(page_view)["url"] == site.shop + "/product.html"  # no query string
    assert "newsletter" not in str(events) and "utm" not in str(events)
