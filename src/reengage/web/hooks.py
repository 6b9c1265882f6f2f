"""What providers call back with: Twilio's inbound SMS and status reports, and email bounce
and complaint notifications. Every route checks a signature before it writes anything, and
neither its answers nor its log lines carry an address, a number or a name (docs/inbound.md).

- `POST /hooks/sms`: Twilio's inbound-message webhook (form-encoded), signed with the Auth
  Token (`X-Twilio-Signature`) over `public_url` + path + query, the URL Twilio was
  configured with. STOP, START and the other keywords act through
  `sms_replies.handle_inbound`; the answer is its TwiML (`text/xml`). A bad signature is a
  403, and without `sms_auth_token` the route does not exist (404).
- `POST /hooks/sms/status` (and `POST /sms/status`, where `TwilioSMS` points its
  `StatusCallback`): Twilio's status callback. A `failed` or `undelivered` report marks the
  outbox row `failed` (reason: the status and Twilio's error code) when it was `sent`; an
  error that says the number cannot be written to again suppresses it. Answers 204.
- `POST /hooks/email`: a provider's (or a relay's) bounce and complaint notifications as
  JSON, one object or a list, signed with `webhook_secret` in the `Reengage-Signature`
  scheme of `channels.webhook`; all are checked, then each goes through
  `bounces.handle_webhook`, in one transaction. Answers `{"suppressed": N}`; 401 for a bad
  signature, 400 naming the field for a malformed body (nothing is written), 404 without
  `webhook_secret`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.channels.bounces import handle_webhook
from reengage.channels.sms import STATUS_PATH, e164
from reengage.channels.sms_replies import (
    SIGNATURE_HEADER as TWILIO_SIGNATURE_HEADER,
)
from reengage.channels.sms_replies import (
    InvalidSignature,
    StatusUpdate,
    handle_inbound,
    parse_status_callback,
    valid_signature,
)
from reengage.channels.webhook import SIGNATURE_HEADER, verify_signature
from reengage.errors import InputError
from reengage.state.schema import contacts, messages
from reengage.suppressions import suppress
from reengage.web.app import WebContext, web_context
from reengage.web.bodies import read_limited

log = logging.getLogger(__name__)

SMS_PATH = "/hooks/sms"
SMS_STATUS_PATH = "/hooks/sms/status"
EMAIL_PATH = "/hooks/email"

# Twilio's final statuses that mean the message did not arrive
FAILED_STATUSES = frozenset({"failed", "undelivered"})
# Twilio errors that say the number must not be written to again, and the suppression reason:
# 21610 the person replied STOP to the sender ("stop", so a START reply lifts it), 21614 not a
# mobile number, 30005 unknown handset (the number does not exist), 30006 a landline or an
# unreachable carrier. Others (30003 handset off, 30007 carrier filtering, ...) say nothing
# lasting about the number.
SUPPRESSING_ERRORS = {21610: "stop", 21614: "bounced", 30005: "bounced", 30006: "bounced"}
STATUS_SOURCE = "sms_status"
MAX_EMAIL_BODY = 1024 * 1024  # bytes: a provider batches at most a few hundred notifications
MAX_EMAIL_ITEMS = 1000
NO_STORE = {"Cache-Control": "no-store"}


# ---- helpers ---------------------------------------------------------------------------


def signed_url(ctx: WebContext, request: Request) -> str:
    """The URL Twilio signed: public_url, then the path and query string as received."""
    query = request.url.query
    return ctx.settings.public_url + request.url.path + (f"?{query}" if query else "")


def _fields(form: FormData) -> dict[str, list[str]]:
    """Every form field with all its values (Twilio signs each one); files are not Twilio's."""
    return {
        name: [v for v in form.getlist(name) if isinstance(v, str)] for name in set(form.keys())
    }


async def _twilio_form(request: Request) -> dict[str, list[str]]:
    async with request.form(max_files=0) as form:
        return _fields(form)


def _empty(status_code: int) -> Response:
    return Response(status_code=status_code, headers=NO_STORE)


def _error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=NO_STORE)


# ---- SMS: replies ----------------------------------------------------------------------


def _inbound(ctx: WebContext, form: Mapping[str, Any], url: str, signature: str) -> str:
    with ctx.engine.begin() as conn:
        return handle_inbound(conn, form, url, signature, ctx.settings, ctx.clock)


async def sms_inbound(request: Request) -> Response:
    """Twilio's inbound-message webhook: STOP and START; answers TwiML."""
    ctx = web_context(request)
    if not ctx.settings.sms_auth_token:
        return _empty(404)
    form = await _twilio_form(request)
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER, "")
    try:
        twiml = await run_in_threadpool(_inbound, ctx, form, signed_url(ctx, request), signature)
    except InvalidSignature:
        log.warning("refused an inbound SMS webhook: X-Twilio-Signature does not match")
        return _empty(403)
    return Response(twiml, media_type="text/xml", headers=NO_STORE)


# ---- SMS: status reports ---------------------------------------------------------------


def failure_reason(update: StatusUpdate) -> str:
    """What the outbox row says about a failed report: no number, no text of Twilio's."""
    code = f": Twilio error {update.error_code}" if update.error_code is not None else ""
    return f"sms {update.status}{code}"


