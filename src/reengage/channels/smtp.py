"""Sending email over SMTP: a small pool of connections shared by the worker threads, and
the retry rules of the protocol (4xx: later, 5xx: never). The server and its options come
from `smtp_url` (`reengage.channels.smtp_url`).

DATA is written here rather than by `smtplib`: the message body goes out, then the message's
hand-over callback runs (`Outgoing.handing`), then the final dot, which is what makes the
server take the message. A server that lost the connection before the dot drops the body.
"""

from __future__ import annotations

import random
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable

from reengage.channels.delivery import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    hand_over,
)
from reengage.channels.mail import MailBuilder, recipient
from reengage.channels.smtp_url import SmtpConfig, parse_smtp_url
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ConfigError

__all__ = ["SmtpChannel", "SmtpConfig", "SmtpPool", "mailbox_gone", "parse_smtp_url", "scrub"]


class _Rejected(Exception):
    """The server answered a command with an error; the connection is still usable."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(stage, code, text)
        self.stage, self.code, self.text = stage, code, text


class _Unusable(Exception):
    """The connection cannot go on (dropped, timed out, 421): open another one."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(stage, reason)
        self.stage, self.reason = stage, reason


class _Setup(Exception):
    """The server refused us as configured (login, certificate, no STARTTLS): retrying in a
    few seconds will not help, the settings must change."""


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return scrub(" ".join(text.split()))


def scrub(text: str) -> str:
    """A server reply fit for a log line: addresses replaced, cut to 200 characters. Servers
    often quote the recipient ("<ann@example.org>: Recipient address rejected")."""
    return re.sub(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;]+", "<address>", text)[:200]


_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


def mailbox_gone(code: int, text: str) -> bool:
    """Whether a 5xx reply to RCPT says the mailbox does not exist (so the address should be
    suppressed), as opposed to a refusal of us or of this message (policy, spam, size).

    With an enhanced status code (RFC 3463) the subject decides: X.1.x is the address (except
    the sender's, 5.1.7/5.1.8) and 5.2.1 a disabled mailbox. Without one, 550, 551 and 553.
    """
    if not 500 <= code < 600:
        return False
    found = _ENHANCED.match(text.strip())
    if found is None:
        return code in (550, 551, 553)
    klass, subject, detail = (int(g) for g in found.groups())
    if klass != 5:
        return False
    return (subject == 1 and detail not in (7, 8)) or (subject, detail) == (2, 1)


