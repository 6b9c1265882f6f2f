"""Delivering the outbox, on SQLite and PostgreSQL, into a real SMTP server (aiosmtpd) or the
maildir: what arrives, what the links do through the web app, what the policy holds back,
retries, crashed workers and concurrent dispatchers."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import itertools
import json
import mailbox
import socket
import threading
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select

from reengage.channels.delivery import Outgoing, Receipt
from reengage.channels.mail import MailBuilder, outbox_id_from_message_id
from reengage.channels.smtp import SmtpChannel, parse_smtp_url
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.facts import reader
from reengage.measure.utm import Origin, tag, tags
from reengage.messages.copy import Catalogue
from reengage.messages.dispatch import LEASE, UNCONFIRMED, claim, deliver_due, retry_delay
from reengage.messages.outbox import enqueue
from reengage.messages.render import Links, Renderer
from reengage.state.contacts import current_consent
from reengage.state.schema import consents, contacts, messages, products, scores, suppressions
from reengage.suppressions import is_suppressed
from reengage.web.app import create_app
from reengage.web.links import click_url, open_url

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PUBLIC = "https://links.shop.example"
SHOP = "https://shop.example.com"


def tagged(shop: Any, message_id: int, url: str) -> str:
    """A link to the shop as a message carries it: with the message's utm tags."""
    row = shop.row(message_id)
    origin = Origin(
        row.channel, row.journey or row.campaign, row.step, row.variant, row.intent, row.style
    )
    return tag(url, tags(shop.settings.utm, origin))


# Monday 2 November 2026, 10:00 UTC: 11:00 in Rome, outside quiet hours
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
CART = {
    "cart": [
        {
            "title": "Borsa in pelle",
            "price": "€ 120,00",
            "quantity": 1,
            "url": f"{SHOP}/p/borsa",
            "image_url": f"{SHOP}/i/borsa.jpg",
        }
    ],
    "cart_total": "€ 120,00",
    "cart_count": 1,
    "cart_url": f"{SHOP}/cart?restore=abc",
}
_keys = itertools.count(1)


# --- a real SMTP server -------------------------------------------------------------------


@dataclass
class Inbox:
    """Keeps what it accepts; answers DATA from `data_replies` first when the test scripts it."""

    messages: list[bytes] = field(default_factory=list)
    data_replies: deque[str] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.popleft()
            self.messages.append(envelope.content)
            return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            found = list(self.messages)
        out = []
        for data in found:
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.parsed())


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


# --- a shop -------------------------------------------------------------------------------


@dataclass
class Shop:
    home: Home
    engine: Engine
    clock: FixedClock

    @property
    def settings(self) -> Any:
        return self.home.settings

    def person(
        self,
        *,
        email: str | None = None,
        language: str | None = "en",
        timezone: str | None = "Europe/Rome",
        style: str | None = "go_getter",
        consent: bool | None = True,
        first_name: str = "Anna",
        cart_products: list[str] | None = None,
    ) -> int:
        n = next(_keys)
        now = self.clock.now()
        with self.engine.begin() as conn:
            key = conn.execute(
                contacts.insert().values(
                    customer_id=f"C{n}",
                    email=email or f"person{n}@example.org",
                    first_name=first_name,
                    language=language,
                    timezone=timezone,
                    created_at=now - timedelta(days=200),
                    updated_at=now - timedelta(days=200),
                    origin="customers",
                    attributes={},
                )
            ).inserted_primary_key
            assert key is not None
            contact_id = int(key[0])
            if consent is not None:
                conn.execute(
                    consents.insert().values(
                        contact_id=contact_id,
                        channel="email",
                        purpose="marketing",
                        granted=consent,
                        source="signup",
                        recorded_at=now - timedelta(days=100),
                    )
                )
            if style is not None:
                conn.execute(
                    scores.insert().values(
                        contact_id=contact_id,
                        as_of=now - timedelta(days=1),
                        computed_at=now - timedelta(days=1),
                        orders=1,
                        recency_days=60.0,
                        total_spent=80.0,
                        lifecycle="active",
                        threshold_days=120.0,
                        style=style,
                        details={"cart_products": cart_products or []},
                    )
                )
        return contact_id

    def queue(
        self,
        contact_id: int,
        intent: str = "cart_reminder",
        *,
        payload: dict[str, Any] | None = None,
        due: datetime | None = None,
        key: str | None = None,
        **values: Any,
    ) -> int:
        with self.engine.begin() as conn:
            found = enqueue(
                conn,
                message_key=key or f"test:{next(_keys)}",
                contact_id=contact_id,
                intent=intent,
                channel=values.pop("channel", "email"),
                due_at=due or self.clock.now(),
                clock=self.clock,
                settings=self.settings,
                payload=CART if payload is None else payload,
                **values,
            )
        assert found is not None
        return found

    def row(self, message_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(messages).where(messages.c.id == message_id)).one()

    def statuses(self) -> Counter[str]:
        with self.engine.connect() as conn:
            return Counter(conn.execute(select(messages.c.status)).scalars())

    def events(self) -> list[dict[str, Any]]:
        con = reader.connect(self.settings.facts_path)
        try:
            rows = con.sql(
                "SELECT * FROM message_events ORDER BY message_id, type"
            ).to_arrow_table()
        finally:
            con.close()
        found = rows.to_pylist()
        for r in found:
            r["properties"] = json.loads(r["properties"])
        return found

    def with_settings(self, **values: Any) -> Shop:
        return Shop(Home(self.settings.model_copy(update=values)), self.engine, self.clock)

    def deliver(self, **options: Any) -> Any:
        return deliver_due(self.home, self.engine, self.clock, **options)


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str]) -> Shop:
    settings = load_settings(env).model_copy(  # with the secret init wrote
        update={
            "public_url": PUBLIC,
            "shop_url": SHOP,
            "shop_name": "Bottega",
            "mail_from": "Bottega <news@shop.example.com>",
        }
    )
    return Shop(Home(settings), engine, FixedClock(T0))


