"""What comes back from Twilio: people's replies (STOP, START) and delivery status reports.

Both arrive as webhooks Twilio signs with the account's Auth Token (`X-Twilio-Signature`);
the web app mounts `handle_inbound` on the number's inbound-message URL and
`parse_status_callback` on `<public_url>/sms/status`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import phonenumbers
from sqlalchemy import Connection, or_, select

from reengage.channels.sms import e164
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ConfigError, ReengageError
from reengage.state.contacts import ConsentChange, record_consents
from reengage.state.schema import contacts, identities, suppressions
from reengage.suppressions import normalise_address, suppress, suppression_reason

SIGNATURE_HEADER = "X-Twilio-Signature"

# Twilio's documented keywords (single-word replies, any case): these opt a number out of,
# or back into, messages from the sender it replied to.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET", "ARRETE", "ARRETT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})

# An empty TwiML answer: Twilio itself confirms STOP and START to the person on long codes
# and toll-free numbers, so reengage adds no reply of its own.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class InvalidSignature(ReengageError):
    """A webhook whose signature does not match: not from Twilio, or altered on the way."""


def _values(form: Mapping[str, Any], name: str) -> list[str]:
    value = form[name]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return [str(value)]


def compute_signature(auth_token: str, url: str, form: Mapping[str, Any]) -> str:
    """Twilio's `X-Twilio-Signature`: HMAC-SHA1, keyed with the auth token, of the full URL
    (query string included) followed by every POST parameter's name and value, parameters
    sorted by name (repeated values sorted too), no separators; base64-encoded."""
    data = url
    for name in sorted(form):
        for value in sorted(_values(form, name)):
            data += name + value
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _port_variants(url: str) -> list[str]:
    # Twilio signs the URL as configured; proxies may add or drop the default port, so its
    # own validators accept either spelling, and so does this one
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default is not None:
        with_port = parts._replace(netloc=f"{_userinfo(parts.netloc)}{host}:{default}")
        return [url, urlunsplit(with_port)]
    if parts.port == default:
        return [url, urlunsplit(parts._replace(netloc=f"{_userinfo(parts.netloc)}{host}"))]
    return [url]


def _userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[0] + "@" if "@" in netloc else ""


def valid_signature(auth_token: str, url: str, form: Mapping[str, Any], signature: str) -> bool:
    """Whether signature is Twilio's signature of this request (compared in constant time)."""
    if not signature:
        return False
    return any(
        hmac.compare_digest(
            compute_signature(auth_token, candidate, form).encode(), signature.encode()
        )
        for candidate in _port_variants(url)
    )


def keyword(body: str) -> str:
    """The reply as a keyword: trimmed, upper-case, accents removed (`Arrêt` is `ARRET`).
    Only a single word counts, as with Twilio: "STOP please" is not a keyword."""
    folded = unicodedata.normalize("NFKD", body.strip()).encode("ascii", "ignore").decode()
    return folded.upper()


