"""What comes back after an email: bounces, complaints and mailed unsubscribe requests, each
turned into a suppression so the address is not written to again.

- **DSN** (RFC 3464 `multipart/report; report-type=delivery-status`): a recipient whose
  `Action` is `failed` with a `5.x.x` `Status` is a hard bounce, suppressed as `bounced`.
  Soft bounces (`4.x.x`, `delayed`) are ignored: the server is still trying. Refusals of the
  sender or the content (`5.7.x` policy, `5.6.x` media) are reported as blocks and not
  suppressed: they say nothing about the address.
- **ARF** (RFC 5965 `multipart/report; report-type=feedback-report`), the feedback loops of
  mailbox providers: `Feedback-Type: abuse` (or `fraud`) is a complaint, suppressed as
  `complained`.
- **mailto unsubscribe**: the second link of List-Unsubscribe sends a mail to
  `unsubscribe@<domain>` with the subject `unsubscribe-<token>`; a valid token unsubscribes.
- **provider webhooks**: `{"type": "bounce"|"complaint", "email": ..., "message_id": ...}`.

The recipient comes from `Original-Recipient`/`Final-Recipient` (DSN), `Original-Rcpt-To`
(ARF) or the returned message's `To`. When the returned message carries one of our
Message-IDs (`reengage.<outbox id>.<tag>@domain`, see `reengage.channels.mail`), the report is
tied to its outbox row and so to its contact; providers that redact the recipient from
complaints (most do) are matched through that contact's address.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from reengage.channels.mail import outbox_id_from_message_id
from reengage.clock import Clock
from reengage.errors import InputError
from reengage.messages import tokens
from reengage.state.schema import contacts, messages
from reengage.suppressions import suppress

# the suppression reason for each kind of report; a "block" suppresses nothing
REASONS = {"bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNSUBSCRIBE = re.compile(r"\bunsubscribe-([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Report:
    """One thing a report says about one recipient."""

    kind: str  # bounce, block, complaint, unsubscribe
    source: str  # dsn, arf, mailto, webhook
    address: str | None  # the recipient it is about, when the report names one
    original_message_id: str | None = None
    status: str | None = None  # "5.1.1" for a DSN, the Feedback-Type for ARF
    token: str | None = None  # the unsubscribe token of a mailed request


@dataclass(frozen=True)
class Outcome:
    """What was done about a report."""

    report: Report
    outbox_id: int | None  # the outbox row the report is about, when it is ours
    contact_id: int | None
    address: str | None  # the address suppressed (or that would have been)
    suppressed: bool  # True when this report added the suppression


def hard_bounce(status: str) -> bool:
    """Whether a DSN status means the address itself is bad: class 5, and not a refusal of
    the sender or the content (X.7.x security or policy, X.6.x media)."""
    found = _STATUS.search(status)
    return found is not None and found.group(1) == "5" and found.group(2) not in ("6", "7")


def read_reports(message: bytes | Message) -> list[Report]:
    """The bounces, blocks, complaints and unsubscribe requests in one incoming email; empty
    for anything else (an auto-reply, a person writing back, a soft bounce)."""
    if isinstance(message, bytes):
        message = email.message_from_bytes(message, policy=email.policy.default)
    parts = list(_children(message)) if message.is_multipart() else [message]
    original = _original_headers(parts)
    found: list[Report] = []
    for part in parts:
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            found.extend(_dsn(part, original))
        elif ctype == "message/feedback-report":
            found.extend(_arf(part, original))
    if found or message.get_content_type() == "multipart/report":
        return found
    token = _UNSUBSCRIBE.search(str(message.get("Subject", "")))
    if token:
        sender = _address(str(message.get("From", "")))
        return [Report("unsubscribe", "mailto", sender, token=token.group(1))]
    return []


def _children(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _dsn(part: Message, original: Message | None) -> list[Report]:
    message_id = _header(original, "Message-ID")
    reports = []
    for fields in _blocks(part):  # the first block is about the message: it has no Action
        action = fields.get("action", "").strip().lower()
        status = fields.get("status", "").strip()
        if action != "failed" or not status.startswith("5"):
            continue
        address = (
            _address(fields.get("original-recipient", ""))
            or _address(fields.get("final-recipient", ""))
            or _first_to(original)
        )
        kind = "bounce" if hard_bounce(status) else "block"
        code = _STATUS.search(status)
        status = code.group(0) if code else status  # "5.1.1 (user unknown)" -> "5.1.1"
        reports.append(Report(kind, "dsn", address, message_id, status=status))
    return reports


def _arf(part: Message, original: Message | None) -> list[Report]:
    blocks = _blocks(part)
    fields = blocks[0] if blocks else _Fields([])
    feedback = fields.get("feedback-type", "").strip().lower()
    if feedback not in COMPLAINT_TYPES:
        return []
    message_id = _header(original, "Message-ID")
    recipients = [a for a in (_address(v) for v in fields.get_all("original-rcpt-to")) if a]
    if not recipients:
        to = _first_to(original)
        recipients = [to] if to else []
    if not recipients:  # redacted: the Message-ID alone says who it was
        return [Report("complaint", "arf", None, message_id, status=feedback)]
    return [Report("complaint", "arf", a, message_id, status=feedback) for a in recipients]


class _Fields(dict[str, str]):
    """A block of report fields: the first value of each name, lower-cased, and all of them."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        super().__init__()
        self.every: dict[str, list[str]] = {}
        for name, value in items:
            key = name.strip().lower()
            self.every.setdefault(key, []).append(" ".join(str(value).split()))
            self.setdefault(key, self.every[key][0])

    def get_all(self, name: str) -> list[str]:
        return self.every.get(name, [])


