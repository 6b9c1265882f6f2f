"""The dashboard in a real browser (headless Debian Chromium under Playwright), over a small
synthetic shop put through the demo's own steps: log in through the form, open every page,
check that every chart was drawn, read the reports with their intervals, find a contact and
read their timeline, preview a message in each style and language. A screenshot of every
page lands in ./screenshots.

Only SQLite: the pages read through the same queries the other tests run on both backends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import WAIT_SECONDS, screenshot_path, served
from sqlalchemy import select

from reengage.analytics.scoring import score
from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.demo import campaigns as demo_campaigns
from reengage.demo.synth import generate_shop
from reengage.demo.tour import IMPORT_ORDER
from reengage.home import init_home, open_state
from reengage.ingest.importer import import_file
from reengage.journeys import builtin_names, enable_journey
from reengage.journeys.runner import run_until
from reengage.state.schema import contacts, messages, scores
from reengage.users import create_user
from reengage.web.app import create_app

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
EMAIL = "marketing@example.com"
PASSWORD = "a long enough password"
WAIT_MS = WAIT_SECONDS * 1000

# path, the heading it shows, how many charts it draws
PAGES = [
    ("overview", "/dashboard/", "Overview", 2),
    ("customers", "/dashboard/customers", "Customers", 1),
    ("segments", "/dashboard/segments", "Segments", 1),
    ("journeys", "/dashboard/journeys", "Journeys", 0),
    ("messages", "/dashboard/messages", "Messages & campaigns", 1),
]


@dataclass(frozen=True)
class Site:
    base: str
    customer_id: str  # a scored contact who was sent messages
    contact_id: int


def build_shop(home_path: Path) -> Any:
    """A 150-customer shop: imported, journeys run over its last two weeks, scored, and the
    demo's win-back campaign (a subject test and a holdout) run and measured."""
    settings = init_home(load_settings({"REENGAGE_HOME": str(home_path)})).home.settings
    home, engine = open_state(settings)
    clock = FixedClock(NOW)
    folder = home_path / "shop"
    folder.mkdir(parents=True)
    generate_shop(folder, customers=150, seed=7, end=NOW.date())
    for kind in IMPORT_ORDER:
        import_file(home, engine, kind, folder / f"{kind}.csv", clock=clock)
    for name in builtin_names():
        enable_journey(home, name)
    run_until(
        home,
        engine,
        NOW,
        start=NOW - timedelta(days=14),
        step=timedelta(hours=6),
        score_every=timedelta(days=7),
    )
    score(home, engine, as_of=NOW, clock=clock)
    with pytest.MonkeyPatch.context() as patch:  # the win-back campaign alone: quicker
        patch.setattr(demo_campaigns, "CAMPAIGNS", {"winback_season": demo_campaigns.WINBACK})
        demo_campaigns.run_campaigns(home, engine, NOW)
    create_user(engine, EMAIL, PASSWORD, NOW)
    return settings, engine


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    settings, engine = build_shop(tmp_path_factory.mktemp("dashboard") / "home")
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.id, contacts.c.customer_id)
            .join(messages, messages.c.contact_id == contacts.c.id)
            .join(scores, scores.c.contact_id == contacts.c.id)
            .where(scores.c.p_go_getter.is_not(None), contacts.c.customer_id.is_not(None))
            .order_by(contacts.c.id)
            .limit(1)
        ).one()
    try:
        with served(create_app(settings, engine, FixedClock(NOW))) as base:
            yield Site(base, str(row.customer_id), int(row.id))
    finally:
        engine.dispose()


class Tab:
    """A logged-in page, with every message Chromium logged (a CSP violation is one)."""

    def __init__(self, browser: Any, site: Site) -> None:
        self.site = site
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(WAIT_MS)
        # nothing leaves the machine: a rendered email's product images point at the shop
        self.context.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(site.base) else route.abort()
            ),
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self.console)
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))

    def console(self, message: Any) -> None:
        # the images kept from leaving the machine fail with ERR_FAILED: not a problem
        if message.type == "error" and "net::ERR_FAILED" not in message.text:
            self.problems.append(message.text)

    def log_in(self) -> None:
        page = self.page
        page.goto(self.site.base + "/dashboard/customers")
        assert page.url.startswith(self.site.base + "/dashboard/login?next=")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == self.site.base + "/dashboard/customers"  # where they were going

    def charts_drawn(self, expected: int) -> None:
        page = self.page
        canvases = page.locator("canvas[data-chart]")
        assert canvases.count() == expected
        if expected:
            page.wait_for_function(
                "n => document.querySelectorAll('canvas[data-drawn=\"true\"]').length === n",
                arg=expected,
            )
        for i in range(expected):
            painted = canvases.nth(i).evaluate(
                """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                          let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
                          return n; }"""
            )
            assert painted > 500, f"chart {i} has {painted} painted pixels"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(chromium: Any, site: Site) -> Iterator[Tab]:
    opened = Tab(chromium, site)
    opened.log_in()
    try:
        yield opened
    finally:
        opened.close()
    assert opened.problems == []


def test_the_login_form_refuses_a_wrong_password(chromium: Any, site: Site) -> None:
    opened = Tab(chromium, site)
    try:
        page = opened.page
        page.goto(site.base + "/dashboard/")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", "not the password")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "Wrong email or password" in page.inner_text(".error")
        page.screenshot(path=str(screenshot_path("dashboard-login")))
    finally:
        opened.close()