def handle_inbound(
    conn: Connection,
    form: Mapping[str, Any],
    url: str,
    signature: str,
    settings: Settings,
    clock: Clock,
) -> str:
    """Act on one inbound SMS webhook and return the TwiML to answer it with.

    url is the full URL Twilio called (as configured in Twilio, query string included) and
    signature the `X-Twilio-Signature` header. STOP and the other opt-out keywords record
    sms/marketing consent withdrawn for every contact with that number and suppress the
    number (reason "stop"). START, YES and UNSTOP undo a STOP: when the number has a "stop"
    suppression, they record consent granted and delete it, since the person asked for
    messages again; without one (or with a suppression for another reason, such as erasure)
    they change nothing. Raises InvalidSignature when the request is not Twilio's.
    """
    if not settings.sms_auth_token:
        raise ConfigError("sms_auth_token is not set: inbound SMS cannot be verified")
    if not valid_signature(settings.sms_auth_token, url, form, signature):
        raise InvalidSignature("inbound SMS: X-Twilio-Signature does not match")
    sender = _first(form, "From")
    word = keyword(_first(form, "Body"))
    if not sender or (word not in OPT_OUT_KEYWORDS and word not in OPT_IN_KEYWORDS):
        return EMPTY_TWIML
    number = e164(sender) or normalise_address("sms", sender)
    granted = word in OPT_IN_KEYWORDS
    if granted and suppression_reason(conn, "sms", number) != "stop":
        return EMPTY_TWIML  # START undoes a STOP; without one there is nothing to undo
    owners = contacts_with_phone(conn, number)
    now = clock.now()
    record_consents(
        conn,
        [
            ConsentChange(cid, "sms", "marketing", granted, f"sms_{word.lower()}", now)
            for cid in owners
        ],
    )
    if granted:
        conn.execute(
            suppressions.delete().where(
                suppressions.c.channel == "sms",
                suppressions.c.address == normalise_address("sms", number),
                suppressions.c.reason == "stop",
            )
        )
    else:
        suppress(
            conn,
            "sms",
            number,
            "stop",
            source="sms_reply",
            at=now,
            contact_id=owners[0] if len(owners) == 1 else None,
        )
    return EMPTY_TWIML


def _first(form: Mapping[str, Any], name: str) -> str:
    if name not in form:
        return ""
    values = _values(form, name)
    return values[0] if values else ""


def _spellings(number: str) -> tuple[set[str], set[str], str | None]:
    """How a stored phone may spell this E.164 number: forms that carry the country code
    (any contact), national forms (contacts of that country or of none), and the country."""
    digits = number.lstrip("+")
    international = {number, digits, "00" + digits}
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return international, set(), None
    fmt = phonenumbers.PhoneNumberFormat
    spaced = phonenumbers.format_number(parsed, fmt.INTERNATIONAL)
    international |= {spaced, spaced.replace(" ", ""), spaced.replace(" ", "-")}
    national_format = phonenumbers.format_number(parsed, fmt.NATIONAL)
    significant = phonenumbers.national_significant_number(parsed)
    national = {
        national_format,
        national_format.replace(" ", ""),
        significant,
        "0" + significant,
    }
    return international, national, phonenumbers.region_code_for_number(parsed)


def contacts_with_phone(conn: Connection, number: str) -> list[int]:
    """The contacts whose phone is this E.164 number, however the import spelled it."""
    international, national, region = _spellings(number)
    from_identities = conn.execute(
        select(identities.c.contact_id).where(
            identities.c.kind == "phone", identities.c.value.in_(sorted(international))
        )
    ).scalars()
    national_match = contacts.c.phone.in_(sorted(national)) & or_(
        contacts.c.country.is_(None), contacts.c.country == (region or "")
    )
    from_profiles = conn.execute(
        select(contacts.c.id).where(
            or_(contacts.c.phone.in_(sorted(international)), national_match)
        )
    ).scalars()
    return sorted(set(from_identities) | set(from_profiles))


@dataclass(frozen=True)
class StatusUpdate:
    """One status report Twilio made for a message reengage sent."""

    message_id: int
    provider_id: str
    status: str  # queued, sent, delivered, undelivered, failed, ...
    error_code: int | None


def parse_status_callback(
    auth_token: str, url: str, form: Mapping[str, Any], signature: str
) -> StatusUpdate:
    """Read Twilio's status callback for a message sent with `status_callback_url`.
    InvalidSignature when it is not Twilio's or its URL carries no outbox id."""
    if not valid_signature(auth_token, url, form, signature):
        raise InvalidSignature("SMS status callback: X-Twilio-Signature does not match")
    ids = parse_qs(urlsplit(url).query).get("message_id", [])
    if not ids or not ids[0].isdigit():
        raise InvalidSignature("SMS status callback: no message_id in the callback URL")
    code = _first(form, "ErrorCode")
    return StatusUpdate(
        message_id=int(ids[0]),
        provider_id=_first(form, "MessageSid"),
        status=_first(form, "MessageStatus") or _first(form, "SmsStatus"),
        error_code=int(code) if code.isdigit() else None,
    )
