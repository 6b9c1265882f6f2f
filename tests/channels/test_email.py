"""The email channel against a real SMTP server (aiosmtpd in this process): plain, STARTTLS
with AUTH, implicit TLS; what arrives parses as the mailbox providers expect; temporary
failures are retried, permanent ones are not; the pool survives dropped connections and
concurrent senders; DKIM verifies; the maildir sink files each outbox row once."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ipaddress
import mailbox
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dkim  # type: ignore[import-untyped]
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from reengage.channels.delivery import Outgoing, PermanentFailure, TemporaryFailure
from reengage.channels.email import (
    MaildirChannel,
    SmtpChannel,
    email_channel,
    message_id_for,
    outbox_id_from_message_id,
)
from reengage.channels.mail import MailBuilder, message_mac
from reengage.channels.smtp import mailbox_gone, parse_smtp_url, scrub
from reengage.clock import FixedClock
from reengage.config import Settings
from reengage.errors import ConfigError
from reengage.messages import tokens

SECRET = "s" * 40
PUBLIC = "https://shop.example.com"
TO = "ann.rossi@example.org"
PASSWORD = "p@ss:w/rd%x"


# --- a real SMTP server -------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int

    def parsed(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it accepts and answers what the test scripts."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: deque[str] = field(default_factory=deque)
    logins: list[str] = field(default_factory=list)
    servers: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.servers[id(session)] = server
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.popleft()
            self.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, id(session))
            )
            return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"shop"
            and auth_data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)

    @property
    def sessions(self) -> int:
        return len({m.session for m in self.messages})


@dataclass
class Server:
    controller: Controller
    inbox: Inbox
    port: int

    def drop_connections(self) -> None:
        """Close every connection from the server's side, as an idle timeout would."""

        async def close_all() -> None:
            for server in list(self.inbox.servers.values()):
                if server.transport is not None:
                    server.transport.close()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(**smtp_options: Any) -> Iterator[Server]:
    inbox = Inbox()
    if smtp_options.pop("auth", False):
        smtp_options["authenticator"] = inbox.authenticator
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield Server(controller, inbox, port)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


# --- the channel under test ---------------------------------------------------------------


def make_settings(tmp_path: Path, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "home": tmp_path / "home",
        "secret_key": SECRET,
        "public_url": PUBLIC,
        "mail_from": "Bottega <news@shop.example.com>",
        "shop_name": "Bottega",
    }
    return Settings(**(base | values))


