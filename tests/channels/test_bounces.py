"""Bounces, complaints and mailed unsubscribe requests turn into suppressions, mapped back to
the outbox row and contact through our Message-ID. The samples follow the examples of
RFC 3464 (delivery status notifications) and RFC 5965 (abuse reporting format) and what
Postfix and the big mailbox providers send. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from reengage.channels.bounces import (
    Outcome,
    handle_webhook,
    hard_bounce,
    process_folder,
    read_reports,
    record,
)
from reengage.channels.delivery import Outgoing
from reengage.channels.mail import MailBuilder, message_id_for, unsubscribe_token
from reengage.clock import FixedClock
from reengage.config import Settings
from reengage.errors import InputError
from reengage.state.schema import contacts, messages, suppressions

SECRET = b"b" * 40
DOMAIN = "shop.example.com"
ANN = "ann.rossi@example.org"


@dataclass
class Sent:
    contact_id: int
    outbox_id: int

    @property
    def message_id(self) -> str:
        return message_id_for(SECRET, self.outbox_id, DOMAIN)


@pytest.fixture
def sent(engine: Engine, clock: FixedClock) -> Sent:
    """A contact and one email the outbox sent them."""
    now = clock.now()
    with engine.begin() as conn:
        contact_id = conn.execute(
            contacts.insert()
            .returning(contacts.c.id)
            .values(
                customer_id="C1",
                email="Ann.Rossi@Example.org",
                created_at=now,
                updated_at=now,
                origin="customers",
                attributes={},
            )
        ).scalar_one()
        outbox_id = conn.execute(
            messages.insert()
            .returning(messages.c.id)
            .values(
                message_key="winback:C1:1",
                contact_id=contact_id,
                channel="email",
                intent="winback",
                style="nurturer",
                language="it",
                status="sent",
                due_at=now,
                created_at=now,
                sent_at=now,
                attempts=1,
                payload={},
            )
        ).scalar_one()
    return Sent(int(contact_id), int(outbox_id))


def suppressed(engine: Engine) -> list[tuple[str, str, str, int | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                suppressions.c.address,
                suppressions.c.reason,
                suppressions.c.source,
                suppressions.c.contact_id,
            ).order_by(suppressions.c.id)
        ).all()
    return [(r.address, r.reason, r.source, r.contact_id) for r in rows]


def apply(engine: Engine, data: bytes, clock: FixedClock) -> list[Outcome]:
    with engine.begin() as conn:
        return [record(conn, r, secret=SECRET, clock=clock) for r in read_reports(data)]


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# --- samples ---------------------------------------------------------------------------------


def postfix_dsn(message_id: str, recipient: str = ANN) -> bytes:
    """A Postfix hard bounce: the returned message's headers only (text/rfc822-headers)."""
    return crlf(f"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: news@{DOMAIN}
Subject: Undelivered Mail Returned to Sender
Date: Sun,  1 Nov 2026 09:31:02 +0000 (UTC)
Message-Id: <20261101093102.4F1C2A0B3@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F1C2A0B3.1793525462/mx.example.org"

This is a MIME-encapsulated message.

--4F1C2A0B3.1793525462/mx.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{recipient}>: host mx.example.org[192.0.2.25] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown in local recipient
    table (in reply to RCPT TO command)

--4F1C2A0B3.1793525462/mx.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
X-Postfix-Queue-ID: 4F1C2A0B3
X-Postfix-Sender: rfc822; news@{DOMAIN}
Arrival-Date: Sun,  1 Nov 2026 09:31:01 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:
    User unknown in local recipient table

--4F1C2A0B3.1793525462/mx.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <news@{DOMAIN}>
From: Bottega <news@{DOMAIN}>
To: {recipient}
Subject: Il tuo carrello ti aspetta
Date: Sun, 01 Nov 2026 09:30:00 +0000
Message-ID: {message_id}

--4F1C2A0B3.1793525462/mx.example.org--
""")


def rfc3464_multi(original: bytes) -> bytes:
    """After RFC 3464 appendix A: one report, four recipients: a hard bounce, a delay, a
    policy refusal and a delivery. The whole original message is returned."""
    return (
        crlf(f"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.net>
To: <news@{DOMAIN}>
Date: Thu, 7 Jul 2026 17:16:05 -0400
Subject: Returned mail: Cannot send message for 5 days
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="RAA14128.773615765/relay.example.net"

--RAA14128.773615765/relay.example.net

The original message was received at Sat, 2 Jul 2026 17:10:28 -0400.

--RAA14128.773615765/relay.example.net
content-type: message/delivery-status

Reporting-MTA: dns; relay.example.net
Arrival-Date: Sat, 2 Jul 2026 17:10:28 -0400

Original-Recipient: rfc822;{ANN}
Final-Recipient: RFC822; ann.rossi@mailhost.example.org
Action: failed
Status: 5.1.1 (mailbox does not exist)
Diagnostic-Code: smtp; 550 5.1.1 user unknown

Final-Recipient: rfc822; slow@example.net
Action: delayed
Status: 4.4.7
Will-Retry-Until: Fri, 8 Jul 2026 17:10:28 -0400

Final-Recipient: rfc822; picky@example.net
Action: failed
Status: 5.7.1
Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam

Final-Recipient: rfc822; happy@example.net
Action: delivered
Status: 2.0.0

--RAA14128.773615765/relay.example.net
content-type: message/rfc822

""")
        + original
        + crlf("\n--RAA14128.773615765/relay.example.net--\n")
    )