def apply_status(ctx: WebContext, update: StatusUpdate, to: str) -> tuple[bool, bool]:
    """Act on a status report: (the row was marked failed, the number was suppressed).

    Only failures change anything. The row must be an SMS and, when it already has Twilio's
    id, this very message (a report of an earlier copy, sent before a crash, is about a
    message that was replaced). It is marked `failed` only when it was `sent`: a row the
    dispatcher still holds is its to finish. A suppressing error suppresses the number Twilio
    reports (`To`), else the contact's phone, whatever the row's status.
    """
    if update.status not in FAILED_STATUSES:
        return False, False
    now = ctx.clock.now()
    with ctx.engine.begin() as conn:
        row = conn.execute(
            select(
                messages.c.channel,
                messages.c.contact_id,
                messages.c.provider_id,
                contacts.c.phone,
                contacts.c.country,
            )
            .select_from(messages.join(contacts, contacts.c.id == messages.c.contact_id))
            .where(messages.c.id == update.message_id)
        ).first()
        if row is None or row.channel != "sms":
            return False, False
        if row.provider_id and update.provider_id and row.provider_id != update.provider_id:
            return False, False
        marked = conn.execute(
            messages.update()
            .where(messages.c.id == update.message_id, messages.c.status == "sent")
            .values(status="failed", reason=failure_reason(update))
        ).rowcount
        reason = SUPPRESSING_ERRORS.get(update.error_code or 0)
        number = e164(to) if to else None
        if number is None and row.phone:
            number = e164(row.phone, row.country)
        suppressed = False
        if reason is not None and number is not None:
            suppressed = suppress(
                conn,
                "sms",
                number,
                reason,
                source=STATUS_SOURCE,
                at=now,
                contact_id=row.contact_id,
            )
    return bool(marked), suppressed


async def sms_status(request: Request) -> Response:
    """Twilio's status callback for a message reengage sent; answers 204."""
    ctx = web_context(request)
    token = ctx.settings.sms_auth_token
    if not token:
        return _empty(404)
    form = await _twilio_form(request)
    url = signed_url(ctx, request)
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER, "")
    if not valid_signature(token, url, form, signature):
        log.warning("refused an SMS status callback: X-Twilio-Signature does not match")
        return _empty(403)
    try:
        update = parse_status_callback(token, url, form, signature)
    except InvalidSignature:  # Twilio's, but not for a message of ours: nothing to do
        return _empty(204)
    to = form.get("To", [""])
    marked, suppressed = await run_in_threadpool(apply_status, ctx, update, to[0] if to else "")
    if marked or suppressed:
        log.info(
            "SMS status of message %s: %s (row marked failed: %s, number suppressed: %s)",
            update.message_id,
            failure_reason(update),
            marked,
            suppressed,
        )
    return _empty(204)


# ---- email: provider notifications -----------------------------------------------------


def notifications(body: bytes) -> list[Mapping[str, Any]]:
    """The notifications of a signed body: one JSON object or a list of them. InputError
    names what is wrong (never a value from the body)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise InputError("webhook: the body is not JSON") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise InputError("webhook: the body must be an object or a list of objects")
    if len(data) > MAX_EMAIL_ITEMS:
        raise InputError(f"webhook: more than {MAX_EMAIL_ITEMS} notifications in one request")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise InputError(f"webhook: item {index} must be an object")
    return data


def check_notification(item: Mapping[str, Any]) -> None:
    """handle_webhook's own checks of a notification's fields, made for a whole batch before
    anything is written. One transaction is not enough on its own: on SQLite (pysqlite's
    transaction handling) a suppression written through a savepoint before any other write
    is committed when the savepoint is released, whatever happens to the transaction."""
    if item.get("type") not in ("bounce", "complaint"):
        raise InputError('webhook: \'type\' must be "bounce" or "complaint"')
    address = item.get("email")
    local, at, domain = (address if isinstance(address, str) else "").strip().rpartition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in local + domain):
        raise InputError("webhook: 'email' must be an email address")
    message_id = item.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        raise InputError("webhook: 'message_id' must be a string")


def _record_notifications(ctx: WebContext, items: list[Mapping[str, Any]]) -> int:
    """Every notification in one transaction; one malformed item and nothing is written."""
    secret = ctx.settings.secret()
    suppressed = 0
    for index, item in enumerate(items):
        try:
            check_notification(item)
        except InputError as exc:
            raise InputError(str(exc) if len(items) == 1 else f"item {index}: {exc}") from None
    with ctx.engine.begin() as conn:
        for index, item in enumerate(items):
            try:
                outcome = handle_webhook(conn, item, secret=secret, clock=ctx.clock)
            except InputError as exc:
                if len(items) == 1:
                    raise
                raise InputError(f"item {index}: {exc}") from None
            suppressed += outcome is not None and outcome.suppressed
    return suppressed


async def email_notification(request: Request) -> Response:
    """Bounce and complaint notifications, signed with webhook_secret."""
    ctx = web_context(request)
    secret = ctx.settings.webhook_secret
    if not secret:
        return _empty(404)
    try:
        body = await read_limited(request, MAX_EMAIL_BODY)
    except ClientDisconnect:
        return _empty(400)
    if body is None:
        return _error(f"the body is longer than {MAX_EMAIL_BODY} bytes", 413)
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not verify_signature(secret, header, body, ctx.clock.now()):
        log.warning("refused an email webhook: %s does not match", SIGNATURE_HEADER)
        return _error(f"{SIGNATURE_HEADER} does not match", 401)
    try:
        items = notifications(body)
        suppressed = await run_in_threadpool(_record_notifications, ctx, items)
    except InputError as exc:
        return _error(str(exc), 400)
    return JSONResponse({"suppressed": suppressed}, headers=NO_STORE)


def routes() -> list[BaseRoute]:
    found: list[BaseRoute] = [
        Route(SMS_PATH, sms_inbound, methods=["POST"]),
        Route(SMS_STATUS_PATH, sms_status, methods=["POST"]),
        Route(EMAIL_PATH, email_notification, methods=["POST"]),
    ]
    if STATUS_PATH != SMS_STATUS_PATH:  # where `TwilioSMS` asks Twilio to report
        found.append(Route(STATUS_PATH, sms_status, methods=["POST"]))
    return found