def smtp(shop: Shop, port: int) -> Shop:
    return shop.with_settings(smtp_url=f"smtp://127.0.0.1:{port}")


def no_wait_channel(shop: Shop, port: int) -> SmtpChannel:
    """The SMTP channel with its in-send retries not waiting."""
    return SmtpChannel(
        parse_smtp_url(f"smtp://127.0.0.1:{port}"),
        MailBuilder(shop.settings),
        shop.clock,
        sleep=lambda _s: None,
    )


# --- end to end -----------------------------------------------------------------------------


def test_an_email_goes_out_complete_and_its_one_click_unsubscribe_works(shop: Shop) -> None:
    anna = shop.person(
        email="anna.rossi@example.org", language="it-IT", style="go_getter", first_name="Anna"
    )
    first = shop.queue(anna, journey="cart", step="reminder_1")
    with smtp_server() as (inbox, port):
        shop = smtp(shop, port)
        summary = shop.deliver()
        assert (summary.claimed, summary.sent) == (1, 1)
        [msg] = inbox.parsed()

        # the headers a mailbox provider expects of a bulk sender
        secret = shop.settings.secret()
        assert outbox_id_from_message_id(secret, msg["Message-ID"]) == first
        assert msg["Date"] == email.utils.format_datetime(T0)
        assert msg["From"] == "Bottega <news@shop.example.com>"
        assert msg["To"] == "anna.rossi@example.org"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = (p.strip().strip("<>") for p in str(msg["List-Unsubscribe"]).split(","))
        assert https.startswith(f"{PUBLIC}/l/u/")
        assert mailto.startswith("mailto:unsubscribe@shop.example.com?subject=unsubscribe-")
        assert msg["Feedback-ID"] == "cart:cart_reminder:reengage"
        assert not msg.defects

        # the subject in the contact's language and style, as the copy renders it
        renderer = Renderer(Catalogue.for_settings(shop.settings))
        row = shop.row(first)
        assert (row.style, row.variant, row.language) == ("go_getter", "go_getter", "it")
        from reengage.messages.context import Context

        context = Context.from_payload({"shop_name": "Bottega", "shop_url": SHOP, **CART})
        links = Links(unsubscribe="u", preferences="p")
        expected = renderer.render("cart_reminder", "go_getter", "it", context, links).subject
        neutral_en = renderer.render("cart_reminder", "neutral", "en", context, links).subject
        assert msg["Subject"] == expected != neutral_en
        assert (row.status, row.subject, row.attempts) == ("sent", expected, 1)
        assert row.provider_id == "Q1" and row.sent_at is not None

        # the HTML: the button click-tracked to the cart, the open pixel
        html = msg.get_body(("html",))
        assert html is not None
        body = html.get_content()
        target = tagged(shop, first, CART["cart_url"])
        assert "utm_source=reengage&utm_medium=email" in target  # the shop's analytics agree
        cta = click_url(shop.settings, first, anna, target)
        assert f'href="{cta}"' in body
        assert f'src="{open_url(shop.settings, first, anna)}"' in body
        text = msg.get_body(("plain",))
        assert text is not None and "Borsa in pelle" in text.get_content()

        # the links work through the web app: a click redirects, the one-click POST unsubscribes
        client = TestClient(create_app(shop.settings, shop.engine, shop.clock))
        click = client.get(urlsplit(cta).path, follow_redirects=False)
        assert click.status_code == 302 and click.headers["location"] == target
        answer = client.post(
            urlsplit(https).path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200
        client.close()
        with shop.engine.connect() as conn:
            assert current_consent(conn, anna, "email", "marketing") is False
            address = conn.execute(select(contacts.c.email).where(contacts.c.id == anna)).scalar()
            assert is_suppressed(conn, "email", address)

        # and the next message to her is blocked, not sent
        shop.clock.advance(timedelta(days=2))
        second = shop.queue(anna)
        summary = shop.deliver()
        assert (summary.sent, summary.blocked) == (0, 1)
        assert summary.reasons == {"no_consent": 1}
        assert len(inbox.parsed()) == 1
    row = shop.row(second)
    assert (row.status, row.reason, row.sent_at) == ("blocked", "no_consent", None)
    # the facts hold a sent event for the first message, the click and the unsubscribe
    events = shop.events()
    assert sorted(e["type"] for e in events) == ["click", "sent", "unsubscribe"]
    sent = next(e for e in events if e["type"] == "sent")
    assert sent["message_id"] == str(first) and sent["channel"] == "email"
    assert sent["properties"]["variant"] == "go_getter"
    assert sent["properties"]["journey"] == "cart"


def test_the_maildir_is_the_default_sink(shop: Shop) -> None:
    anna = shop.person(style=None, language=None)
    sent = shop.queue(anna)
    again = shop.deliver()
    assert again.sent == 1
    box = mailbox.Maildir(shop.settings.mail_path, create=False)
    [raw] = [m.as_bytes() for m in box]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert outbox_id_from_message_id(shop.settings.secret(), msg["Message-ID"]) == sent
    row = shop.row(sent)
    assert (row.style, row.variant, row.language) == ("unknown", "neutral", "en")
    assert row.status == "sent" and row.provider_id.startswith(f"reengage.{sent}.")
    assert shop.deliver().claimed == 0  # nothing left


# --- the policy at claim time -------------------------------------------------------------------


def test_without_consent_a_message_is_blocked_not_sent(shop: Shop) -> None:
    never = shop.person(consent=None)
    withdrawn = shop.person(consent=False)
    ids = [shop.queue(never), shop.queue(withdrawn)]
    summary = shop.deliver()
    assert (summary.blocked, summary.sent) == (2, 0)
    for message_id in ids:
        row = shop.row(message_id)
        assert (row.status, row.reason, row.attempts) == ("blocked", "no_consent", 0)
    assert not (shop.settings.mail_path / "new").exists() or not any(
        (shop.settings.mail_path / "new").iterdir()
    )
    assert shop.events() == []


def test_a_suppressed_address_is_blocked(shop: Shop) -> None:
    anna = shop.person(email="Anna@Example.org")
    with shop.engine.begin() as conn:
        conn.execute(
            suppressions.insert().values(
                channel="email",
                address="anna@example.org",
                reason="bounced",
                source="dsn",
                recorded_at=T0,
            )
        )
    sent = shop.queue(anna)
    assert shop.deliver().blocked == 1
    row = shop.row(sent)
    assert (row.status, row.reason) == ("blocked", "suppressed:bounced")


def test_quiet_hours_defer_a_message_and_it_goes_in_the_morning(shop: Shop) -> None:
    shop.clock.advance(timedelta(hours=12))  # 22:00 UTC, 23:00 in Rome
    anna = shop.person(timezone="Europe/Rome")
    held = shop.queue(anna)
    summary = shop.deliver()
    assert (summary.deferred, summary.sent) == (1, 0)
    row = shop.row(held)
    morning = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)  # 09:00 in Rome
    assert (row.status, row.reason, row.attempts) == ("queued", "quiet_hours", 0)
    assert row.claimed_at is None
    assert row.due_at.replace(tzinfo=UTC) == morning
    assert shop.deliver().claimed == 0  # not due yet: nothing is dropped, nothing goes
    shop.clock.advance(morning - shop.clock.now())
    assert shop.deliver().sent == 1
    assert shop.row(held).status == "sent"


