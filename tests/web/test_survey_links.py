"""One-click survey answers through the web app, on both backends: what a person's click
records (on the contact and in the events facts), what a scanner's fetch does not, what a bad
token cannot do, and what a negative answer sets off (the signed support webhook, the pause
of promotions the contact policy enforces)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from channels.local_peer import Reply, Request, local_peer
from reengage.channels.policy import PAUSED_AFTER_FEEDBACK, check
from reengage.channels.webhook import verify_signature
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.facts import reader
from reengage.messages.tokens import sign
from reengage.state.contacts import ConsentChange, record_consents
from reengage.state.schema import contacts, messages
from reengage.surveys import PAUSE
from reengage.web.app import create_app
from reengage.web.survey_links import survey_url

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
APPLE_PROXY = "Mozilla/5.0"
SECRET = "whsec_" + "s" * 32


@dataclass
class Shop:
    env: dict[str, str]
    engine: Engine
    clock: FixedClock
    people: dict[str, int]  # anna (it), marc (fr), eve (no language: the shop's, en)
    sent: dict[str, int]  # a message of each, sent an hour ago

    def client(self, **extra: str) -> TestClient:
        settings = self.settings(**extra)
        return TestClient(create_app(settings, self.engine, self.clock), follow_redirects=False)

    def settings(self, **extra: str) -> Settings:
        return load_settings({**self.env, **extra})

    def link(self, who: str, survey: str, answer: str) -> str:
        url = survey_url(self.settings(), self.sent[who], self.people[who], survey, answer)
        return url.removeprefix(self.settings().public_url)

    def attributes(self, who: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(contacts.c.attributes).where(contacts.c.id == self.people[who])
            ).scalar_one()
        assert isinstance(found, dict)
        return found

    def answers(self) -> list[dict[str, Any]]:
        con = reader.connect(self.settings().facts_path)
        try:
            rows = con.sql(
                "SELECT * FROM events WHERE type = 'survey_answer' ORDER BY occurred_at"
            ).to_arrow_table()
        finally:
            con.close()
        found = rows.to_pylist()
        for row in found:
            row["properties"] = json.loads(row["properties"])
        return found


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Iterator[Shop]:
    now = clock.now()
    people, sent = {}, {}
    with engine.begin() as conn:
        for name, customer, email, first, language in (
            ("anna", "C1", "anna@example.it", "<b>Anna</b>", "it-IT"),
            ("marc", "C2", "marc@example.fr", "Marc", "fr"),
            ("eve", "C3", "eve@example.com", None, None),
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
                    attributes={"vip": True},
                )
            ).inserted_primary_key
            assert key is not None
            people[name] = int(key[0])
            message = conn.execute(
                messages.insert().values(
                    message_key=f"survey-{name}",
                    contact_id=people[name],
                    channel="email",
                    intent="nps_survey",
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
            assert message is not None
            sent[name] = int(message[0])
        record_consents(
            conn,
            [
                ConsentChange(
                    people["anna"], "email", "marketing", True, "test", now - timedelta(days=9)
                ),
            ],
        )
    yield Shop(env, engine, clock, people, sent)


def test_one_click_records_the_answer_and_thanks_in_the_contacts_language(shop: Shop) -> None:
    client = shop.client()
    page = client.get(shop.link("anna", "nps", "9"), headers={"user-agent": SAFARI})
    assert page.status_code == 200
    assert "<title>Grazie" in page.text and "(9)" in page.text
    assert "&lt;b&gt;Anna&lt;/b&gt;" in page.text  # her name, escaped
    assert page.headers["referrer-policy"] == "no-referrer"
    attributes = shop.attributes("anna")
    assert attributes["vip"] is True  # the other attributes are kept
    assert attributes["surveys"] == {
        "nps": {"answer": 9, "at": shop.clock.now().isoformat(), "message_id": shop.sent["anna"]}
    }
    assert "promotions_paused_until" not in attributes  # 9 is no complaint
    [event] = shop.answers()
    assert (event["customer_id"], event["type"], event["source"]) == (
        "C1",
        "survey_answer",
        "reengage",
    )
    assert event["properties"] == {"survey": "nps", "answer": 9, "message_id": shop.sent["anna"]}
    assert event["occurred_at"] == shop.clock.now()

    # the same click again (a double click, the back button): nothing new
    shop.clock.advance(timedelta(minutes=3))
    assert client.get(shop.link("anna", "nps", "9"), headers={"user-agent": SAFARI}).is_success
    assert len(shop.answers()) == 1
    # another answer to the same message: the latest counts, the change is an event
    client.get(shop.link("anna", "nps", "10"), headers={"user-agent": SAFARI})
    assert shop.attributes("anna")["surveys"]["nps"]["answer"] == 10
    assert [e["properties"]["answer"] for e in shop.answers()] == [9, 10]

    french = client.get(shop.link("marc", "checkin", "good"), headers={"user-agent": SAFARI})
    assert "<title>Merci" in french.text and "Tout va bien" in french.text
    english = client.get(shop.link("eve", "winback", "price"), headers={"user-agent": SAFARI})
    assert "<title>Thank you" in english.text and "Too expensive" in english.text
    assert shop.attributes("eve")["surveys"]["winback"]["answer"] == "price"
    assert {(e["customer_id"], e["properties"]["survey"]) for e in shop.answers()} == {
        ("C1", "nps"),
        ("C2", "checkin"),
        ("C3", "winback"),
    }


def test_a_bad_token_is_a_404_page_and_records_nothing(shop: Shop) -> None:
    client = shop.client()
    good = shop.link("anna", "nps", "9").removeprefix("/l/s/")
    body, _, mac = good.partition(".")
    secret = shop.settings().secret()
    ids = {"c": shop.people["anna"], "m": shop.sent["anna"]}
    for token in (
        f"{body[:-2]}AA.{mac}",  # payload edited
        f"{body}.{mac[:-3]}",  # signature cut short
        sign(b"x" * 32, "survey", {**ids, "s": "nps", "a": "9"}),  # another key
        sign(secret, "click", {**ids, "s": "nps", "a": "9"}),  # another purpose
        sign(secret, "survey", {**ids, "s": "nps", "a": "11"}),  # not an answer
        sign(secret, "survey", {**ids, "s": "mood", "a": "9"}),  # not a survey
        # someone else's message
        sign(
            secret,
            "survey",
            {"c": shop.people["anna"], "m": shop.sent["marc"], "s": "nps", "a": "9"},
        ),
        "nothing",
    ):
        for method in ("GET", "POST"):
            answer = client.request(method, f"/l/s/{token}", headers={"user-agent": SAFARI})
            assert answer.status_code == 404, token
            assert "Link non valido" not in answer.text  # the shop's language: en
    assert shop.answers() == []
    assert "surveys" not in shop.attributes("anna")
    # the other links under /l still answer
    assert client.get("/l/c/nothing").status_code == 404


def test_a_scanners_fetch_asks_and_only_the_button_answers(shop: Shop) -> None:
    client = shop.client()
    path = shop.link("marc", "checkin", "problem")
    for agent in (APPLE_PROXY, ""):
        page = client.get(path, headers={"user-agent": agent})
        assert page.status_code == 200
        assert f'<form method="post" action="{path}">' in page.text
        assert "Envoyer ma réponse" in page.text
    assert client.head(path).status_code == 200
    # a browser user agent, but within a minute of sending: a security scanner's prefetch
    with shop.engine.begin() as conn:
        conn.execute(
            messages.update()
            .where(messages.c.id == shop.sent["marc"])
            .values(sent_at=shop.clock.now() - timedelta(seconds=20))
        )
    assert "<form" in client.get(path, headers={"user-agent": SAFARI}).text
    assert shop.answers() == [] and "surveys" not in shop.attributes("marc")

    done = client.post(path)  # the page's button
    assert done.status_code == 200 and "<form" not in done.text
    assert "Merci de nous l'avoir dit" in done.text  # sorry: a problem
    assert shop.attributes("marc")["surveys"]["checkin"]["answer"] == "problem"
    [event] = shop.answers()
    assert event["properties"]["support"] == "not_configured"  # no webhook in this home


def test_a_negative_answer_goes_to_support_signed_and_pauses_promotions(shop: Shop) -> None:
    checked: list[bool] = []

    def support(request: Request) -> Reply:
        checked.append(
            verify_signature(
                SECRET, request.headers["reengage-signature"], request.body, shop.clock.now()
            )
        )
        return Reply(204)

    with local_peer(support) as peer:
        client = shop.client(
            REENGAGE_WEBHOOK_URL=f"{peer.url}/support/feedback", REENGAGE_WEBHOOK_SECRET=SECRET
        )
        page = client.get(shop.link("anna", "nps", "3"), headers={"user-agent": SAFARI})
        assert page.status_code == 200 and "Ci dispiace" in page.text
        # the same answer again: no second call to support
        client.get(shop.link("anna", "nps", "3"), headers={"user-agent": SAFARI})
        # a positive answer of someone else: no call at all
        client.get(shop.link("eve", "nps", "10"), headers={"user-agent": SAFARI})
    assert checked == [True]
    request = peer.last
    assert (request.method, request.path) == ("POST", "/support/feedback")
    assert request.headers["content-type"] == "application/json"
    now = shop.clock.now()
    until = now + PAUSE
    body = request.json()
    assert request.headers["reengage-event-id"] == body["id"]
    assert body["type"] == "feedback.negative"
    assert body["created"] == int(now.timestamp())
    assert body["feedback"] == {
        "survey": "nps",
        "answer": 3,
        "message_id": shop.sent["anna"],
        "answered_at": now.isoformat(),
        "promotions_paused_until": until.isoformat(),
    }
    assert body["contact"] == {
        "id": shop.people["anna"],
        "customer_id": "C1",
        "email": "anna@example.it",
        "first_name": "<b>Anna</b>",
        "language": "it-IT",
    }
    assert shop.attributes("anna")["promotions_paused_until"] == until.isoformat()
    assert {e["customer_id"]: e["properties"].get("support") for e in shop.answers()} == {
        "C1": "sent",
        "C3": None,
    }

    # promotions are blocked while paused; service messages still go
    settings = shop.settings()
    noon = now.replace(hour=12) + timedelta(days=2)
    with shop.engine.connect() as conn:
        promo = check(conn, shop.people["anna"], "email", "marketing", 50, noon, settings)
        service = check(conn, shop.people["anna"], "email", "transactional", 50, noon, settings)
        later = check(conn, shop.people["anna"], "email", "marketing", 50, noon + PAUSE, settings)
        eve = check(conn, shop.people["eve"], "email", "transactional", 50, noon, settings)
    assert (promo.action, promo.reason) == ("block", PAUSED_AFTER_FEEDBACK)
    assert "paused after a negative answer" in promo.text
    assert service.allowed and eve.allowed
    assert later.reason != PAUSED_AFTER_FEEDBACK


def test_support_unreachable_still_pauses_and_says_so(shop: Shop) -> None:
    def down(request: Request) -> Reply:
        return Reply(503)

    with local_peer(down) as peer:
        client = shop.client(REENGAGE_WEBHOOK_URL=peer.url, REENGAGE_WEBHOOK_SECRET=SECRET)
        page = client.get(shop.link("eve", "winback", "quality"), headers={"user-agent": SAFARI})
        # information, not a complaint: no call, no pause
        client.get(shop.link("marc", "winback", "price"), headers={"user-agent": SAFARI})
    assert page.status_code == 200 and "We are sorry" in page.text
    assert len(peer.requests) == 1
    assert "promotions_paused_until" in shop.attributes("eve")
    assert "promotions_paused_until" not in shop.attributes("marc")
    assert {e["customer_id"]: e["properties"].get("support") for e in shop.answers()} == {
        "C3": "failed",
        "C2": None,
    }