def _blocks(part: Message) -> list[_Fields]:
    """The blank-line separated blocks of fields of a delivery-status or feedback report,
    however the parser held them (a list of messages, or one message and text after it)."""
    payload = part.get_payload()
    blocks: list[_Fields] = []
    if isinstance(payload, str):
        blocks.extend(_text_blocks(payload))
    elif isinstance(payload, list):
        for item in payload:
            if not isinstance(item, Message):
                continue
            blocks.append(_Fields(item.items()))
            rest = item.get_payload()
            if isinstance(rest, str) and rest.strip():
                blocks.extend(_text_blocks(rest))
    return [b for b in blocks if b]


def _text_blocks(text: str) -> list[_Fields]:
    parser = HeaderParser(policy=email.policy.compat32)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [_Fields(parser.parsestr(chunk.strip() + "\n").items()) for chunk in chunks]


def _original_headers(parts: list[Message]) -> Message | None:
    """The headers of the message the report is about, from its message/rfc822 or
    text/rfc822-headers part."""
    for part in parts:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, Message) else None
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser(policy=email.policy.compat32).parsestr(
                    text.decode("utf-8", "replace")
                )
    return None


def _header(message: Message | None, name: str) -> str | None:
    if message is None:
        return None
    value = message.get(name)
    return " ".join(str(value).split()) if value is not None else None


def _first_to(original: Message | None) -> str | None:
    to = _header(original, "To")
    if not to:
        return None
    for _, address in getaddresses([to]):
        if _plausible(address):
            return address
    return None


def _address(value: str) -> str | None:
    """The address of a report field (`rfc822; ann@example.org`, `<ann@example.org>`)."""
    text = value.strip()
    if ";" in text:
        kind, _, text = text.partition(";")
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return None
    address = parseaddr(text.strip())[1] or text.strip().strip("<>")
    return address if _plausible(address) else None


def _plausible(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in address))


def record(conn: Connection, report: Report, *, secret: bytes, clock: Clock) -> Outcome:
    """Suppress the address a report is about (idempotent: a report read twice adds one
    suppression). The outbox row and contact are found through our Message-ID or the
    unsubscribe token; a report with neither an address nor a known contact does nothing."""
    outbox_id = outbox_id_from_message_id(secret, report.original_message_id)
    contact_id: int | None = None
    if report.token is not None:
        try:
            payload = tokens.verify(secret, "unsubscribe", report.token)
        except tokens.BadToken:
            return Outcome(report, None, None, None, suppressed=False)
        outbox_id = payload.get("m") if isinstance(payload.get("m"), int) else None
        contact_id = payload.get("c") if isinstance(payload.get("c"), int) else None
    if outbox_id is not None:
        row = conn.execute(
            select(messages.c.contact_id).where(messages.c.id == outbox_id)
        ).scalar_one_or_none()
        if row is None:
            outbox_id = None
        else:
            contact_id = row
    address = report.address
    if contact_id is not None and (address is None or report.kind == "unsubscribe"):
        # the address we wrote to is the contact's, whoever mailed the request
        address = (
            conn.execute(
                select(contacts.c.email).where(contacts.c.id == contact_id)
            ).scalar_one_or_none()
            or address
        )
    if address is None or report.kind not in REASONS:
        return Outcome(report, outbox_id, contact_id, address, suppressed=False)
    added = suppress(
        conn,
        "email",
        address,
        REASONS[report.kind],
        source=report.source,
        at=clock.now(),
        contact_id=contact_id,
    )
    return Outcome(report, outbox_id, contact_id, address, suppressed=added)