def test_a_cap_lets_one_of_two_promotions_through_and_defers_the_other(shop: Shop) -> None:
    anna = shop.person()
    low = shop.queue(anna, "cross_sell", priority=20, payload={})
    high = shop.queue(anna, priority=80)
    summary = shop.deliver()
    assert (summary.sent, summary.deferred) == (1, 1)
    assert shop.row(high).status == "sent"
    row = shop.row(low)
    assert (row.status, row.reason) == ("queued", "cap:email:day")
    assert row.due_at.replace(tzinfo=UTC) > T0


# --- failures -----------------------------------------------------------------------------------


def test_a_temporary_smtp_failure_is_retried_later(shop: Shop) -> None:
    anna = shop.person()
    sent = shop.queue(anna)
    with smtp_server() as (inbox, port):
        # a 451 to the final dot: after the hand-over the channel does not try again itself
        inbox.data_replies.extend(["451 4.3.0 Try again later"])
        channel = no_wait_channel(shop, port)
        summary = shop.deliver(channels={"email": channel})
        assert (summary.retrying, summary.sent) == (1, 0)
        row = shop.row(sent)
        assert (row.status, row.attempts, row.claimed_at) == ("queued", 1, None)
        assert row.handed_at is None  # the mark is cleared as the row goes back
        assert "451" in row.reason and "@" not in row.reason
        due = row.due_at.replace(tzinfo=UTC)
        assert T0 < due <= T0 + retry_delay(1)
        assert shop.deliver(channels={"email": channel}).claimed == 0  # not before its time
        shop.clock.advance(due - T0)
        summary = shop.deliver(channels={"email": channel})
        channel.close()
        assert summary.sent == 1
        assert list(inbox.ids().values()) == [1]
    row = shop.row(sent)
    assert (row.status, row.attempts, row.reason) == ("sent", 2, None)
    assert row.handed_at is not None


