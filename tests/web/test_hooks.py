"""The provider callbacks, through the web app, on both backends: Twilio's inbound SMS and
status reports, email bounce and complaint notifications; and `reengage email bounces`.
Signed requests act; tampered, stale or unsigned ones are refused and change nothing."""

from __future__ import annotations

import json
import mailbox
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.channels.mail import message_id_for
from reengage.channels.sms import status_callback_url
from reengage.channels.sms_replies import EMPTY_TWIML, compute_signature
from reengage.channels.webhook import signature_header
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.state.contacts import ConsentChange, current_consent, record_consents
from reengage.state.schema import consents, contacts, messages, suppressions
from reengage.web.app import create_app

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PUBLIC = "https://shop.example.com"
TOKEN = "twilio-auth-token-0123456789abcdef"
HOOK_SECRET = "whsec-relay-0123456789"
PHONE = "+393331234567"
EMAIL = "Anna.Rossi@Example.org"
DOMAIN = "shop.example.com"
SID = "SM0123456789abcdef0123456789abcdef"


@dataclass
class Shop:
    settings: Settings
    engine: Engine
    clock: FixedClock
    client: TestClient
    anna: int
    sms_msg: int
    email_msg: int

    def twilio(self, path: str, form: dict[str, str], *, sign_url: str | None = None) -> Any:
        """POST form as Twilio would: signed over the public URL of path."""
        signature = compute_signature(TOKEN, sign_url or PUBLIC + path, form)
        return self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    def relay(self, payload: Any, *, secret: str = HOOK_SECRET, age: int = 0) -> Any:
        body = json.dumps(payload).encode()
        stamp = int(self.clock.now().timestamp()) - age
        header = signature_header(secret, stamp, body)
        return self.client.post(
            "/hooks/email",
            content=body,
            headers={"Content-Type": "application/json", "Reengage-Signature": header},
        )

    def suppressions(self) -> list[tuple[str, str, str, str, int | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    suppressions.c.channel,
                    suppressions.c.address,
                    suppressions.c.reason,
                    suppressions.c.source,
                    suppressions.c.contact_id,
                ).order_by(suppressions.c.id)
            ).all()
        return [tuple(r) for r in rows]

    def consent(self, channel: str = "sms") -> bool | None:
        with self.engine.connect() as conn:
            return current_consent(conn, self.anna, channel, "marketing")

    def consents(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(consents)).scalar_one())

    def row(self, message_id: int) -> tuple[str, str | None]:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(messages.c.status, messages.c.reason).where(messages.c.id == message_id)
            ).one()
        return found.status, found.reason

    def add_sms(self, key: str, provider_id: str | None = SID, status: str = "sent") -> int:
        now = self.clock.now()
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    messages.insert()
                    .returning(messages.c.id)
                    .values(
                        message_key=key,
                        contact_id=self.anna,
                        channel="sms",
                        intent="cart_reminder",
                        style="neutral",
                        language="it",
                        status=status,
                        priority=0,
                        due_at=now - timedelta(hours=1),
                        created_at=now - timedelta(hours=1),
                        sent_at=now - timedelta(minutes=5) if status == "sent" else None,
                        attempts=1,
                        provider_id=provider_id,
                        payload={},
                    )
                ).scalar_one()
            )


def _client(settings: Settings, engine: Engine, clock: FixedClock) -> TestClient:
    return TestClient(create_app(settings, engine, clock), follow_redirects=False)


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Iterator[Shop]:
    settings = load_settings(
        {
            **env,
            "REENGAGE_PUBLIC_URL": PUBLIC,
            "REENGAGE_SMS_AUTH_TOKEN": TOKEN,
            "REENGAGE_WEBHOOK_SECRET": HOOK_SECRET,
        }
    )
    now = clock.now()
    with engine.begin() as conn:
        anna = int(
            conn.execute(
                contacts.insert()
                .returning(contacts.c.id)
                .values(
                    customer_id="C1",
                    email=EMAIL,
                    phone="333 123 4567",  # national, as the shop's import spelled it
                    country="IT",
                    first_name="Anna",
                    created_at=now - timedelta(days=90),
                    updated_at=now - timedelta(days=90),
                    origin="customers",
                    attributes={},
                )
            ).scalar_one()
        )
        record_consents(
            conn,
            [
                ConsentChange(anna, ch, "marketing", True, "signup", now - timedelta(days=90))
                for ch in ("sms", "email")
            ],
        )
        email_msg = int(
            conn.execute(
                messages.insert()
                .returning(messages.c.id)
                .values(
                    message_key="cart-email",
                    contact_id=anna,
                    channel="email",
                    intent="cart_reminder",
                    style="neutral",
                    language="it",
                    status="sent",
                    priority=0,
                    due_at=now - timedelta(hours=1),
                    created_at=now - timedelta(hours=1),
                    sent_at=now - timedelta(hours=1),
                    attempts=1,
                    payload={},
                )
            ).scalar_one()
        )
    client = _client(settings, engine, clock)
    shop = Shop(settings, engine, clock, client, anna, 0, email_msg)
    shop.sms_msg = shop.add_sms("cart-sms")
    yield shop
    client.close()