class Sleeps(list[float]):
    """An injected sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def channel_for(
    tmp_path: Path, clock: FixedClock, url: str, **options: Any
) -> tuple[SmtpChannel, Sleeps]:
    sleeps = Sleeps()
    settings = make_settings(tmp_path, smtp_url=url, **options.pop("settings", {}))
    channel = SmtpChannel(
        parse_smtp_url(url), MailBuilder(settings), clock, sleep=sleeps, **options
    )
    return channel, sleeps


def outgoing(n: int = 41, to: str = TO, **values: Any) -> Outgoing:
    base: dict[str, Any] = {
        "message_id": n,
        "channel": "email",
        "to": to,
        "subject": f"Il tuo carrello ti aspetta, n. {n}",
        "text": f"Ciao Ann,\nil tuo carrello è ancora lì ({n}).\n",
        "html": f"<p>Ciao Ann,</p><p>il tuo carrello è ancora lì ({n}).</p>",
        "data": {"contact_id": 7},
    }
    return Outgoing(**(base | values))


# --- what arrives ---------------------------------------------------------------------------


def check_delivered(msg: EmailMessage, clock: FixedClock, n: int = 41) -> None:
    secret = SECRET.encode()
    assert msg["From"] == "Bottega <news@shop.example.com>"
    assert msg["To"] == TO
    assert msg["Subject"] == f"Il tuo carrello ti aspetta, n. {n}"
    assert msg["Date"] == format_datetime(clock.now())
    assert msg["Message-ID"] == message_id_for(secret, n, "shop.example.com")
    assert outbox_id_from_message_id(secret, msg["Message-ID"]) == n
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Auto-Submitted" not in msg
    links = [part.strip().strip("<>") for part in str(msg["List-Unsubscribe"]).split(",")]
    https, mailto = links
    assert https.startswith(f"{PUBLIC}/l/u/")
    token = https.removeprefix(f"{PUBLIC}/l/u/")
    assert tokens.verify(secret, "unsubscribe", token) == {"m": n, "c": 7}
    assert mailto == f"mailto:unsubscribe@shop.example.com?subject=unsubscribe-{token}"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    # parsed from wire bytes, the text keeps the CRLF line ends SMTP carries
    assert (
        text.get_content().replace("\r\n", "\n")
        == f"Ciao Ann,\nil tuo carrello è ancora lì ({n}).\n"
    )
    assert (
        html.get_content().strip() == f"<p>Ciao Ann,</p><p>il tuo carrello è ancora lì ({n}).</p>"
    )
    assert not msg.defects and all(not part.defects for part in msg.walk())


def test_plain_smtp_delivers_a_complete_message(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        receipt = channel.send(outgoing())
        channel.close()
    assert receipt.provider_id == "Q1"
    [got] = server.inbox.messages
    assert got.mail_from == "news@shop.example.com"
    assert got.rcpt_tos == [TO]
    check_delivered(got.parsed(), clock)
    assert sleeps == []


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_with_auth(
    tmp_path: Path, clock: FixedClock, tls: ssl.SSLContext, mechanism: str
) -> None:
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    with serve(
        tls_context=tls,
        require_starttls=True,
        auth=True,
        auth_required=True,
        auth_exclude_mechanism=[other],
    ) as server:
        url = f"smtp://shop:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}?starttls=1&verify=0"
        channel, _ = channel_for(tmp_path, clock, url)
        channel.send(outgoing())
        channel.close()
    assert server.inbox.logins == [mechanism]
    [got] = server.inbox.messages
    check_delivered(got.parsed(), clock)


def test_smtps_implicit_tls(tmp_path: Path, clock: FixedClock, tls: ssl.SSLContext) -> None:
    with serve(ssl_context=tls, auth=True, auth_require_tls=False) as server:
        url = f"smtps://shop:{quote(PASSWORD, safe='')}@127.0.0.1:{server.port}?verify=0"
        channel, _ = channel_for(tmp_path, clock, url)
        channel.send(outgoing())
        channel.close()
    assert server.inbox.logins == ["PLAIN"]  # smtplib's first choice of the two
    check_delivered(server.inbox.messages[0].parsed(), clock)


def test_an_unverified_certificate_is_refused_without_retrying(
    tmp_path: Path, clock: FixedClock, tls: ssl.SSLContext
) -> None:
    with serve(ssl_context=tls) as server:
        channel, sleeps = channel_for(tmp_path, clock, f"smtps://127.0.0.1:{server.port}")
        with pytest.raises(TemporaryFailure, match="certificate did not verify"):
            channel.send(outgoing())
        channel.close()
    assert sleeps == []
    assert server.inbox.messages == []


def test_a_wrong_password_is_a_setting_to_fix(
    tmp_path: Path, clock: FixedClock, tls: ssl.SSLContext
) -> None:
    with serve(tls_context=tls, require_starttls=True, auth=True, auth_required=True) as server:
        url = f"smtp://shop:wrong-secret@127.0.0.1:{server.port}?starttls=1&verify=0"
        channel, sleeps = channel_for(tmp_path, clock, url)
        with pytest.raises(TemporaryFailure) as failure:
            channel.send(outgoing())
        channel.close()
    message = str(failure.value)
    assert message.startswith("smtp_url") and "refused the login" in message
    assert "wrong-secret" not in message and "shop:" not in message
    assert sleeps == []


def test_auth_before_tls_is_explained(tmp_path: Path, clock: FixedClock) -> None:
    with serve(auth=True) as server:  # AUTH is offered only over TLS
        channel, _ = channel_for(tmp_path, clock, f"smtp://shop:pw@127.0.0.1:{server.port}")
        with pytest.raises(TemporaryFailure, match="starttls=1"):
            channel.send(outgoing())
        channel.close()


# --- failures -------------------------------------------------------------------------------


def test_451_twice_then_accepted_is_delivered_once(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        server.inbox.data_replies.extend(["451 4.3.0 Try again later"] * 2)
        channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        receipt = channel.send(outgoing())
        channel.close()
    assert len(server.inbox.messages) == 1
    assert receipt.provider_id == "Q1"
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # doubling, with jitter
    assert server.inbox.sessions == 1  # a 4xx leaves the connection usable


def test_temporary_failures_give_up_after_the_last_attempt(
    tmp_path: Path, clock: FixedClock
) -> None:
    with serve() as server:
        server.inbox.rcpt_replies[TO] = f"450 4.2.1 <{TO}>: mailbox busy"
        channel, sleeps = channel_for(
            tmp_path, clock, f"smtp://127.0.0.1:{server.port}", attempts=3
        )
        with pytest.raises(TemporaryFailure) as failure:
            channel.send(outgoing())
        channel.close()
    assert len(sleeps) == 2
    assert "after 3 attempts" in str(failure.value) and "450" in str(failure.value)
    assert TO not in str(failure.value)


def test_a_server_that_is_not_there_is_retried(tmp_path: Path, clock: FixedClock) -> None:
    port = _free_port()
    channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{port}?timeout=5")
    with pytest.raises(TemporaryFailure, match="connect"):
        channel.send(outgoing())
    assert len(sleeps) == channel.attempts - 1


def test_550_on_rcpt_is_permanent_and_suppresses(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        server.inbox.rcpt_replies[TO] = (
            f"550 5.1.1 <{TO}>: Recipient address rejected: User unknown"
        )
        channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        with pytest.raises(PermanentFailure) as failure:
            channel.send(outgoing())
        # the connection was reset, not lost: the next message goes through it
        channel.send(outgoing(42, to="bob@example.org"))
        channel.close()
    assert failure.value.suppress is True
    assert TO not in str(failure.value) and "5.1.1" in str(failure.value)
    assert sleeps == []
    assert [m.rcpt_tos for m in server.inbox.messages] == [["bob@example.org"]]
    assert channel.pool.opened == 1


def test_a_policy_refusal_does_not_suppress(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        server.inbox.rcpt_replies[TO] = "550 5.7.1 Message rejected under our policy"
        channel, _ = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        with pytest.raises(PermanentFailure) as failure:
            channel.send(outgoing())
        channel.close()
    assert failure.value.suppress is False


@pytest.mark.parametrize(
    ("code", "text", "gone"),
    [
        (550, "5.1.1 User unknown", True),
        (550, "No such user here", True),
        (551, "User not local", True),
        (553, "Mailbox name not allowed", True),
        (550, "5.2.1 Mailbox disabled", True),
        (550, "5.7.1 Relaying denied", False),
        (552, "5.2.2 Mailbox full", False),
        (554, "Transaction failed", False),
        (550, "5.1.8 Bad sender's system address", False),
        (450, "4.1.1 try later", False),
    ],
)
def test_which_refusals_mean_the_mailbox_is_gone(code: int, text: str, gone: bool) -> None:
    assert mailbox_gone(code, text) is gone


def test_replies_are_scrubbed_of_addresses() -> None:
    assert scrub("550 5.1.1 <ann@example.org>: unknown; also bob@x.it") == (
        "550 5.1.1 <<address>>: unknown; also <address>"
    )


# --- the pool -------------------------------------------------------------------------------


def test_a_dropped_pooled_connection_is_replaced(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        channel.send(outgoing(1))
        server.drop_connections()
        channel.send(outgoing(2))
        channel.send(outgoing(3))
        channel.close()
    ids = [
        outbox_id_from_message_id(SECRET.encode(), m.parsed()["Message-ID"])
        for m in server.inbox.messages
    ]
    assert ids == [1, 2, 3]
    assert channel.pool.opened == 2
    assert sleeps == []  # a dead idle connection is not a failed attempt


def test_threads_share_the_pool_and_every_message_arrives_once(
    tmp_path: Path, clock: FixedClock
) -> None:
    threads, each = 8, 25
    with serve() as server:
        channel, sleeps = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}?pool=3")
        errors: list[BaseException] = []

        def work(start: int) -> None:
            try:
                for n in range(start, start + each):
                    channel.send(outgoing(n, to=f"person{n}@example.org"))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t * each,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        channel.close()
    assert errors == []
    arrived = [
        (outbox_id_from_message_id(SECRET.encode(), m.parsed()["Message-ID"]), m.rcpt_tos)
        for m in server.inbox.messages
    ]
    assert sorted(n for n, _ in arrived if n is not None) == list(range(threads * each))
    assert all(rcpt == [f"person{n}@example.org"] for n, rcpt in arrived)
    assert channel.pool.opened <= 3
    assert sleeps == []


def test_a_closed_channel_refuses_to_send(tmp_path: Path, clock: FixedClock) -> None:
    with serve() as server:
        channel, _ = channel_for(tmp_path, clock, f"smtp://127.0.0.1:{server.port}")
        channel.send(outgoing(1))
        channel.close()
        with pytest.raises(RuntimeError):
            channel.send(outgoing(2))


# --- identity and the crash window ----------------------------------------------------------


def test_the_same_outbox_row_builds_the_same_message(tmp_path: Path, clock: FixedClock) -> None:
    builder = MailBuilder(make_settings(tmp_path))
    first = builder.render(outgoing(9), at=clock.now())
    assert builder.render(outgoing(9), at=clock.now()) == first
    other = builder.render(outgoing(10), at=clock.now())
    assert other != first
    secret = SECRET.encode()
    assert outbox_id_from_message_id(secret, f"<reengage.9.{message_mac(secret, 9)}@x.org>") == 9
    forged = f"<reengage.10.{message_mac(secret, 9)}@shop.example.com>"
    assert outbox_id_from_message_id(secret, forged) is None
    assert (
        outbox_id_from_message_id(b"another key" * 4, f"<reengage.9.{message_mac(secret, 9)}@x>")
        is None
    )
    assert outbox_id_from_message_id(secret, "<CAF=abc@mail.gmail.com>") is None


def test_text_only_and_extra_headers(tmp_path: Path, clock: FixedClock) -> None:
    builder = MailBuilder(make_settings(tmp_path, mail_from="news@shop.example.com"))
    data = builder.render(
        outgoing(5, html=None, headers={"Feedback-ID": "winback:cart:reengage"}), at=clock.now()
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert (
        msg.get_content().replace("\r\n", "\n") == "Ciao Ann,\nil tuo carrello è ancora lì (5).\n"
    )
    assert msg["From"] == "Bottega <news@shop.example.com>"  # shop_name when mail_from has none
    assert msg["Feedback-ID"] == "winback:cart:reengage"
    with pytest.raises(ValueError, match="List-Unsubscribe"):
        builder.render(outgoing(5, headers={"List-Unsubscribe": "<x>"}), at=clock.now())
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


@pytest.mark.parametrize(
    "bad",
    [
        "no-at-sign",
        "a@b@c",
        "Ann <ann@example.org>",
        "ann@",
        "ànn@example.org",
        "x\r\nBcc: y@z.org",
    ],
)
def test_a_bad_address_is_a_permanent_failure_that_names_no_address(
    tmp_path: Path, clock: FixedClock, bad: str
) -> None:
    builder = MailBuilder(make_settings(tmp_path))
    with pytest.raises(PermanentFailure) as failure:
        builder.render(outgoing(3, to=bad), at=clock.now())
    assert "outbox 3" in str(failure.value) and bad not in str(failure.value)
    assert failure.value.suppress is False


def test_an_idn_domain_is_sent_in_ascii(tmp_path: Path, clock: FixedClock) -> None:
    builder = MailBuilder(make_settings(tmp_path))
    msg = email.message_from_bytes(
        builder.render(outgoing(3, to="ann@müller.de"), at=clock.now()), policy=email.policy.default
    )
    assert msg["To"] == "ann@xn--mller-kva.de"


# --- DKIM -----------------------------------------------------------------------------------


def test_dkim_signature_verifies(tmp_path: Path, clock: FixedClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    asked: list[bytes] = []

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        asked.append(name)
        return record if name == b"rg2026._domainkey.shop.example.com." else None

    settings = {"dkim_selector": "rg2026", "dkim_private_key_file": key_file}
    with serve() as server:
        channel, _ = channel_for(
            tmp_path, clock, f"smtp://127.0.0.1:{server.port}", settings=settings
        )
        channel.send(outgoing(11, headers={"Feedback-ID": "winback:reengage"}))
        channel.close()
    data = server.inbox.messages[0].data
    assert dkim.verify(data, dnsfunc=dns)
    assert asked == [b"rg2026._domainkey.shop.example.com."]
    signature = email.message_from_bytes(data, policy=email.policy.default)["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1) for part in "".join(str(signature).split()).split(";") if part
    )
    assert tags["d"] == "shop.example.com" and tags["s"] == "rg2026"
    assert tags["c"] == "relaxed/relaxed"
    signed = tags["h"].lower().split(":")
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "feedback-id",
    ):
        assert name in signed
    # the maildir sink files the same signed message, with LF line ends: it verifies too
    sink = MaildirChannel.from_settings(make_settings(tmp_path, **settings), clock)
    sink.send(outgoing(11, headers={"Feedback-ID": "winback:reengage"}))
    [filed] = (tmp_path / "home" / "mail" / "new").iterdir()
    assert dkim.verify(filed.read_bytes(), dnsfunc=dns)
    tampered = data.replace(b"Subject: ", b"Subject: FREE ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)
    # a second From added after signing breaks the signature: From is signed twice
    assert signed.count("from") == 2
    at = data.index(b"\r\nFrom: ")
    forged = data[:at] + b"\r\nFrom: someone@evil.example" + data[at:]
    assert not dkim.verify(forged, dnsfunc=dns)


def test_dkim_settings_must_come_in_pairs(tmp_path: Path, clock: FixedClock) -> None:
    with pytest.raises(ConfigError, match="dkim_private_key_file"):
        MailBuilder(make_settings(tmp_path, dkim_selector="rg"))
    with pytest.raises(ConfigError, match="cannot read"):
        MailBuilder(
            make_settings(tmp_path, dkim_selector="rg", dkim_private_key_file=tmp_path / "none.pem")
        )
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not an unencrypted PEM RSA private key"):
        MailBuilder(make_settings(tmp_path, dkim_selector="rg", dkim_private_key_file=junk))


# --- the maildir sink -----------------------------------------------------------------------


def test_without_smtp_url_mail_goes_to_the_home_maildir(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path)
    channel = email_channel(settings, clock)
    assert isinstance(channel, MaildirChannel)
    channel.send(outgoing(41))
    channel.send(outgoing(42))
    again = channel.send(outgoing(41))  # a retry of a row already filed
    channel.close()
    box = mailbox.Maildir(settings.mail_path, create=False)
    messages = {outbox_id_from_message_id(SECRET.encode(), m["Message-ID"]) or 0: m for m in box}
    assert sorted(messages) == [41, 42]
    parsed = email.message_from_bytes(bytes(messages[41]), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    check_delivered(parsed, clock, 41)
    assert again.provider_id is not None and again.provider_id.startswith("reengage.41.")


def test_a_message_moved_to_cur_is_not_filed_again(tmp_path: Path, clock: FixedClock) -> None:
    settings = make_settings(tmp_path)
    MaildirChannel.from_settings(settings, clock).send(outgoing(1))
    box = mailbox.Maildir(settings.mail_path, create=False)
    for key in list(box.iterkeys()):
        msg = box[key]
        msg.set_subdir("cur")
        msg.add_flag("S")
        box[key] = msg
    MaildirChannel.from_settings(settings, clock).send(outgoing(1))  # a new process, a retry
    assert len(mailbox.Maildir(settings.mail_path, create=False)) == 1


def test_with_smtp_url_the_factory_gives_smtp(tmp_path: Path, clock: FixedClock) -> None:
    channel = email_channel(make_settings(tmp_path, smtp_url="smtp://127.0.0.1:2525"), clock)
    assert isinstance(channel, SmtpChannel)
    channel.close()


# --- smtp_url -------------------------------------------------------------------------------


def test_good_urls() -> None:
    cfg = parse_smtp_url(
        f"smtp://shop%40x.it:{quote(PASSWORD, safe='')}@mail.x.it?starttls=1&pool=4&timeout=7.5"
    )
    assert (cfg.host, cfg.port, cfg.starttls, cfg.implicit_tls) == ("mail.x.it", 587, True, False)
    assert (cfg.username, cfg.password, cfg.pool, cfg.timeout, cfg.verify) == (
        "shop@x.it",
        PASSWORD,
        4,
        7.5,
        True,
    )
    assert PASSWORD not in repr(cfg)
    cfg = parse_smtp_url("smtps://mail.x.it?verify=0")
    assert (cfg.port, cfg.implicit_tls, cfg.verify, cfg.username) == (465, True, False, None)
    assert parse_smtp_url("smtp://relay.lan").port == 25
    assert parse_smtp_url("smtp://relay.lan:2525/").port == 2525


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("smtp://", "no server name"),
        ("smtp://u:topsecret@host:99999", "port"),
        ("smtp://u:topsecret@host:abc", "port"),
        ("smtp://u:topsecret@host?tls=1", "unknown option 'tls'"),
        ("smtps://u:topsecret@host?starttls=1", "starttls=1 is for smtp://"),
        ("smtp://u:topsecret@host?starttls=maybe", "starttls must be 1 or 0"),
        ("smtp://host?timeout=0", "timeout"),
        ("smtp://host?timeout=soon", "timeout"),
        ("smtp://host?pool=0", "pool"),
        ("smtp://host?pool=many", "pool"),
        ("smtp://user@host", "no password"),
        ("smtp://:topsecret@host", "no user"),
        ("smtp://u:topsecret@host/inbox", "path"),
        ("http://u:topsecret@host", "smtp://"),
    ],
)
def test_bad_urls_name_the_setting_and_the_problem(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse_smtp_url(url)
    message = str(failure.value)
    assert message.startswith("smtp_url: ")
    assert why in message
    assert "topsecret" not in message


def test_a_bad_url_in_settings_stops_the_factory(tmp_path: Path, clock: FixedClock) -> None:
    with pytest.raises(ConfigError, match="smtp_url: unknown option"):
        email_channel(make_settings(tmp_path, smtp_url="smtp://u:topsecret@h?ssl=1"), clock)


def test_a_bad_mail_from_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mail_from"):
        MailBuilder(make_settings(tmp_path, mail_from="Our shop"))