def test_a_refused_recipient_is_still_retried_inside_the_send(shop: Shop) -> None:
    """Before the hand-over (greylisting answers RCPT), the channel's own retries apply."""
    sent = shop.queue(shop.person())

    class Greylisting(Inbox):
        refused = 0

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if self.refused < 2:
                self.refused += 1
                return "450 4.2.0 Greylisted, try again"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    inbox = Greylisting()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = no_wait_channel(shop, port)
        summary = shop.deliver(channels={"email": channel})
        channel.close()
    finally:
        controller.stop()
    assert (summary.sent, summary.retrying, inbox.refused) == (1, 0, 2)
    assert list(inbox.ids().values()) == [1]
    assert shop.row(sent).attempts == 1


def test_temporary_failures_end_in_failed_after_the_last_attempt(shop: Shop) -> None:
    sent = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        inbox.data_replies.extend(["451 4.3.0 Try again later"] * 100)
        channel = no_wait_channel(shop, port)
        for _ in range(3):
            shop.deliver(channels={"email": channel}, max_attempts=3)
            shop.clock.advance(timedelta(hours=1))
        channel.close()
    row = shop.row(sent)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.reason.startswith("gave up after 3 attempts")
    [failed] = shop.events()
    assert failed["type"] == "failed" and failed["message_id"] == str(sent)


def test_a_mailbox_that_does_not_exist_fails_and_is_suppressed(shop: Shop) -> None:
    anna = shop.person(email="gone@example.org")

    class Refusing(Inbox):
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            return "550 5.1.1 <gone@example.org>: mailbox unavailable"

    sent = shop.queue(anna)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        summary = smtp(shop, port).deliver()
    finally:
        controller.stop()
    assert (summary.failed, summary.suppressed) == (1, 1)
    row = shop.row(sent)
    assert row.status == "failed" and "gone@example.org" not in row.reason
    with shop.engine.connect() as conn:
        assert is_suppressed(conn, "email", "gone@example.org")