def test_every_page_opens_with_its_charts_drawn(tab: Tab) -> None:
    page = tab.page
    for name, path, heading, charts in PAGES:
        page.goto(tab.site.base + path)
        assert page.inner_text("h1") == heading
        assert page.locator("nav a.current").count() == 1
        tab.charts_drawn(charts)
        page.screenshot(path=str(screenshot_path(f"dashboard-{name}")), full_page=True)
        if name == "customers":
            cells = page.locator("#rfm-grid td")
            assert cells.count() == 25
            assert sum(int(t) for t in cells.all_inner_texts()) > 0
            assert page.locator("#rfm-grid td.heat-8").count() >= 1  # the busiest cell
        if name == "journeys":
            assert page.locator("section.journey").count() >= 2
            counts = [int(t.replace(",", "")) for t in page.locator(".count").all_inner_texts()]
            assert counts and max(counts) > 0
            assert page.locator(".step-send").count() > 0
        if name == "messages":
            campaign = page.locator("#campaign-winback_season")
            assert "Lift" in campaign.inner_text() and "p = " in campaign.inner_text()
            assert campaign.locator("tr.winner").count() == 1
    assert tab.problems == []


def test_the_reports_page_shows_the_kpis_and_the_holdouts_with_intervals(tab: Tab) -> None:
    page = tab.page
    with page.expect_navigation():
        page.click("nav >> text=Reports")
    assert page.inner_text("h1") == "Reports"
    assert page.inner_text("nav a.current") == "Reports"
    # the last 30 days to the dashboard's now, by journey
    assert page.input_value("input[name=until]") == NOW.date().isoformat()
    assert page.input_value("input[name=since]") == (NOW - timedelta(days=30)).date().isoformat()
    groups = page.locator("#kpi-table tbody tr td:first-child").all_inner_texts()
    assert "winback_season" in groups and len(groups) >= 2
    tab.charts_drawn(1)  # revenue attributed and cost by group
    assert "not caused revenue" in page.inner_text("#attribution-note")
    # the fixture's journeys hold people out: at least one has entrants in both arms
    holdout = page.locator("section.holdout").first
    text = holdout.inner_text()
    assert re.search(r"\[\d+\.\d%, \d+\.\d%\]", text), text  # a rate's 95% interval
    assert re.search(r"Lift in conversion [+-]\d+\.\d pp \(95% interval \[", text), text
    assert "p = " in text and "Incremental revenue" in text
    assert holdout.locator("figure.forest").count() == 4
    assert holdout.locator("svg rect.band").count() >= 5  # both arms twice, the lift
    page.screenshot(path=str(screenshot_path("dashboard-reports")), full_page=True)
    # another grouping and period through the form
    page.select_option("select[name=by]", "week")
    page.fill("input[name=since]", (NOW - timedelta(days=14)).date().isoformat())
    with page.expect_navigation():
        page.click("form.report-form button")
    weeks = page.locator("#kpi-table tbody tr td:first-child").all_inner_texts()
    assert weeks and all(re.fullmatch(r"\d{4}-W\d{2}", w) for w in weeks), weeks
    tab.charts_drawn(1)


def test_a_contact_is_found_and_shows_their_timeline(tab: Tab) -> None:
    page = tab.page
    with page.expect_navigation():
        page.click("nav >> text=Contacts")
    page.fill("input[name=q]", tab.site.customer_id)
    with page.expect_navigation():
        page.click("form.search button")
    with page.expect_navigation():
        page.click(f"#contact-results a[href='/dashboard/contacts/{tab.site.contact_id}'] >> nth=0")
    assert page.inner_text("h1").startswith(f"Contact {tab.site.contact_id}")
    tab.charts_drawn(1)  # the style probabilities
    kinds = page.locator("#timeline li").evaluate_all("items => items.map(i => i.className)")
    assert any("kind-message" in k for k in kinds) and any("kind-order" in k for k in kinds)
    assert "Consents" in page.inner_text("main")
    page.screenshot(path=str(screenshot_path("dashboard-contact")), full_page=True)


def subject(tab: Tab) -> str:
    text: str = tab.page.inner_text("#preview-subject")
    frame = tab.page.frame_locator("#preview-frame")
    assert frame.locator("body").inner_text().strip()  # the email itself was rendered
    return text


def test_a_message_is_previewed_in_every_style_and_language(tab: Tab) -> None:
    page = tab.page
    with page.expect_navigation():
        page.click("nav >> text=Preview")
    if page.input_value("select[name=intent]") != "cart_reminder":
        with page.expect_navigation():  # a choice submits the form (no script needed: a button)
            page.select_option("select[name=intent]", "cart_reminder")
    by_style = {}
    for style in ("go_getter", "promoter", "nurturer", "examiner"):
        if page.input_value("select[name=style]") != style:
            with page.expect_navigation():
                page.select_option("select[name=style]", style)
        by_style[style] = subject(tab)
        page.screenshot(path=str(screenshot_path(f"dashboard-preview-{style}")), full_page=True)
    assert len(set(by_style.values())) == 4, by_style
    by_language = {}
    for language in ("en", "it", "fr"):
        if page.input_value("select[name=language]") != language:
            with page.expect_navigation():
                page.select_option("select[name=language]", language)
        by_language[language] = subject(tab)
    assert len(set(by_language.values())) == 3, by_language
    page.screenshot(path=str(screenshot_path("dashboard-preview")), full_page=True)


def test_logging_out_ends_the_session(tab: Tab) -> None:
    page = tab.page
    with page.expect_navigation():
        page.click("form.logout button")
    assert page.url.startswith(tab.site.base + "/dashboard/login")
    page.goto(tab.site.base + "/dashboard/messages")
    assert page.url.startswith(tab.site.base + "/dashboard/login?next=")