def arf(message_id: str, *, rcpt_to: str | None = ANN, to: str = ANN, kind: str = "abuse") -> bytes:
    """After RFC 5965 appendix B, with our message as the reported one."""
    rcpt = f"Original-Rcpt-To: <{rcpt_to}>\n" if rcpt_to else ""
    return crlf(f"""\
From: <staff@hotmail.example>
Date: Sun, 1 Nov 2026 12:40:36 +0000
Subject: complaint about message from 192.0.2.1
To: <fbl@{DOMAIN}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Sun, 1 Nov 2026 09:30:00 +0000.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {kind}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <news@{DOMAIN}>
{rcpt}Arrival-Date: Sun, 1 Nov 2026 09:30:00 +0000
Reporting-MTA: dns; mail.hotmail.example
Source-IP: 192.0.2.1
Authentication-Results: mail.hotmail.example;
               spf=pass smtp.mail=news@{DOMAIN}
Reported-Domain: {DOMAIN}

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Bottega <news@{DOMAIN}>
Received: from mail.{DOMAIN} (mail.{DOMAIN}
        [192.0.2.1]) by hotmail.example with ESMTP id M63d4137594e46;
        Sun, 01 Nov 2026 09:30:00 +0000
To: {to}
Subject: Il tuo carrello ti aspetta
MIME-Version: 1.0
Content-type: text/plain
Message-ID: {message_id}
Date: Sun, 01 Nov 2026 09:30:00 +0000

Ciao!
--part1_13d.2e68ed54_boundary--
""")


# --- DSN -------------------------------------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_of_our_message(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    [outcome] = apply(engine, postfix_dsn(sent.message_id), clock)
    assert outcome.report.kind == "bounce" and outcome.report.status == "5.1.1"
    assert (outcome.outbox_id, outcome.contact_id, outcome.suppressed) == (
        sent.outbox_id,
        sent.contact_id,
        True,
    )
    assert suppressed(engine) == [(ANN, "bounced", "dsn", sent.contact_id)]
    [again] = apply(engine, postfix_dsn(sent.message_id), clock)  # read twice: once
    assert again.suppressed is False
    assert len(suppressed(engine)) == 1


def test_only_failed_5xx_recipients_are_suppressed(
    engine: Engine, clock: FixedClock, sent: Sent, tmp_path: Path
) -> None:
    builder = MailBuilder(
        Settings(home=tmp_path, secret_key=SECRET.decode(), mail_from=f"news@{DOMAIN}")
    )
    original = builder.render(
        Outgoing(
            sent.outbox_id,
            "email",
            ANN,
            subject="Ciao",
            text="x",
            html="<p>x</p>",
            data={"contact_id": sent.contact_id},
        ),
        at=clock.now(),
    )
    outcomes = apply(engine, rfc3464_multi(original), clock)
    assert [(o.report.kind, o.report.address, o.report.status, o.suppressed) for o in outcomes] == [
        ("bounce", ANN, "5.1.1", True),  # Original-Recipient is the address we sent to
        ("block", "picky@example.net", "5.7.1", False),  # a refusal of us, not of the address
    ]
    assert all(o.outbox_id == sent.outbox_id for o in outcomes)
    assert suppressed(engine) == [(ANN, "bounced", "dsn", sent.contact_id)]