def test_an_unreachable_server_puts_the_batch_back_without_burning_attempts(shop: Shop) -> None:
    ids = [shop.queue(shop.person()) for _ in range(6)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # nothing listens there
    channel = no_wait_channel(shop, port)
    summary = shop.deliver(channels={"email": channel}, threads=1)
    assert summary.sent == 0
    assert summary.retrying == 3  # tried until the channel counted as down
    assert summary.released == 3 and summary.reasons == {"channel_unavailable": 3}
    rows = [shop.row(i) for i in ids]
    assert {r.status for r in rows} == {"queued"}
    assert sorted(r.attempts for r in rows) == [0, 0, 0, 1, 1, 1]
    assert all(r.due_at.replace(tzinfo=UTC) > T0 for r in rows)


# --- crashes and concurrency ----------------------------------------------------------------------


def test_a_row_left_sending_by_a_dead_worker_is_sent_once_after_the_lease(shop: Shop) -> None:
    anna = shop.person()
    held = shop.queue(anna)
    [taken] = claim(shop.engine, shop.clock, limit=10)  # a worker claims it, then dies
    assert taken.id == held and shop.row(held).status == "sending"
    with smtp_server() as (inbox, port):
        shop = smtp(shop, port)
        assert shop.deliver().claimed == 0  # its lease still holds
        shop.clock.advance(LEASE - timedelta(seconds=1))
        assert shop.deliver().claimed == 0
        shop.clock.advance(timedelta(seconds=2))
        summary = shop.deliver()
        assert (summary.claimed, summary.reclaimed, summary.sent) == (1, 1, 1)
        assert shop.deliver().claimed == 0
        assert list(inbox.ids().values()) == [1]
    row = shop.row(held)
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_crash_after_the_server_accepted_is_settled_not_sent_again(shop: Shop) -> None:
    """The hand-over mark: a row found `sending` with it after the lease was being given to
    the server when its worker died; it is marked sent (unconfirmed), not sent twice."""
    held = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        real = no_wait_channel(shop, port)

        class DiesAfterSending:
            name = "email"

            def send(self, message: Outgoing) -> Receipt:
                real.send(message)
                raise SystemExit("the worker died")

            def close(self) -> None:
                pass

        with pytest.raises(SystemExit):
            shop.deliver(channels={"email": DiesAfterSending()})
        row = shop.row(held)
        assert row.status == "sending" and row.handed_at is not None
        shop.clock.advance(LEASE + timedelta(minutes=1))
        summary = shop.deliver(channels={"email": real})
        assert (summary.claimed, summary.sent, summary.unconfirmed) == (0, 0, 1)
        assert shop.deliver(channels={"email": real}).as_dict()["unconfirmed"] == 0
        real.close()
        assert list(inbox.ids().values()) == [1]
    row = shop.row(held)
    assert (row.status, row.reason, row.attempts) == ("sent", UNCONFIRMED, 1)
    assert row.sent_at == row.handed_at
    [event] = shop.events()
    assert (event["type"], event["message_id"]) == ("sent", str(held))
    assert event["properties"]["reason"] == UNCONFIRMED


def test_a_channel_without_the_hand_over_resends_the_same_message_id(shop: Shop) -> None:
    """A channel that ignores `Outgoing.handing` keeps the old window: after a crash the row
    is sent again, recognisable by its Message-ID."""
    held = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        real = no_wait_channel(shop, port)

        class DiesAfterSending:
            name = "email"

            def send(self, message: Outgoing) -> Receipt:
                real.send(dataclasses.replace(message, handing=None))
                raise SystemExit("the worker died")

            def close(self) -> None:
                pass

        with pytest.raises(SystemExit):
            shop.deliver(channels={"email": DiesAfterSending()})
        assert shop.row(held).status == "sending"
        shop.clock.advance(LEASE + timedelta(minutes=1))
        assert shop.deliver(channels={"email": real}).sent == 1
        real.close()
        [(message_id, copies)] = inbox.ids().items()
    assert copies == 2
    assert outbox_id_from_message_id(shop.settings.secret(), message_id) == held


def test_a_row_of_a_paused_or_cancelled_campaign_is_never_claimed(shop: Shop) -> None:
    anna = shop.person()
    ids = {s: shop.queue(anna, campaign="spring") for s in ("paused", "cancelled", "queued")}
    with shop.engine.begin() as conn:
        for status in ("paused", "cancelled"):
            conn.execute(
                messages.update().where(messages.c.id == ids[status]).values(status=status)
            )
    shop.clock.advance(LEASE * 3)
    assert [r.id for r in claim(shop.engine, shop.clock, limit=10)] == [ids["queued"]]
    assert shop.deliver().claimed == 0
    assert shop.row(ids["paused"]).status == "paused"
    assert shop.row(ids["cancelled"]).status == "cancelled"


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_owner(shop: Shop) -> None:
    held = shop.queue(shop.person())
    [old] = claim(shop.engine, shop.clock, limit=1)
    shop.clock.advance(LEASE + timedelta(minutes=1))
    [new] = claim(shop.engine, shop.clock, limit=1)
    assert (new.id, new.reclaimed, new.attempts) == (held, True, 2)
    with shop.engine.begin() as conn:
        stale = conn.execute(
            messages.update()
            .where(
                messages.c.id == held,
                messages.c.status == "sending",
                messages.c.claimed_at == old.claimed_at,
            )
            .values(status="sent")
        )
        assert stale.rowcount == 0


@pytest.mark.parametrize("dispatchers", [2])
def test_concurrent_dispatchers_deliver_every_row_exactly_once(
    shop: Shop, dispatchers: int
) -> None:
    ids = [shop.queue(shop.person()) for _ in range(40)]
    with smtp_server() as (inbox, port):
        shop = smtp(shop, port)
        summaries: list[Any] = []
        errors: list[BaseException] = []
        start = threading.Barrier(dispatchers)

        def work() -> None:
            try:
                start.wait()
                summaries.append(shop.deliver(batch_size=3, threads=2))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(dispatchers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        received = inbox.ids()
    secret = shop.settings.secret()
    assert sorted(outbox_id_from_message_id(secret, m) for m in received) == ids
    assert set(received.values()) == {1}
    assert sum(s.sent for s in summaries) == 40
    assert shop.statuses() == Counter({"sent": 40})
    assert len([e for e in shop.events() if e["type"] == "sent"]) == 40


def test_limit_and_channel_select_what_is_delivered(shop: Shop) -> None:
    ids = [shop.queue(shop.person()) for _ in range(5)]
    summary = shop.deliver(limit=2)
    assert (summary.claimed, summary.sent) == (2, 2)
    assert shop.deliver(channel="sms").claimed == 0
    assert shop.deliver(channel="email").sent == 3
    assert [shop.row(i).status for i in ids] == ["sent"] * 5


def test_a_run_for_one_campaign_delivers_only_its_rows(shop: Shop) -> None:
    spring = [shop.queue(shop.person(), campaign="spring") for _ in range(3)]
    autumn = shop.queue(shop.person(), campaign="autumn")
    journey = shop.queue(shop.person(), journey="cart", step="reminder_1")
    summary = shop.deliver(campaign="spring")
    assert (summary.claimed, summary.sent) == (3, 3)
    assert [shop.row(i).status for i in spring] == ["sent"] * 3
    assert shop.row(autumn).status == shop.row(journey).status == "queued"
    assert shop.deliver(campaign="spring").claimed == 0
    assert shop.deliver().sent == 2


# --- what the message says ------------------------------------------------------------------------


def test_the_context_comes_from_state_when_the_payload_is_silent(shop: Shop) -> None:
    now = shop.clock.now()
    with shop.engine.begin() as conn:
        for pid, title, price in (("P1", "Lampada Arco", "89.00"), ("P2", "Vaso Blu", "24.50")):
            conn.execute(
                products.insert().values(
                    product_id=pid,
                    title=title,
                    price=price,
                    currency="EUR",
                    url=f"{SHOP}/products/{pid}",
                    in_stock=True,
                    created_at=now,
                    updated_at=now,
                    origin="products",
                )
            )
    anna = shop.person(language="fr", style="examiner", cart_products=["P1", "P2"])
    queued = shop.queue(anna, payload={}, priority=80)
    shop.deliver()
    box = mailbox.Maildir(shop.settings.mail_path, create=False)
    [raw] = [m.as_bytes() for m in box]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    assert "Lampada Arco" in content and "Vaso Blu" in content
    assert "113,50\u00a0€" in content  # the cart's total, written the French way
    assert shop.row(queued).language == "fr"


def test_payload_keys_set_the_button_the_deadline_and_the_product(shop: Shop) -> None:
    now = shop.clock.now()
    with shop.engine.begin() as conn:
        conn.execute(
            products.insert().values(
                product_id="P9",
                title="Teiera Nera",
                price="39.00",
                currency="EUR",
                url=f"{SHOP}/products/P9",
                in_stock=True,
                created_at=now,
                updated_at=now,
                origin="products",
            )
        )
    anna = shop.person(style=None)
    queued = shop.queue(
        anna,
        "browse_reminder",
        payload={"product_id": "P9", "cta_url": f"{SHOP}/special", "products": []},
    )
    shop.deliver()
    box = mailbox.Maildir(shop.settings.mail_path, create=False)
    [raw] = [m.as_bytes() for m in box]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Teiera Nera" in str(msg["Subject"]) or "Teiera Nera" in raw.decode("utf-8", "replace")
    html = msg.get_body(("html",))
    assert html is not None
    target = tagged(shop, queued, f"{SHOP}/special")
    assert click_url(shop.settings, queued, anna, target) in html.get_content()


def test_the_payloads_copy_replaces_fields_of_the_intents_copy(shop: Shop) -> None:
    anna = shop.person(first_name="Anna")
    own = shop.queue(
        anna,
        "newsletter",
        payload={"copy": {"subject": "New at {{ shop_name }} for {{ first_name }}"}},
    )
    plain = shop.queue(shop.person(), "newsletter", payload={})
    assert shop.deliver().sent == 2
    assert shop.row(own).subject == "New at Bottega for Anna"
    assert shop.row(plain).subject != shop.row(own).subject


def test_progress_reaches_the_total(shop: Shop) -> None:
    for _ in range(3):
        shop.queue(shop.person())
    seen: list[tuple[str, int, int]] = []
    shop.deliver(progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen[-1] == ("Delivering", 3, 3)


def test_nothing_due_is_a_quiet_run(shop: Shop) -> None:
    summary = shop.deliver()
    assert summary.as_dict()["claimed"] == 0
    with shop.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 0


# --- batch contexts are the contexts `for_contact` builds one at a time ---------------------------


def _facts(shop: Shop) -> None:
    """Orders and product views in the facts store, products and an offer in state."""
    import pyarrow as pa

    from reengage.facts.kinds import EVENTS, ORDERS
    from reengage.facts.writer import append

    now = shop.clock.now()
    catalogue = {  # id: (category, price)
        "P1": ("shoes", "50.00"),
        "P2": ("shoes", "80.00"),
        "P3": ("shoes", "30.00"),
        "P4": ("socks", "5.00"),
        "P5": ("socks", "8.00"),
    }
    with shop.engine.begin() as conn:
        for pid, (category, price) in catalogue.items():
            conn.execute(
                products.insert().values(
                    product_id=pid,
                    title=f"Item {pid}",
                    category=category,
                    price=price,
                    currency="EUR",
                    url=f"{SHOP}/products/{pid}",
                    image_url=f"{SHOP}/img/{pid}.jpg",
                    in_stock=True,
                    created_at=now - timedelta(days=400),
                    updated_at=now - timedelta(days=400),
                    origin="products",
                )
            )
    baskets = [  # order, customer, days ago, products, status
        ("o1", "C-a", 90, ["P1", "P4"], "paid"),
        ("o2", "C-b", 80, ["P1", "P4"], "paid"),
        ("o3", "C-c", 70, ["P1", "P4"], "paid"),
        ("o4", "C-d", 60, ["P2"], "paid"),
        ("o5", "C-e", 50, ["P3"], "paid"),
        ("o6", "C-a", 20, ["P2"], "paid"),
        ("o7", "C-b", 10, ["P5", "P3"], "cancelled"),  # void: o2 stays C-b's last
        ("o8", "C-f", 5, ["P1"], "paid"),
    ]
    lines = [
        {
            "line_id": f"{o}-{p}",
            "order_id": o,
            "customer_id": c,
            "ordered_at": now - timedelta(days=d),
            "product_id": p,
            "quantity": 1 + (p == "P4"),
            "unit_price": float(catalogue[p][1]),
            "currency": "EUR",
            "discount": 0.0,
            "coupon_code": None,
            "status": s,
        }
        for o, c, d, ps, s in baskets
        for p in ps
    ]
    append(
        shop.settings.facts_path,
        ORDERS,
        pa.Table.from_pylist(lines, schema=pa.schema([f for f in ORDERS.schema][:-1])),
        ingested_at=now,
    )
    views = [
        ("v1", "C-a", 3, "P3"),
        ("v2", "C-a", 1, "P5"),
        ("v3", "C-c", 2, "P2"),
        ("v4", "C-f", 4, "P1"),
    ]
    events = [
        {
            "event_id": e,
            "customer_id": c,
            "anonymous_id": None,
            "type": "product_view",
            "occurred_at": now - timedelta(days=d),
            "product_id": p,
            "session_id": None,
            "source": "web",
            "device": None,
            "duration_s": None,
            "properties": None,
        }
        for e, c, d, p in views
    ]
    append(
        shop.settings.facts_path,
        EVENTS,
        pa.Table.from_pylist(events, schema=pa.schema([f for f in EVENTS.schema][:-1])),
        ingested_at=now,
    )


@pytest.mark.parametrize(
    "intent",
    ["cart_reminder", "browse_reminder", "thank_you", "cross_sell", "up_sell", "winback_incentive"],
)
def test_batch_contexts_are_those_for_contact_builds(shop: Shop, intent: str) -> None:
    from reengage.messages.context import for_contact
    from reengage.messages.dispatch import BatchContexts, Person
    from reengage.state.schema import offers

    _facts(shop)
    now = shop.clock.now()
    people = {}
    for customer, language, zone, cart in (
        ("C-a", "fr", "Europe/Paris", ["P2", "P4"]),
        ("C-b", "it", None, None),
        ("C-c", "en", "America/New_York", None),
        ("C-d", None, "Bogus/Zone", ["P9"]),  # a product the catalogue does not know
        ("C-e", "en", None, None),
        ("C-f", "en", None, None),
    ):
        contact_id = shop.person(language=language, timezone=zone, cart_products=cart)
        with shop.engine.begin() as conn:
            conn.execute(
                contacts.update().where(contacts.c.id == contact_id).values(customer_id=customer)
            )
        people[contact_id] = customer
    a = next(c for c, k in people.items() if k == "C-a")
    with shop.engine.begin() as conn:
        conn.execute(
            offers.insert().values(
                code="BOTTEGA-ABCDE-FGHJK",
                contact_id=a,
                intent="winback_incentive",
                level=1,
                kind="percent",
                value="10",
                max_discount="15",
                currency="EUR",
                issued_at=now - timedelta(days=1),
                expires_at=now + timedelta(days=6),
                status="issued",
            )
        )
    for contact_id in people:
        shop.queue(contact_id, intent, payload={})
    rows = claim(shop.engine, shop.clock, limit=100)
    with shop.engine.connect() as conn:
        found = {
            c.id: Person(c.id, c.customer_id, c.email, c.phone, c.country, c.first_name, c.timezone)
            for c in conn.execute(select(contacts))
        }
    batch = BatchContexts(shop.home, shop.engine, shop.clock)
    try:
        built = batch.build(rows, found, now)
    finally:
        batch.close()
    assert len(built) == len(people)
    some_recommendations = False
    for row in rows:
        one = for_contact(shop.home, shop.engine, people[row.contact_id], intent, clock=shop.clock)
        assert one.language == row.language
        assert built[row.id] == one.context, people[row.contact_id]
        some_recommendations |= bool(one.context.products)
    if intent in ("browse_reminder", "cross_sell", "up_sell"):
        assert some_recommendations  # the shop is big enough for the comparison to mean it


# --- other channels, offers -----------------------------------------------------------------------


def _consent(shop: Shop, contact_id: int, channel: str) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            consents.insert().values(
                contact_id=contact_id,
                channel=channel,
                purpose="marketing",
                granted=True,
                source="signup",
                recorded_at=T0 - timedelta(days=10),
            )
        )


def test_an_sms_carries_the_plain_link_and_the_opt_out_line(shop: Shop) -> None:
    import httpx

    from reengage.channels.sms import TwilioSMS

    luca = shop.person(language="it", timezone="Europe/Rome")
    with shop.engine.begin() as conn:
        conn.execute(
            contacts.update()
            .where(contacts.c.id == luca)
            .values(phone="333 123 4567", country="IT")
        )
    _consent(shop, luca, "sms")
    queued = shop.queue(luca, channel="sms")
    seen: list[dict[str, str]] = []

    def twilio(request: httpx.Request) -> httpx.Response:
        from urllib.parse import parse_qsl

        seen.append(dict(parse_qsl(request.content.decode())))
        return httpx.Response(201, json={"sid": "SM0001"})

    sms = TwilioSMS(
        account_sid="AC0001",
        auth_token="token",
        sender="+15005550006",
        api_url="https://api.twilio.test",
        status_base_url=PUBLIC,
        client=httpx.Client(transport=httpx.MockTransport(twilio)),
    )
    summary = shop.deliver(channels={"sms": sms})
    assert summary.sent == 1
    [form] = seen
    assert form["To"] == "+393331234567"
    assert form["Body"].endswith("\nRispondi STOP per disiscriverti")
    assert CART["cart_url"] in form["Body"]  # the link itself: a click token would double it
    assert "/l/c/" not in form["Body"]
    assert form["StatusCallback"] == f"{PUBLIC}/sms/status?message_id={queued}"
    row = shop.row(queued)
    assert (row.status, row.provider_id, row.subject) == ("sent", "SM0001", None)


def test_a_push_goes_to_the_newest_subscription_with_a_tracked_link(shop: Shop) -> None:
    from reengage.state.schema import push_subscriptions

    chloe = shop.person(language="fr")
    _consent(shop, chloe, "push")
    with shop.engine.begin() as conn:
        for n in (1, 2):
            conn.execute(
                push_subscriptions.insert().values(
                    contact_id=chloe,
                    endpoint=f"https://push.example/{n}",
                    p256dh="key",
                    auth="auth",
                    created_at=T0 - timedelta(days=10 - n),
                )
            )
    queued = shop.queue(chloe, channel="push")
    got: list[Outgoing] = []

    class Push:
        name = "push"

        def send(self, message: Outgoing) -> Receipt:
            got.append(message)
            return Receipt("https://push.example/m/1")

        def close(self) -> None:
            pass

    assert shop.deliver(channels={"push": Push()}).sent == 1
    [message] = got
    assert message.to == "https://push.example/2"
    assert message.subject and message.text
    target = tagged(shop, queued, CART["cart_url"])
    assert message.data["url"] == click_url(shop.settings, queued, chloe, target)
    assert shop.row(queued).subject == message.subject


def test_the_offer_a_message_carries_is_the_one_it_shows(shop: Shop) -> None:
    from reengage.state.schema import offers

    anna = shop.person()
    with_code = shop.queue(anna, "cart_incentive", priority=80)
    with shop.engine.begin() as conn:
        for code, days in (("BOTTEGA-LIVE2-CODE3", 5), ("BOTTEGA-OTHER-CODE4", 6)):
            conn.execute(
                offers.insert().values(
                    code=code,
                    contact_id=anna,
                    intent="cart_incentive",
                    level=1,
                    kind="percent",
                    value="10",
                    max_discount="15",
                    currency="EUR",
                    issued_at=T0 - timedelta(hours=days),
                    expires_at=T0 + timedelta(days=days),
                    message_id=with_code if code.startswith("BOTTEGA-LIVE") else None,
                    status="issued",
                )
            )
        conn.execute(
            messages.update()
            .where(messages.c.id == with_code)
            .values(offer_code="BOTTEGA-LIVE2-CODE3")
        )
    assert shop.deliver().sent == 1
    box = mailbox.Maildir(shop.settings.mail_path, create=False)
    [raw] = [m.as_bytes() for m in box]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    assert text is not None
    assert "BOTTEGA-LIVE2-CODE3" in text.get_content()
    assert "BOTTEGA-OTHER-CODE4" not in text.get_content()