class SmtpPool:
    """Up to `config.pool` open connections, each used by one thread at a time and put back
    for the next message. A connection the server dropped is thrown away, not returned."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: list[smtplib.SMTP] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.pool)
        self._closed = False
        self.opened = 0  # connections opened since the start (reconnects included)
        self._context = ssl.create_default_context()
        if not config.verify:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE

    def acquire(self) -> tuple[smtplib.SMTP, bool]:
        """A connection for this thread alone, and whether it was used before."""
        self._slots.acquire()
        try:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the SMTP channel is closed")
                if self._idle:
                    return self._idle.pop(), True
            return self._open(), False
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: smtplib.SMTP, *, usable: bool) -> None:
        try:
            with self._lock:
                if usable and not self._closed:
                    self._idle.append(conn)
                    return
            _close(conn, polite=usable)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Say QUIT on the idle connections; those in use close when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn, polite=True)

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        conn: smtplib.SMTP | None = None
        try:
            if cfg.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, cfg.helo, timeout=cfg.timeout, context=self._context
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, cfg.helo, timeout=cfg.timeout)
            # the final dot is a write of its own, after the body: Nagle's algorithm would
            # hold it back until the server acknowledged the body (a delayed ACK, 40 ms)
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if cfg.starttls:
                if not conn.has_extn("starttls"):
                    raise _Setup("the server does not offer STARTTLS (starttls=1 asks for it)")
                conn.starttls(context=self._context)
                conn.ehlo()
            if cfg.username and cfg.password is not None:
                _login(conn, cfg.username, cfg.password)
        except ssl.SSLCertVerificationError as exc:
            _close(conn, polite=False)
            raise _Setup(
                f"the server's certificate did not verify ({exc.verify_message}); "
                "verify=0 accepts any certificate, for a test server only"
            ) from None
        except smtplib.SMTPResponseException as exc:
            _close(conn, polite=False)
            reason = f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:
                raise _Unusable("connect", reason) from None
            raise _Setup(f"the server refused the connection ({reason})") from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(conn, polite=False)
            raise _Unusable("connect", type(exc).__name__) from None
        except BaseException:
            _close(conn, polite=False)
            raise
        with self._lock:
            self.opened += 1
        return conn


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    try:
        conn.login(username, password)
    except smtplib.SMTPAuthenticationError as exc:
        reason = f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            raise _Unusable("login", reason) from None
        raise _Setup(f"the server refused the login ({reason})") from None
    except smtplib.SMTPNotSupportedError:
        raise _Setup(
            "the server does not offer AUTH here (most servers offer it only after TLS: "
            "add starttls=1 or use smtps://)"
        ) from None
    except smtplib.SMTPServerDisconnected:
        raise
    except smtplib.SMTPException:  # no mechanism in common
        raise _Setup("the server offers no AUTH mechanism reengage knows (PLAIN, LOGIN)") from None


def _close(conn: smtplib.SMTP | None, *, polite: bool) -> None:
    if conn is None:
        return
    try:
        if polite:
            conn.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        conn.close()


def _transaction(
    conn: smtplib.SMTP, sender: str, to: str, data: bytes, hand: Callable[[], None]
) -> str:
    """MAIL, RCPT, DATA on an open connection, `hand()` called between the body and the
    final dot; the server's final reply text. What `hand` raises goes through untouched."""
    stage = "mail"
    reply: bytes | str
    try:
        code, reply = conn.mail(sender)
        if code != 250:
            _refused(conn, stage, code, reply)
        stage = "rcpt"
        code, reply = conn.rcpt(to)
        if code not in (250, 251):
            _refused(conn, stage, code, reply)
        stage = "data"
        conn.putcmd("data")
        code, reply = conn.getreply()
        if code != 354:
            _refused(conn, stage, code, reply)
        conn.send(_body(data))
    except smtplib.SMTPServerDisconnected:
        raise _Unusable(stage, "the server closed the connection") from None
    except OSError as exc:
        raise _Unusable(stage, type(exc).__name__) from None
    hand()
    try:
        conn.send(b".\r\n")
        code, reply = conn.getreply()
        if code != 250:
            _refused(conn, stage, code, reply)
    except smtplib.SMTPServerDisconnected:
        raise _Unusable(stage, "the server closed the connection") from None
    except OSError as exc:
        raise _Unusable(stage, type(exc).__name__) from None
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _body(data: bytes) -> bytes:
    """The message as DATA carries it, without the final dot: lines starting with a dot get
    another one (RFC 5321 4.5.2), and the last line ends with CRLF."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _refused(conn: smtplib.SMTP, stage: str, code: int, reply: bytes | str) -> None:
    text = _reply_text(reply)
    if code == 421 or code < 200:  # the server is closing this connection
        raise _Unusable(stage, f"{code} {text}")
    conn.rset()
    raise _Rejected(stage, code, text)


def _provider_id(reply: str) -> str:
    found = re.search(r"queued as ([A-Za-z0-9._-]+)", reply)
    return found.group(1) if found else scrub(reply.strip())


class SmtpChannel:
    """The email channel over an SMTP server (a relay, a provider's submission port).

    `send` builds the message, takes a pooled connection and runs one SMTP transaction; on a
    temporary failure (4xx, a dropped or refused connection) it waits and tries again, up to
    `attempts` times, with exponential backoff and jitter. A pooled connection found dead
    before the server accepted anything is replaced at once without counting as an attempt.
    A message with a hand-over callback (`Outgoing.handing`) is not tried again once the
    callback ran: a refused or unanswered final dot raises TemporaryFailure at once.
    Safe to call from many threads; `pool` connections are shared among them.
    """

    name = "email"

    def __init__(
        self,
        config: SmtpConfig,
        builder: MailBuilder,
        clock: Clock,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.config = config
        self.builder = builder
        self.clock = clock
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.pool = SmtpPool(config)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> SmtpChannel:
        if settings.smtp_url is None:
            raise ConfigError("smtp_url: not set")
        return cls(parse_smtp_url(settings.smtp_url), MailBuilder(settings), clock)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): doubling from
        `backoff`, capped at `max_backoff`, each wait drawn between half and all of it."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def send(self, message: Outgoing) -> Receipt:
        data = self.builder.render(message, at=self.clock.now())
        to = recipient(message)
        where = f"outbox {message.message_id}"
        last = ""
        handed = False

        def hand() -> None:
            nonlocal handed
            hand_over(message)
            handed = True

        for attempt in range(1, self.attempts + 1):
            try:
                reply = self._attempt(to, data, hand)
            except _Rejected as exc:
                reason = f"{exc.code} {exc.text}"
                if exc.code >= 500:
                    what = "recipient" if exc.stage == "rcpt" else exc.stage.upper()
                    raise PermanentFailure(
                        f"{where}: the server refused the {what} ({reason})",
                        suppress=exc.stage == "rcpt" and mailbox_gone(exc.code, exc.text),
                    ) from None
                last = f"{exc.stage.upper()} answered {reason}"
            except _Unusable as exc:
                last = f"{exc.stage}: {exc.reason}"
            except _Setup as exc:
                raise TemporaryFailure(f"smtp_url ({self.config.describe()}): {exc}") from None
            else:
                return Receipt(provider_id=_provider_id(reply) or None)
            if handed and message.handing is not None:
                # the hand-over is recorded: the caller clears it before anyone waits
                raise TemporaryFailure(f"{where}: not taken after the hand-over (last: {last})")
            if attempt < self.attempts:
                self._sleep(self.delay(attempt))
        raise TemporaryFailure(
            f"{where}: not sent after {self.attempts} attempts to {self.config.describe()} "
            f"(last: {last})"
        )

    def _attempt(self, to: str, data: bytes, hand: Callable[[], None]) -> str:
        while True:
            conn, reused = self.pool.acquire()
            usable = False
            try:
                reply = _transaction(conn, self.builder.address, to, data, hand)
                usable = True
                return reply
            except _Rejected:
                usable = True
                raise
            except _Unusable as exc:
                if reused and exc.stage == "mail":
                    continue  # it died while idle: nothing was accepted, take a fresh one
                raise
            finally:
                self.pool.release(conn, usable=usable)

    def close(self) -> None:
        self.pool.close()