def test_a_bounce_without_recipient_fields_uses_the_returned_to(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    data = postfix_dsn(sent.message_id).replace(
        f"Final-Recipient: rfc822; {ANN}\r\nOriginal-Recipient: rfc822;{ANN}\r\n".encode(), b""
    )
    [outcome] = apply(engine, data, clock)
    assert outcome.report.address == ANN and outcome.suppressed


def test_a_bounce_of_someone_elses_mail_still_suppresses_without_a_contact(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    forged = f"<reengage.{sent.outbox_id}.aaaaaaaaaaaaaaaa@{DOMAIN}>"  # right shape, wrong tag
    [outcome] = apply(engine, postfix_dsn(forged, recipient="zed@example.net"), clock)
    assert (outcome.outbox_id, outcome.contact_id) == (None, None)
    assert suppressed(engine) == [("zed@example.net", "bounced", "dsn", None)]


@pytest.mark.parametrize(
    ("status", "hard"),
    [
        ("5.1.1", True),
        ("5.1.10", True),
        ("5.2.1", True),
        ("5.4.4", True),
        ("5.7.1", False),
        ("5.6.0", False),
        ("4.2.2", False),
        ("2.0.0", False),
        ("", False),
    ],
)
def test_which_statuses_are_hard_bounces(status: str, hard: bool) -> None:
    assert hard_bounce(status) is hard


def test_ordinary_mail_is_not_a_report() -> None:
    reply = crlf(f"From: Ann <{ANN}>\nTo: news@{DOMAIN}\nSubject: Re: Il tuo carrello\n\nGrazie!\n")
    assert read_reports(reply) == []
    vacation = crlf(
        f"From: {ANN}\nTo: news@{DOMAIN}\nSubject: Out of office\nAuto-Submitted: auto-replied\n\nBack Monday\n"
    )
    assert read_reports(vacation) == []


# --- ARF -------------------------------------------------------------------------------------


def test_a_complaint_suppresses_the_complainer(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    [outcome] = apply(engine, arf(sent.message_id), clock)
    assert outcome.report.kind == "complaint" and outcome.report.status == "abuse"
    assert outcome.outbox_id == sent.outbox_id
    assert suppressed(engine) == [(ANN, "complained", "arf", sent.contact_id)]


def test_a_redacted_complaint_is_matched_through_our_message_id(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    data = arf(sent.message_id, rcpt_to=None, to="redacted")
    [outcome] = apply(engine, data, clock)
    assert outcome.report.address is None
    # the contact's address, in the form suppressions keep (lower case)
    assert suppressed(engine) == [(ANN, "complained", "arf", sent.contact_id)]


def test_a_redacted_complaint_about_unknown_mail_does_nothing(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    [outcome] = apply(engine, arf("<x@elsewhere.example>", rcpt_to=None, to="redacted"), clock)
    assert outcome.suppressed is False and outcome.address is None
    assert suppressed(engine) == []


def test_not_spam_feedback_is_not_a_complaint(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    assert apply(engine, arf(sent.message_id, kind="not-spam"), clock) == []


# --- mailto unsubscribe ----------------------------------------------------------------------


def test_a_mailed_unsubscribe_with_a_valid_token(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    token = unsubscribe_token(SECRET, sent.outbox_id, sent.contact_id)
    request = crlf(
        f"From: Ann <ann.alias@example.org>\nTo: unsubscribe@{DOMAIN}\n"
        f"Subject: unsubscribe-{token}\n\nThis message was automatically generated by Gmail.\n"
    )
    [outcome] = apply(engine, request, clock)
    assert (outcome.outbox_id, outcome.contact_id) == (sent.outbox_id, sent.contact_id)
    # the address we wrote to (the contact's), not the alias the request came from
    assert suppressed(engine) == [(ANN, "unsubscribed", "mailto", sent.contact_id)]


def test_a_mailed_unsubscribe_with_a_bad_token_does_nothing(
    engine: Engine, clock: FixedClock, sent: Sent
) -> None:
    token = unsubscribe_token(b"another key entirely" * 2, sent.outbox_id, sent.contact_id)
    request = crlf(f"From: {ANN}\nTo: unsubscribe@{DOMAIN}\nSubject: unsubscribe-{token}\n\n\n")
    [outcome] = apply(engine, request, clock)
    assert outcome.suppressed is False
    assert suppressed(engine) == []


# --- webhooks --------------------------------------------------------------------------------


def test_provider_webhooks(engine: Engine, clock: FixedClock, sent: Sent) -> None:
    with engine.begin() as conn:
        soft = {"type": "bounce", "bounce_type": "soft", "email": ANN}
        assert handle_webhook(conn, soft, secret=SECRET, clock=clock) is None
        hard = {"type": "bounce", "email": " Ann.Rossi@example.org ", "message_id": sent.message_id}
        outcome = handle_webhook(conn, hard, secret=SECRET, clock=clock)
        assert outcome is not None and outcome.suppressed and outcome.outbox_id == sent.outbox_id
        complaint = {"type": "complaint", "email": "bob@example.org"}
        assert handle_webhook(conn, complaint, secret=SECRET, clock=clock) is not None
    assert suppressed(engine) == [
        (ANN, "bounced", "webhook", sent.contact_id),
        ("bob@example.org", "complained", "webhook", None),
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"type": "delivered", "email": ANN}, "'type'"),
        ({"type": "bounce", "email": "not an address"}, "'email'"),
        ({"type": "bounce"}, "'email'"),
        ({"type": "bounce", "email": ANN, "message_id": 12}, "'message_id'"),
    ],
)
def test_a_bad_webhook_names_the_field_not_the_person(
    engine: Engine,
    clock: FixedClock,
    payload: dict[str, Any],
    field: str,
) -> None:
    with engine.begin() as conn, pytest.raises(InputError) as failure:
        handle_webhook(conn, payload, secret=SECRET, clock=clock)
    assert field in str(failure.value) and ANN not in str(failure.value)


# --- folders ---------------------------------------------------------------------------------


def test_a_maildir_of_reports(
    engine: Engine, clock: FixedClock, sent: Sent, tmp_path: Path
) -> None:
    folder = tmp_path / "bounces"
    box = mailbox.Maildir(folder, create=True)
    box.add(postfix_dsn(sent.message_id))
    box.add(arf(sent.message_id, rcpt_to="bob@example.org"))
    personal = box.add(crlf(f"From: {ANN}\nTo: news@{DOMAIN}\nSubject: Grazie\n\nCiao\n"))
    summary = process_folder(engine, folder, secret=SECRET, clock=clock)
    assert (summary.read, summary.reports, summary.suppressed) == (3, 2, 2)
    assert sorted(suppressed(engine)) == [
        (ANN, "bounced", "dsn", sent.contact_id),
        ("bob@example.org", "complained", "arf", sent.contact_id),
    ]
    box = mailbox.Maildir(folder, create=False)
    seen = {key: box.get_message(key) for key in box.iterkeys()}
    assert {key: (m.get_subdir(), "S" in m.get_flags()) for key, m in seen.items()} == {
        key: (("new", False) if key == personal else ("cur", True)) for key in seen
    }
    again = process_folder(engine, folder, secret=SECRET, clock=clock)
    assert (again.read, again.reports) == (1, 0)  # only the person's mail is still unread


def test_an_mbox_of_reports(engine: Engine, clock: FixedClock, sent: Sent, tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path, create=True)
    box.add(postfix_dsn(sent.message_id))
    box.add(arf(sent.message_id))
    box.flush()
    box.close()
    summary = process_folder(engine, path, secret=SECRET, clock=clock)
    assert (summary.read, summary.reports, summary.suppressed) == (2, 2, 1)
    assert [o.report.kind for o in summary.outcomes] == ["bounce", "complaint"]
    assert suppressed(engine) == [(ANN, "bounced", "dsn", sent.contact_id)]


def test_a_folder_that_is_neither(engine: Engine, clock: FixedClock, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a maildir"):
        process_folder(engine, tmp_path, secret=SECRET, clock=clock)
    with pytest.raises(InputError, match="no such"):
        process_folder(engine, tmp_path / "missing", secret=SECRET, clock=clock)


def test_suppressions_are_dated_by_the_clock(engine: Engine, clock: FixedClock, sent: Sent) -> None:
    apply(engine, postfix_dsn(sent.message_id), clock)
    with engine.connect() as conn:
        at = conn.execute(select(suppressions.c.recorded_at)).scalar_one()
    assert at.replace(tzinfo=at.tzinfo or UTC) == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
