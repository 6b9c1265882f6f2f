"""The links in messages, through the web app, on both backends: what each one records and
changes, and what a bad, tampered or someone else's token cannot do."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.facts import reader
from reengage.messages.tokens import sign
from reengage.state.contacts import current_consent
from reengage.state.schema import consents, contacts, messages, suppressions
from reengage.suppressions import is_suppressed, suppress
from reengage.web.app import create_app
from reengage.web.links import (
    click_url,
    open_url,
    preferences_url,
    unsubscribe_url,
)

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TARGET = "https://shop.example.com/p/42?utm_source=reengage&utm_medium=email&utm_campaign=cart"
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
APPLE_PROXY = "Mozilla/5.0"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Shop:
    settings: Settings
    engine: Engine
    clock: FixedClock
    client: TestClient
    anna: int  # a contact with an Italian profile and a hostile first name
    marc: int
    anna_msg: int
    marc_msg: int

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        con = reader.connect(self.settings.facts_path)
        try:
            rows = con.sql("SELECT * FROM message_events ORDER BY occurred_at").to_arrow_table()
        finally:
            con.close()
        found = rows.to_pylist()
        for row in found:
            row["properties"] = json.loads(row["properties"])
        return [r for r in found if kind is None or r["type"] == kind]

    def path(self, url: str) -> str:
        assert url.startswith(self.settings.public_url)
        return url.removeprefix(self.settings.public_url)

    def consent(self, contact_id: int, channel: str = "email") -> bool | None:
        with self.engine.connect() as conn:
            return current_consent(conn, contact_id, channel, "marketing")

    def suppressed(self, address: str) -> bool:
        with self.engine.connect() as conn:
            return is_suppressed(conn, "email", address)

    def count(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Iterator[Shop]:
    settings = load_settings(env)  # now with the secret init wrote
    now = clock.now()
    with engine.begin() as conn:
        ids = []
        for customer, email, first, language in (
            ("C1", "Giulia@Example.com", "<script>alert(1)</script>", "it-IT"),
            ("C2", "marc@example.fr", "Marc", "fr"),
        ):
            key = conn.execute(
                contacts.insert().values(
                    customer_id=customer,
                    email=email,
                    first_name=first,
                    language=language,
                    created_at=now - timedelta(days=90),
                    updated_at=now - timedelta(days=90),
                    origin="customers",
                    attributes={},
                )
            ).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        msgs = []
        for contact_id in ids:
            key = conn.execute(
                messages.insert().values(
                    message_key=f"cart-{contact_id}",
                    contact_id=contact_id,
                    channel="email",
                    intent="cart_reminder",
                    style="neutral",
                    language="en",
                    status="sent",
                    priority=0,
                    due_at=now - timedelta(hours=1),
                    created_at=now - timedelta(hours=1),
                    sent_at=now - timedelta(hours=1),
                    attempts=1,
                    payload={},
                )
            ).inserted_primary_key
            assert key is not None
            msgs.append(int(key[0]))
    client = TestClient(create_app(settings, engine, clock), follow_redirects=False)
    yield Shop(settings, engine, clock, client, ids[0], ids[1], msgs[0], msgs[1])
    client.close()


def test_healthz(shop: Shop) -> None:
    answer = shop.client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_a_click_redirects_to_the_signed_url_and_is_recorded_once(shop: Shop) -> None:
    url = click_url(shop.settings, shop.anna_msg, shop.anna, TARGET)
    assert url.startswith("http://127.0.0.1:8420/l/c/")
    first = shop.client.get(shop.path(url), headers={"user-agent": SAFARI})
    assert first.status_code == 302 and first.headers["location"] == TARGET
    again = shop.client.get(shop.path(url), headers={"user-agent": SAFARI})  # a double click
    assert again.headers["location"] == TARGET
    [click] = shop.events("click")
    assert click["message_id"] == str(shop.anna_msg)
    assert (click["customer_id"], click["channel"]) == ("C1", "email")
    assert click["properties"] == {"machine": False, "url": TARGET}
    assert click["occurred_at"] == shop.clock.now()
    shop.clock.advance(timedelta(minutes=5))
    shop.client.get(shop.path(url), headers={"user-agent": SAFARI})
    assert len(shop.events("click")) == 2
    # a HEAD (a link checker) redirects but records nothing
    assert shop.client.head(shop.path(url)).status_code == 302
    assert len(shop.events("click")) == 2


def test_a_bad_token_is_a_404_page_and_records_nothing(shop: Shop) -> None:
    url = shop.path(click_url(shop.settings, shop.anna_msg, shop.anna, TARGET))
    body, _, mac = url.removeprefix("/l/c/").partition(".")
    evil = sign(
        b"x" * 32, "click", {"m": shop.anna_msg, "c": shop.anna, "u": "https://evil.example"}
    )
    opener = shop.path(open_url(shop.settings, shop.anna_msg, shop.anna)).removesuffix(".gif")
    for path in (
        f"/l/c/{body[:-2]}AA.{mac}",  # payload edited
        f"/l/c/{body}.{mac[:-3]}",  # signature cut short
        f"/l/c/{evil}",  # signed with another key
        "/l/c/" + opener.removeprefix("/l/o/"),  # an open token used as a click
        "/l/c/nothing",
    ):
        answer = shop.client.get(path)
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
        assert "text/html" in answer.headers["content-type"]
    assert shop.events() == []


def test_a_signed_url_that_is_not_a_web_address_is_refused(shop: Shop) -> None:
    with pytest.raises(ValueError):
        click_url(shop.settings, shop.anna_msg, shop.anna, "javascript:alert(1)")
    for target in ("javascript:alert(1)", "//evil.example/", "https:/\\evil.example"):
        token = sign(
            shop.settings.secret(), "click", {"m": shop.anna_msg, "c": shop.anna, "u": target}
        )
        assert shop.client.get(f"/l/c/{token}").status_code == 404
    assert shop.events() == []


def test_the_open_pixel_tells_people_from_privacy_proxies(shop: Shop) -> None:
    url = shop.path(open_url(shop.settings, shop.anna_msg, shop.anna))
    assert url.endswith(".gif")
    person = shop.client.get(url, headers={"user-agent": SAFARI})
    assert person.status_code == 200 and person.headers["content-type"] == "image/gif"
    assert person.content.startswith(b"GIF89a") and "no-store" in person.headers["cache-control"]
    proxy = shop.client.get(url, headers={"user-agent": APPLE_PROXY})
    assert proxy.content == person.content
    opens = shop.events("open")
    assert sorted((e["properties"]["machine"], e["properties"].get("why")) for e in opens) == [
        (False, None),
        (True, "proxy_user_agent"),
    ]
    assert {e["customer_id"] for e in opens} == {"C1"}


def test_an_open_right_after_sending_is_a_prefetch(shop: Shop) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            messages.update()
            .where(messages.c.id == shop.marc_msg)
            .values(sent_at=shop.clock.now() - timedelta(seconds=5))
        )
    shop.client.get(
        shop.path(open_url(shop.settings, shop.marc_msg, shop.marc)), headers={"user-agent": SAFARI}
    )
    [event] = shop.events("open")
    assert event["properties"] == {"machine": True, "why": "prefetch"}


def test_a_bad_open_token_still_gets_a_pixel_and_records_nothing(shop: Shop) -> None:
    answer = shop.client.get("/l/o/forged.token.gif", headers={"user-agent": SAFARI})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert shop.events() == []


def test_get_never_unsubscribes_post_does_once(shop: Shop) -> None:
    url = shop.path(unsubscribe_url(shop.settings, shop.anna_msg, shop.anna))
    page = shop.client.get(url)
    assert page.status_code == 200
    assert "g•••@example.com" in page.text and "giulia@example.com" not in page.text.lower()
    assert "Disiscrivimi" in page.text  # the contact's language, it-IT
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'method="post"' in page.text
    shop.client.get(url)
    shop.client.head(url)
    assert shop.consent(shop.anna) is None
    assert not shop.suppressed("giulia@example.com")
    assert shop.events() == []

    done = shop.client.post(url, data=ONE_CLICK)  # RFC 8058: what Gmail and Apple Mail send
    assert done.status_code == 200 and "Fatto" in done.text
    assert shop.consent(shop.anna) is False
    assert shop.suppressed("giulia@example.com")
    with shop.engine.connect() as conn:
        row = conn.execute(select(consents).where(consents.c.contact_id == shop.anna)).one()
        assert (row.channel, row.purpose, row.granted, row.source) == (
            "email",
            "marketing",
            False,
            "unsubscribe_link",
        )
        kept = conn.execute(select(suppressions)).one()
        assert (kept.reason, kept.contact_id, kept.address) == (
            "unsubscribed",
            shop.anna,
            "giulia@example.com",
        )
    [event] = shop.events("unsubscribe")
    assert event["message_id"] == str(shop.anna_msg) and event["customer_id"] == "C1"

    shop.clock.advance(timedelta(minutes=3))
    again = shop.client.post(url, data=ONE_CLICK)
    assert again.status_code == 200 and "già" in again.text
    assert (shop.count(consents), shop.count(suppressions), len(shop.events())) == (1, 1, 1)
    assert "già" in shop.client.get(url).text  # the page now says so, with no button
    assert 'method="post"' not in shop.client.get(url).text
    # Marc is untouched
    assert shop.consent(shop.marc) is None and not shop.suppressed("marc@example.fr")


def test_the_page_button_unsubscribes_too(shop: Shop) -> None:
    url = shop.path(unsubscribe_url(shop.settings, None, shop.marc))  # a footer link
    assert "Me désinscrire" in shop.client.get(url).text
    answer = shop.client.post(url)
    assert answer.status_code == 200 and "C'est fait" in answer.text
    assert shop.consent(shop.marc) is False and shop.suppressed("marc@example.fr")
    assert shop.events() == []  # no message to tie an event to
    assert shop.consent(shop.anna) is None


def test_a_token_acts_only_on_its_own_contact(shop: Shop) -> None:
    secret = shop.settings.secret()
    anna = shop.path(unsubscribe_url(shop.settings, shop.anna_msg, shop.anna))
    body, _, mac = anna.removeprefix("/l/u/").partition(".")
    swapped = sign(b"y" * 32, "unsubscribe", {"m": shop.anna_msg, "c": shop.marc})
    # Marc's id with Anna's message: signed, but the message is not his
    mismatched = sign(secret, "unsubscribe", {"m": shop.anna_msg, "c": shop.marc})
    for token in (f"{swapped}", f"{body}.{mac}x", mismatched):
        assert shop.client.post(f"/l/u/{token}", data=ONE_CLICK).status_code == 404
        assert shop.client.get(f"/l/p/{token}").status_code == 404
    assert shop.client.post(anna, data=ONE_CLICK).status_code == 200
    assert shop.consent(shop.anna) is False
    assert shop.consent(shop.marc) is None and not shop.suppressed("marc@example.fr")
    # a preferences token is not an unsubscribe token
    prefs = shop.path(preferences_url(shop.settings, None, shop.marc)).removeprefix("/l/p/")
    assert shop.client.post(f"/l/u/{prefs}", data=ONE_CLICK).status_code == 404
    assert shop.consent(shop.marc) is None


def test_a_link_of_an_erased_contact_is_a_404(shop: Shop) -> None:
    url = shop.path(unsubscribe_url(shop.settings, shop.marc_msg, shop.marc))
    with shop.engine.begin() as conn:
        conn.execute(contacts.delete().where(contacts.c.id == shop.marc))
    assert shop.client.get(url).status_code == 404
    assert shop.client.post(url, data=ONE_CLICK).status_code == 404
    click = shop.path(click_url(shop.settings, shop.marc_msg, shop.marc, TARGET))
    assert shop.client.get(click).headers["location"] == TARGET  # still goes where it said
    assert shop.events() == []


def test_preferences_round_trip(shop: Shop) -> None:
    url = shop.path(preferences_url(shop.settings, shop.marc_msg, shop.marc))
    page = shop.client.get(url)
    assert page.status_code == 200 and "Vos préférences" in page.text
    assert "m•••@example.fr" in page.text and "marc@example.fr" not in page.text
    assert " checked" not in page.text
    choice = {"form": "preferences", "email": "on", "sms": "on"}
    saved = shop.client.post(url, data=choice)
    assert saved.status_code == 200 and "enregistrées" in saved.text
    assert saved.text.count(" checked") == 2
    assert [shop.consent(shop.marc, ch) for ch in ("email", "sms", "push")] == [True, True, False]
    rows = shop.count(consents)
    shop.clock.advance(timedelta(minutes=1))
    shop.client.post(url, data=choice)  # the same choice again changes nothing
    assert shop.count(consents) == rows
    assert shop.client.get(url).text.count(" checked") == 2
    # a POST without the page's form (a scanner) saves nothing
    shop.client.post(url)
    assert shop.consent(shop.marc, "email") is True
    shop.clock.advance(timedelta(minutes=1))
    shop.client.post(url, data={"form": "preferences", "sms": "on"})
    assert [shop.consent(shop.marc, ch) for ch in ("email", "sms", "push")] == [False, True, False]
    [event] = shop.events("unsubscribe")
    assert event["properties"] == {"via": "preferences"}
    assert shop.consent(shop.anna) is None


def test_opting_in_again_lifts_only_an_unsubscribe(shop: Shop) -> None:
    unsub = shop.path(unsubscribe_url(shop.settings, shop.anna_msg, shop.anna))
    prefs = shop.path(preferences_url(shop.settings, shop.anna_msg, shop.anna))
    shop.client.post(unsub, data=ONE_CLICK)
    shop.clock.advance(timedelta(minutes=1))
    shop.client.post(prefs, data={"form": "preferences", "email": "on"})
    assert shop.consent(shop.anna) is True and not shop.suppressed("giulia@example.com")
    with shop.engine.begin() as conn:
        suppress(conn, "email", "marc@example.fr", "bounced", source="dsn", at=shop.clock.now())
    marc = shop.path(preferences_url(shop.settings, None, shop.marc))
    page = shop.client.post(marc, data={"form": "preferences", "email": "on"})
    assert "rejetée" in page.text  # the page says why email will not come
    assert shop.suppressed("marc@example.fr")


def test_a_consent_stamped_in_the_future_does_not_swallow_an_unsubscribe(shop: Shop) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            consents.insert().values(
                contact_id=shop.anna,
                channel="email",
                purpose="marketing",
                granted=True,
                source="import",
                recorded_at=shop.clock.now() + timedelta(hours=2),
            )
        )
    shop.client.post(shop.path(unsubscribe_url(shop.settings, None, shop.anna)), data=ONE_CLICK)
    assert shop.consent(shop.anna) is False


def test_pages_escape_the_shop_name_too(shop: Shop) -> None:
    settings = shop.settings.model_copy(update={"shop_name": "<b>Bottega</b> & Co"})
    client = TestClient(create_app(settings, shop.engine, shop.clock))
    for url in (
        unsubscribe_url(settings, None, shop.marc),
        preferences_url(settings, None, shop.marc),
    ):
        text = client.get(shop.path(url)).text
        assert "<b>Bottega" not in text and "&lt;b&gt;Bottega&lt;/b&gt; &amp; Co" in text
    assert "&lt;b&gt;" in client.get("/l/u/bad.token").text