def inbound(body: str, sender: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SMfeedfacefeedfacefeedfacefeedface",
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": sender,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
    }


# ---- inbound SMS -----------------------------------------------------------------------


def test_stop_revokes_sms_consent_and_suppresses_the_number(shop: Shop) -> None:
    answer = shop.twilio("/hooks/sms", inbound("Stop"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text == EMPTY_TWIML
    assert shop.consent("sms") is False
    assert shop.consent("email") is True  # only SMS
    assert shop.suppressions() == [("sms", PHONE, "stop", "sms_reply", shop.anna)]
    assert PHONE not in answer.text and "Anna" not in answer.text
    # START undoes it
    shop.clock.advance(timedelta(minutes=1))
    again = shop.twilio("/hooks/sms", inbound("START"))
    assert again.status_code == 200 and again.text == EMPTY_TWIML
    assert shop.consent("sms") is True
    assert shop.suppressions() == []


def test_the_signed_url_keeps_the_query_string(shop: Shop) -> None:
    answer = shop.twilio("/hooks/sms?shop=1", inbound("STOP"))
    assert answer.status_code == 200
    assert shop.consent("sms") is False


def test_a_tampered_inbound_sms_is_refused_and_changes_nothing(shop: Shop) -> None:
    form = inbound("STOP")
    signature = compute_signature(TOKEN, PUBLIC + "/hooks/sms", form)
    before = shop.consents()
    for data, headers in (
        ({**form, "From": "+393339999999"}, {"X-Twilio-Signature": signature}),  # edited
        (form, {"X-Twilio-Signature": compute_signature("other", PUBLIC + "/hooks/sms", form)}),
        # signed for another address (the server's own, not public_url)
        (
            form,
            {"X-Twilio-Signature": compute_signature(TOKEN, "http://testserver/hooks/sms", form)},
        ),
        (form, {"X-Twilio-Signature": signature[:-4] + "AAA="}),
        (form, {}),  # unsigned
    ):
        answer = shop.client.post("/hooks/sms", data=data, headers=headers)
        assert answer.status_code == 403
        assert answer.content == b""
    assert shop.consents() == before
    assert shop.consent("sms") is True
    assert shop.suppressions() == []


def test_without_twilio_or_a_relay_secret_the_hooks_do_not_exist(
    shop: Shop, env: dict[str, str]
) -> None:
    settings = load_settings({**env, "REENGAGE_PUBLIC_URL": PUBLIC})
    with _client(settings, shop.engine, shop.clock) as client:
        form = inbound("STOP")
        signature = compute_signature(TOKEN, PUBLIC + "/hooks/sms", form)
        for path in ("/hooks/sms", "/hooks/sms/status", "/sms/status", "/hooks/email"):
            answer = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
            assert answer.status_code == 404, path
    assert shop.consent("sms") is True
    assert shop.suppressions() == []


def test_hooks_answer_post_only(shop: Shop) -> None:
    for path in ("/hooks/sms", "/hooks/sms/status", "/hooks/email"):
        assert shop.client.get(path).status_code == 405


# ---- SMS status callbacks --------------------------------------------------------------


def status(message_status: str, code: str | None = None, sid: str = SID) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": "+15005550006",
        "To": PHONE,
        "MessageStatus": message_status,
        "SmsStatus": message_status,
        "ApiVersion": "2010-04-01",
    }
    if code is not None:
        form["ErrorCode"] = code
    return form


def callback_path(message_id: int, base: str = "/hooks/sms/status") -> str:
    return f"{base}?message_id={message_id}"


def test_an_undelivered_report_marks_the_row_failed(shop: Shop) -> None:
    answer = shop.twilio(callback_path(shop.sms_msg), status("undelivered", "30003"))
    assert answer.status_code == 204 and answer.content == b""
    assert shop.row(shop.sms_msg) == ("failed", "sms undelivered: Twilio error 30003")
    assert shop.suppressions() == []  # a phone switched off says nothing lasting
    # Twilio retrying the same report changes nothing more
    assert shop.twilio(callback_path(shop.sms_msg), status("undelivered", "30003")).status_code
    assert shop.row(shop.sms_msg) == ("failed", "sms undelivered: Twilio error 30003")


def test_the_callback_url_the_sms_channel_gives_twilio_is_served(shop: Shop) -> None:
    url = status_callback_url(shop.settings.public_url, shop.sms_msg)
    path = url.removeprefix(PUBLIC)
    assert path == f"/sms/status?message_id={shop.sms_msg}"
    answer = shop.twilio(path, status("failed", "30005"))
    assert answer.status_code == 204
    assert shop.row(shop.sms_msg) == ("failed", "sms failed: Twilio error 30005")
    # an unknown handset: the number is suppressed, tied to the contact
    assert shop.suppressions() == [("sms", PHONE, "bounced", "sms_status", shop.anna)]


def test_a_stop_error_suppresses_so_that_start_can_lift_it(shop: Shop) -> None:
    shop.twilio(callback_path(shop.sms_msg), status("failed", "21610"))
    assert shop.suppressions() == [("sms", PHONE, "stop", "sms_status", shop.anna)]
    shop.twilio("/hooks/sms", inbound("START"))
    assert shop.suppressions() == []


def test_reports_that_change_nothing(shop: Shop) -> None:
    for form in (status("queued"), status("sent"), status("delivered")):
        assert shop.twilio(callback_path(shop.sms_msg), form).status_code == 204
    assert shop.row(shop.sms_msg) == ("sent", None)
    # a report of an earlier copy of the message (another Twilio id)
    other = status("undelivered", "30005", sid="SMffffffffffffffffffffffffffffffff")
    assert shop.twilio(callback_path(shop.sms_msg), other).status_code == 204
    assert shop.row(shop.sms_msg) == ("sent", None)
    # a report for an email row, or a row that does not exist
    assert shop.twilio(callback_path(shop.email_msg), status("failed", "30005")).status_code == 204
    assert shop.row(shop.email_msg) == ("sent", None)
    assert shop.twilio(callback_path(999_999), status("failed", "30005")).status_code == 204
    # signed by Twilio but not for a message of ours (no message_id)
    assert shop.twilio("/hooks/sms/status", status("failed", "30005")).status_code == 204
    assert shop.suppressions() == []
    # a row the dispatcher still holds is not marked, but the number is suppressed
    held = shop.add_sms("cart-sms-2", provider_id=None, status="sending")
    assert shop.twilio(callback_path(held), status("undelivered", "21614")).status_code == 204
    assert shop.row(held) == ("sending", None)
    assert shop.suppressions() == [("sms", PHONE, "bounced", "sms_status", shop.anna)]


def test_a_tampered_status_callback_is_refused_and_changes_nothing(shop: Shop) -> None:
    form = status("failed", "30005")
    path = callback_path(shop.sms_msg)
    signature = compute_signature(TOKEN, PUBLIC + path, form)
    other = shop.add_sms("cart-sms-3", provider_id=None)
    for target, data, headers in (
        (path, {**form, "ErrorCode": "21610"}, {"X-Twilio-Signature": signature}),
        (callback_path(other), form, {"X-Twilio-Signature": signature}),  # another row's id
        (path, form, {"X-Twilio-Signature": compute_signature("other", PUBLIC + path, form)}),
        (path, form, {}),
    ):
        answer = shop.client.post(target, data=data, headers=headers)
        assert answer.status_code == 403
    assert shop.row(shop.sms_msg) == ("sent", None)
    assert shop.row(other) == ("sent", None)
    assert shop.suppressions() == []


# ---- email notifications ---------------------------------------------------------------


def test_a_signed_bounce_suppresses_the_address(shop: Shop) -> None:
    ours = message_id_for(shop.settings.secret(), shop.email_msg, DOMAIN)
    answer = shop.relay({"type": "bounce", "email": EMAIL, "message_id": ours})
    assert answer.status_code == 200
    assert answer.json() == {"suppressed": 1}
    assert shop.suppressions() == [
        ("email", EMAIL.lower(), "bounced", "webhook", shop.anna),
    ]
    assert EMAIL.lower() not in answer.text
    # the same notification again adds nothing
    assert shop.relay({"type": "bounce", "email": EMAIL, "message_id": ours}).json() == {
        "suppressed": 0
    }


def test_a_batch_of_notifications(shop: Shop) -> None:
    batch = [
        {"type": "complaint", "email": "bob@example.net"},
        {"type": "bounce", "email": "soft@example.net", "bounce_type": "soft"},  # ignored
        {"type": "bounce", "email": "gone@example.net", "message_id": "<x@elsewhere>"},
    ]
    answer = shop.relay(batch)
    assert answer.status_code == 200 and answer.json() == {"suppressed": 2}
    assert shop.suppressions() == [
        ("email", "bob@example.net", "complained", "webhook", None),
        ("email", "gone@example.net", "bounced", "webhook", None),
    ]
    assert shop.relay([]).json() == {"suppressed": 0}


def test_a_tampered_or_stale_notification_is_refused(shop: Shop) -> None:
    payload = {"type": "bounce", "email": EMAIL}
    assert shop.relay(payload, secret="not-the-secret").status_code == 401
    assert shop.relay(payload, age=301).status_code == 401  # a replay, after 5 minutes
    body = json.dumps(payload).encode()
    header = signature_header(HOOK_SECRET, int(shop.clock.now().timestamp()), body)
    edited = body.replace(b"bounce", b"complaint")
    for content, headers in (
        (edited, {"Reengage-Signature": header}),
        (body, {}),
        (body, {"Reengage-Signature": header.replace("v1=", "v2=")}),
        (body, {"Reengage-Signature": "t=abc,v1=00"}),
    ):
        answer = shop.client.post("/hooks/email", content=content, headers=headers)
        assert answer.status_code == 401
        assert answer.json() == {"error": "Reengage-Signature does not match"}
    assert shop.suppressions() == []


def test_a_malformed_notification_names_the_field_and_writes_nothing(shop: Shop) -> None:
    cases: list[tuple[Any, str]] = [
        ({"type": "bounce"}, "webhook: 'email' must be an email address"),
        ({"type": "open", "email": EMAIL}, 'webhook: \'type\' must be "bounce" or "complaint"'),
        ({"type": "bounce", "email": EMAIL, "message_id": 7}, "'message_id' must be a string"),
        (
            [{"type": "bounce", "email": "ok@example.net"}, {"type": "bounce", "email": "x"}],
            "item 1: webhook: 'email' must be an email address",
        ),
        ([{"type": "bounce", "email": "ok@example.net"}, "x"], "webhook: item 1 must be an object"),
        ("bounce", "webhook: the body must be an object or a list of objects"),
    ]
    for payload, message in cases:
        answer = shop.relay(payload)
        assert answer.status_code == 400, payload
        assert message in answer.json()["error"]
        assert EMAIL not in answer.text
    body = b"{not json"
    header = signature_header(HOOK_SECRET, int(shop.clock.now().timestamp()), body)
    answer = shop.client.post("/hooks/email", content=body, headers={"Reengage-Signature": header})
    assert answer.status_code == 400
    assert answer.json() == {"error": "webhook: the body is not JSON"}
    assert shop.suppressions() == []  # the good first item of a bad batch is not kept


def test_an_oversized_notification_is_refused_unread(shop: Shop) -> None:
    answer = shop.client.post("/hooks/email", content=b"[" + b" " * (1024 * 1024) + b"]")
    assert answer.status_code == 413
    assert shop.suppressions() == []


# ---- reengage email bounces ------------------------------------------------------------


def dsn(message_id: str, recipient: str) -> bytes:
    """A Postfix hard bounce returning the original message's headers."""
    text = f"""\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: news@{DOMAIN}
Subject: Undelivered Mail Returned to Sender
Message-Id: <20261101093102.4F1C2A0B3@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F1C2A0B3.1793525462/mx.example.org"

--4F1C2A0B3.1793525462/mx.example.org
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

--4F1C2A0B3.1793525462/mx.example.org
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--4F1C2A0B3.1793525462/mx.example.org
Content-Type: text/rfc822-headers

From: Bottega <news@{DOMAIN}>
To: {recipient}
Subject: Il tuo carrello ti aspetta
Message-ID: {message_id}

--4F1C2A0B3.1793525462/mx.example.org--
"""
    return text.replace("\n", "\r\n").encode()


def test_email_bounces_reads_a_maildir(
    cli: CliRunner, shop: Shop, clock: FixedClock, tmp_path: Path
) -> None:
    folder = tmp_path / "bounces"
    box = mailbox.Maildir(folder, create=True)
    box.add(dsn(message_id_for(shop.settings.secret(), shop.email_msg, DOMAIN), EMAIL))
    box.add(
        b"From: someone@example.net\r\nTo: news@shop.example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    )
    now = ["--now", clock.now().isoformat()]
    result = cli.invoke(app, [*now, "email", "bounces", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "read": 2,
        "reports": 1,
        "suppressed": 1,
        "kinds": {"bounce": 1},
    }
    assert shop.suppressions() == [("email", EMAIL.lower(), "bounced", "dsn", shop.anna)]
    again = cli.invoke(app, [*now, "email", "bounces", str(folder)])
    assert again.exit_code == 0
    assert "read 1 messages, 0 reports, 0 new suppressions" in again.stdout
    assert EMAIL.lower() not in again.stdout


def test_email_bounces_of_a_missing_folder(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    result = cli.invoke(app, ["email", "bounces", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "no such maildir or mbox file" in " ".join(result.stderr.split())  # may be wrapped
