"""SMS through Twilio's Programmable Messaging API: one request per message.

Sending: `POST {sms_api_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth
(Account SID : Auth Token), form-encoded `To`, `From` (or `MessagingServiceSid` when
`sms_from` is a Messaging Service SID, `MG…`), `Body` and `StatusCallback`. Twilio answers
201 with the Message resource as JSON; its `sid` is the receipt.

Idempotency: Twilio's Messages API takes no idempotency key, so none is sent (its
`I-Twilio-Idempotency-Token` header is one Twilio *sends* on the webhooks it makes, not one it
honours on API requests). The outbox id travels in the `StatusCallback` URL
(`…/sms/status?message_id=<id>`) instead: every status Twilio reports for the message names
the outbox row it belongs to, signed with the account's token, and
`sms_replies.parse_status_callback` reads it.

Crashes: `send` calls `hand_over` right before the request, and the dispatcher commits the
row's `handed_at` there. A worker that dies after that mark (Twilio accepted the message, the
row is not yet marked sent) does not lead to a second message: after the lease the row is
marked `sent`, unconfirmed, without Twilio's sid, and a `failed` or `undelivered` report for
it still marks it `failed`. A crash after the mark and before the request reached Twilio
loses that message. What can still send twice is an answer lost on the way back (a timeout,
a dropped connection after the request went out): a temporary failure, so the row goes back
to the queue and the retry may send a second copy, which Twilio cannot recognise.

What comes back — replies and status reports — is `reengage.channels.sms_replies`.
"""

from __future__ import annotations

import httpx
import phonenumbers

from reengage.channels.delivery import (
    Outgoing,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    hand_over,
)
from reengage.channels.sms_text import with_opt_out
from reengage.config import Settings
from reengage.errors import ConfigError

API_VERSION = "2010-04-01"
STATUS_PATH = "/sms/status"

# Twilio error codes that say something about the recipient
SUPPRESSING_ERRORS = {
    21610: "the recipient replied STOP to this sender",
    21614: "the 'To' number is not a mobile number",
}
PERMANENT_ERRORS = {
    21211: "the 'To' number is not a valid phone number",
    21408: "sending to this region is not enabled on the account",
    21612: "this sender cannot reach the 'To' number",
}
RATE_LIMITED = 20429


def e164(number: str, region: str | None = None) -> str | None:
    """The number in E.164 (`+393331234567`), read in region (ISO 3166 alpha-2, the
    contact's country) when it is written without a country code; None if it is not a
    valid number."""
    try:
        parsed = phonenumbers.parse(number, (region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def status_callback_url(base: str, message_id: int) -> str:
    """Where Twilio reports a message's status: the web app's status route, carrying the
    outbox id so a report names its row."""
    return f"{base.rstrip('/')}{STATUS_PATH}?message_id={message_id}"


class TwilioSMS:
    """The `sms` channel: one Twilio Messages API request per outbox row."""

    name = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        api_url: str = "https://api.twilio.com",
        status_base_url: str | None = None,
        language: str = "en",
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.account_sid = account_sid
        self.sender = sender
        self.url = f"{api_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self.status_base_url = status_base_url
        self.language = language
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None
        self._auth = httpx.BasicAuth(account_sid, auth_token)

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client | None = None) -> TwilioSMS:
        missing = [
            name
            for name in ("sms_account_sid", "sms_auth_token", "sms_from")
            if not getattr(settings, name)
        ]
        if missing:
            raise ConfigError(
                f"SMS needs {', '.join(missing)}: set them in reengage.toml or as "
                f"{', '.join('REENGAGE_' + m.upper() for m in missing)}"
            )
        assert settings.sms_account_sid and settings.sms_auth_token and settings.sms_from
        return cls(
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token,
            sender=settings.sms_from,
            api_url=settings.sms_api_url,
            status_base_url=settings.public_url,
            language=settings.language,
            client=client,
        )

    def body(self, message: Outgoing) -> str:
        """The text as sent: marketing texts end with the opt-out line in the contact's
        language; `data["purpose"] == "transactional"` sends the text alone."""
        if message.data.get("purpose") == "transactional":
            return message.text
        return with_opt_out(message.text, str(message.data.get("language") or self.language))

    def form(self, message: Outgoing) -> dict[str, str]:
        """The request's form fields (the To number normalised to E.164)."""
        to = e164(message.to, message.data.get("country"))
        if to is None:
            raise PermanentFailure(f"sms {message.message_id}: not a valid phone number")
        fields = {"To": to, "Body": self.body(message)}
        if self.sender.startswith("MG"):
            fields["MessagingServiceSid"] = self.sender
        else:
            fields["From"] = self.sender
        if self.status_base_url:
            fields["StatusCallback"] = status_callback_url(self.status_base_url, message.message_id)
        return fields

    def send(self, message: Outgoing) -> Receipt:
        fields = self.form(message)
        hand_over(message)
        try:
            response = self._client.post(self.url, data=fields, auth=self._auth)
        except httpx.TransportError as exc:
            raise TemporaryFailure(
                f"sms {message.message_id}: Twilio unreachable ({type(exc).__name__})"
            ) from None
        return _receipt(message.message_id, response)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _receipt(message_id: int, response: httpx.Response) -> Receipt:
    status = response.status_code
    if 200 <= status < 300:
        try:
            sid = response.json()["sid"]
        except (ValueError, KeyError, TypeError):
            raise TemporaryFailure(
                f"sms {message_id}: Twilio answered {status} without a message sid"
            ) from None
        return Receipt(provider_id=str(sid))
    code = _error_code(response)
    where = f"sms {message_id}: Twilio {status}" + (f" error {code}" if code else "")
    if status == 429 or status >= 500 or code == RATE_LIMITED:
        raise TemporaryFailure(f"{where}, try again later")
    if status in (401, 403):
        # every message would fail the same way: keep them for when the credentials are fixed
        raise TemporaryFailure(f"{where}: check sms_account_sid and sms_auth_token")
    if code in SUPPRESSING_ERRORS:
        raise PermanentFailure(f"{where}: {SUPPRESSING_ERRORS[code]}", suppress=True)
    reason = PERMANENT_ERRORS.get(code or 0, "request refused")
    raise PermanentFailure(f"{where}: {reason}")


def _error_code(response: httpx.Response) -> int | None:
    # Twilio's error body: {"code": 21211, "message": "...", "more_info": "...", "status": 400};
    # the message may quote the number, so only the code is kept
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None