def handle_webhook(
    conn: Connection, payload: Mapping[str, Any], *, secret: bytes, clock: Clock
) -> Outcome | None:
    """A provider's bounce or complaint notification, in the generic shape
    `{"type": "bounce"|"complaint", "email": "...", "message_id": "<...>"}` (an optional
    `"bounce_type": "soft"` or `"transient"` is ignored, like a soft DSN). InputError names
    the field that is wrong; the address never appears in it."""
    kind = payload.get("type")
    if kind not in ("bounce", "complaint"):
        raise InputError('webhook: \'type\' must be "bounce" or "complaint"')
    address = payload.get("email")
    if not isinstance(address, str) or not _plausible(address.strip()):
        raise InputError("webhook: 'email' must be an email address")
    message_id = payload.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        raise InputError("webhook: 'message_id' must be a string")
    severity = str(payload.get("bounce_type", "hard")).lower()
    if kind == "bounce" and severity in ("soft", "transient", "temporary"):
        return None
    report = Report(kind, "webhook", address.strip(), message_id)
    return record(conn, report, secret=secret, clock=clock)


@dataclass
class FolderSummary:
    read: int = 0  # messages looked at
    reports: int = 0  # bounces, blocks, complaints and requests found in them
    suppressed: int = 0  # new suppressions
    outcomes: list[Outcome] = field(default_factory=list)


def process_folder(engine: Engine, path: Path, *, secret: bytes, clock: Clock) -> FolderSummary:
    """Read every report in a maildir (the folder with cur/, new/, tmp/) or an mbox file.

    Maildir: messages already seen are skipped, and each message that held a report is
    marked seen (moved to cur/ with the S flag); other mail is left unread for a person.
    Mbox: every message is read each time, which is harmless (suppressing twice adds
    nothing). Each message's suppressions are one transaction.
    """
    path = Path(path)
    summary = FolderSummary()
    if path.is_dir():
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise InputError(f"{path}: not a maildir (no new/ and cur/ folders)")
        for sub, name in _unseen(path):
            data = (path / sub / name).read_bytes()
            if _process(engine, data, summary, secret=secret, clock=clock):
                _mark_seen(path, sub, name)
        return summary
    if not path.is_file():
        raise InputError(f"{path}: no such maildir or mbox file")
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            _process(engine, box.get_bytes(key), summary, secret=secret, clock=clock)
    finally:
        box.close()
    return summary


def _process(
    engine: Engine, data: bytes, summary: FolderSummary, *, secret: bytes, clock: Clock
) -> bool:
    summary.read += 1
    reports = read_reports(data)
    if not reports:
        return False
    with engine.begin() as conn:
        outcomes = [record(conn, r, secret=secret, clock=clock) for r in reports]
    summary.reports += len(reports)
    summary.suppressed += sum(o.suppressed for o in outcomes)
    summary.outcomes.extend(outcomes)
    return True


def _unseen(path: Path) -> list[tuple[str, str]]:
    found = []
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(path / sub)):
            if name.startswith("."):
                continue
            _, _, info = name.partition(":")
            if sub == "cur" and "S" in info.partition(",")[2]:
                continue
            found.append((sub, name))
    return found


def _mark_seen(path: Path, sub: str, name: str) -> None:
    base, _, info = name.partition(":")
    flags = set(info.partition(",")[2]) | {"S"}
    with contextlib.suppress(FileNotFoundError):  # another reader moved it meanwhile
        os.rename(path / sub / name, path / "cur" / f"{base}:2,{''.join(sorted(flags))}")
