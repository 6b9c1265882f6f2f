"""The links in messages: click tracking, the open pixel, unsubscribe and preferences.

Every link carries a token signed with the home's secret (`reengage.messages.tokens`) for
its purpose: ids only, never an address, and no id a visitor could guess or change. Build
them with `click_url`, `open_url`, `unsubscribe_url` and `preferences_url`.

- `GET /l/c/<token>` records a click and redirects (302) to the URL the token signed; a bad
  token is a 404 page, so the route can never redirect anywhere else.
- `GET /l/o/<token>.gif` answers a 1x1 transparent GIF, always; a good token records an open,
  flagged `machine` when it looks like a privacy proxy's prefetch (see `machine_reason`).
- `GET /l/u/<token>` asks for confirmation; `POST` (the page's button, or RFC 8058 one-click
  `List-Unsubscribe=One-Click`) unsubscribes. A GET never changes anything: mail scanners
  fetch every link in a message.
- `GET/POST /l/p/<token>`: marketing on or off per channel.

State changes commit first; the message event is written to the facts after (one small file
per request, deduplicated by a stable event id).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import pyarrow as pa
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.messages.tokens import BadToken, sign, verify
from reengage.state.contacts import ConsentChange, current_consent, record_consents
from reengage.state.schema import consents, contacts, messages, suppressions
from reengage.suppressions import normalise_address, suppress, suppression_reason
from reengage.web import pages
from reengage.web.app import WebContext, web_context

log = logging.getLogger(__name__)

# An open this soon after sending is a proxy or a scanner fetching, not a person reading.
PREFETCH_WINDOW = timedelta(seconds=60)
# Apple Mail Privacy Protection fetches images with exactly this user agent, nothing after it.
PROXY_USER_AGENTS = frozenset({"Mozilla/5.0"})
UNSUBSCRIBE_SOURCE = "unsubscribe_link"
PREFERENCES_SOURCE = "preferences_page"

# The smallest transparent GIF: 1x1, one transparent colour.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private"}
PAGE_HEADERS = {
    **NO_STORE,
    # the token in the address must not travel to anyone else in a Referer
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_EVENT_SCHEMA = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])


# ---- building links -------------------------------------------------------------------


def is_web_url(url: object) -> bool:
    """Only absolute http(s) URLs may be signed as click targets."""
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and "\\" not in url


def _ids(message_id: int | None, contact_id: int) -> dict[str, Any]:
    return {"c": contact_id} if message_id is None else {"c": contact_id, "m": message_id}


def click_url(settings: Settings, message_id: int, contact_id: int, url: str) -> str:
    """A tracked link to url (kept as it is, utm parameters included) in a message."""
    if not is_web_url(url):
        raise ValueError("a click link must lead to an absolute http or https URL")
    token = sign(settings.secret(), "click", {**_ids(message_id, contact_id), "u": url})
    return f"{settings.public_url}/l/c/{token}"


def open_url(settings: Settings, message_id: int, contact_id: int) -> str:
    """The address of the open pixel of a message."""
    token = sign(settings.secret(), "open", _ids(message_id, contact_id))
    return f"{settings.public_url}/l/o/{token}.gif"


def unsubscribe_path(settings: Settings, message_id: int | None, contact_id: int) -> str:
    return f"/l/u/{sign(settings.secret(), 'unsubscribe', _ids(message_id, contact_id))}"


def unsubscribe_url(settings: Settings, message_id: int | None, contact_id: int) -> str:
    """The unsubscribe page of a contact, also the RFC 8058 `List-Unsubscribe` POST target."""
    return settings.public_url + unsubscribe_path(settings, message_id, contact_id)


def preferences_path(settings: Settings, message_id: int | None, contact_id: int) -> str:
    return f"/l/p/{sign(settings.secret(), 'preferences', _ids(message_id, contact_id))}"


def preferences_url(settings: Settings, message_id: int | None, contact_id: int) -> str:
    """The preferences page of a contact: marketing on or off per channel."""
    return settings.public_url + preferences_path(settings, message_id, contact_id)


# ---- who a token is for ----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: int
    customer_id: str | None
    email: str | None
    first_name: str | None
    language: str | None


@dataclass(frozen=True)
class SentMessage:
    id: int
    channel: str
    sent_at: datetime | None


@dataclass(frozen=True)
class Target:
    """The contact a token names and, when it names one, their message."""

    person: Person
    message: SentMessage | None


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _payload(ctx: WebContext, purpose: str, token: str) -> dict[str, Any] | None:
    try:
        payload = verify(ctx.settings.secret(), purpose, token)
    except BadToken:
        return None
    m = payload.get("m")
    if not _is_id(payload.get("c")) or (m is not None and not _is_id(m)):
        return None
    return payload


def find_target(conn: Connection, payload: dict[str, Any], *, lock: bool = False) -> Target | None:
    """The contact of a verified payload (None when gone) and its message, which must be
    theirs. With lock, the contact's row is locked until the transaction ends."""
    query = select(
        contacts.c.id,
        contacts.c.customer_id,
        contacts.c.email,
        contacts.c.first_name,
        contacts.c.language,
    ).where(contacts.c.id == payload["c"])
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        return None
    person = Person(row.id, row.customer_id, row.email, row.first_name, row.language)
    if payload.get("m") is None:
        return Target(person, None)
    sent = conn.execute(
        select(messages.c.contact_id, messages.c.channel, messages.c.sent_at).where(
            messages.c.id == payload["m"]
        )
    ).first()
    if sent is None:  # the message was deleted: the contact's link still works
        return Target(person, None)
    if sent.contact_id != person.id:
        return None
    at = None if sent.sent_at is None else as_utc(sent.sent_at)
    return Target(person, SentMessage(payload["m"], sent.channel, at))


# ---- recording -------------------------------------------------------------------------


def machine_reason(user_agent: str | None, sent_at: datetime | None, now: datetime) -> str | None:
    """Why a fetch looks automatic, or None when it looks like a person.

    "proxy_user_agent": the bare `Mozilla/5.0` of Apple Mail Privacy Protection's proxy (or
    no user agent at all); "prefetch": within PREFETCH_WINDOW of sending, when proxies and
    security scanners fetch. A heuristic: Apple's proxy also fetches later, and a person may
    read within a minute; docs/links.md says what it misses.
    """
    agent = (user_agent or "").strip()
    if not agent or agent in PROXY_USER_AGENTS:
        return "proxy_user_agent"
    if sent_at is not None and timedelta(0) <= now - sent_at < PREFETCH_WINDOW:
        return "prefetch"
    return None


def record_event(
    settings: Settings,
    event_type: str,
    target: Target,
    now: datetime,
    properties: dict[str, Any],
    *,
    key: str = "",
) -> bool:
    """Append one message event to the facts; False when there is no message to tie it to.

    The id is stable per type, message, contact, key (the URL of a click) and minute: a
    retried or double request within a minute is stored once.
    """
    message = target.message
    if message is None:
        return False
    minute = now.replace(second=0, microsecond=0).isoformat()
    parts = (event_type, str(message.id), str(target.person.id), key, minute)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    row = {
        "event_id": f"l-{digest}",
        "message_id": str(message.id),
        "customer_id": target.person.customer_id,
        "channel": message.channel,
        "type": event_type,
        "occurred_at": now,
        "properties": json.dumps(properties, sort_keys=True),
    }
    append(
        settings.facts_path,
        MESSAGE_EVENTS,
        pa.Table.from_pylist([row], schema=_EVENT_SCHEMA),
        ingested_at=now,
    )
    return True


def _record_safely(
    settings: Settings,
    event_type: str,
    target: Target,
    now: datetime,
    properties: dict[str, Any],
    key: str = "",
) -> None:
    """Record, but never let a full disk turn a click or an unsubscribe into an error page."""
    try:
        record_event(settings, event_type, target, now, properties, key=key)
    except Exception as exc:  # logged without personal data: the type and the message id
        message_id = target.message.id if target.message else None
        log.error("could not record a %s event of message %s: %r", event_type, message_id, exc)


def _track(ctx: WebContext, payload: dict[str, Any], event_type: str, agent: str | None) -> None:
    """Record a click or an open, flagged machine or not."""
    now = ctx.clock.now()
    try:
        with ctx.engine.connect() as conn:
            target = find_target(conn, payload)
    except Exception as exc:
        log.error("could not look up the message of a %s: %r", event_type, exc)
        return
    if target is None or target.message is None:
        return
    reason = machine_reason(agent, target.message.sent_at, now)
    properties: dict[str, Any] = {"machine": reason is not None}
    if reason:
        properties["why"] = reason
    # a proxy's fetch and the person's own in the same minute are two events
    key = "machine" if reason else "person"
    if event_type == "click":
        properties["url"] = payload["u"]
        key += " " + payload["u"]
    _record_safely(ctx.settings, event_type, target, now, properties, key)


# ---- consent changes -------------------------------------------------------------------


def set_marketing(
    conn: Connection, contact_id: int, channel: str, granted: bool, source: str, now: datetime
) -> bool:
    """Make marketing on channel granted or not from now; False when it already was.

    A stored consent stamped later than now (a clock ahead, an import from the future) does
    not swallow the change: it is recorded just after that row.
    """
    last = conn.execute(
        select(consents.c.granted, consents.c.recorded_at)
        .where(
            consents.c.contact_id == contact_id,
            consents.c.channel == channel,
            consents.c.purpose == "marketing",
        )
        .order_by(consents.c.recorded_at.desc(), consents.c.id.desc())
        .limit(1)
    ).first()
    if last is not None and bool(last.granted) == granted:
        return False
    at = now
    if last is not None and as_utc(last.recorded_at) >= now:
        at = as_utc(last.recorded_at) + timedelta(milliseconds=1)
    change = ConsentChange(contact_id, channel, "marketing", granted, source, at)
    return record_consents(conn, [change]) == 1


def unsubscribe_contact(
    conn: Connection, person: Person, now: datetime, *, source: str = UNSUBSCRIBE_SOURCE
) -> bool:
    """Email marketing off and the address suppressed; False when both were so already."""
    changed = set_marketing(conn, person.id, "email", False, source, now)
    if person.email:
        changed |= suppress(
            conn, "email", person.email, "unsubscribed", source=source, at=now, contact_id=person.id
        )
    return changed


def is_unsubscribed(conn: Connection, person: Person) -> bool:
    if current_consent(conn, person.id, "email", "marketing") is not False:
        return False
    return not person.email or suppression_reason(conn, "email", person.email) is not None


def _lift_unsubscribe(conn: Connection, person: Person) -> None:
    """Opting in again from their own link lifts this contact's own unsubscribe (never a
    bounce, a complaint or an erasure)."""
    if not person.email:
        return
    conn.execute(
        suppressions.delete().where(
            suppressions.c.channel == "email",
            suppressions.c.address == normalise_address("email", person.email),
            suppressions.c.reason == "unsubscribed",
            (suppressions.c.contact_id == person.id) | suppressions.c.contact_id.is_(None),
        )
    )


# ---- handlers --------------------------------------------------------------------------


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _not_found(ctx: WebContext) -> HTMLResponse:
    settings = ctx.settings
    return _html(pages.not_found_page(settings.language, settings.shop_name), 404)


async def click(request: Request) -> Response:
    ctx = web_context(request)
    payload = _payload(ctx, "click", request.path_params["token"])
    if payload is None or not is_web_url(payload.get("u")):
        return _not_found(ctx)
    if request.method == "GET":  # a HEAD is a scanner checking the link
        await run_in_threadpool(_track, ctx, payload, "click", request.headers.get("user-agent"))
    return RedirectResponse(payload["u"], status_code=302, headers=NO_STORE)


async def open_pixel(request: Request) -> Response:
    ctx = web_context(request)
    payload = _payload(ctx, "open", request.path_params["token"])
    if payload is not None and request.method == "GET":
        await run_in_threadpool(_track, ctx, payload, "open", request.headers.get("user-agent"))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


def _unsubscribe_view(
    ctx: WebContext, payload: dict[str, Any], confirm: bool, path: str
) -> str | None:
    now = ctx.clock.now()
    settings = ctx.settings
    with ctx.engine.begin() as conn:
        target = find_target(conn, payload, lock=confirm)
        if target is None:
            return None
        person = target.person
        state: Literal["ask", "done", "already"]
        if confirm:
            state = "done" if unsubscribe_contact(conn, person, now) else "already"
        else:
            state = "already" if is_unsubscribed(conn, person) else "ask"
    if confirm and state == "done":
        _record_safely(settings, "unsubscribe", target, now, {"via": "link"})
    return pages.unsubscribe_page(
        pages.language_for(person.language, settings.language),
        shop=settings.shop_name,
        first_name=person.first_name,
        masked_email=pages.mask_email(person.email),
        action=path,
        preferences_href=preferences_path(settings, payload.get("m"), person.id),
        state=state,
    )


async def unsubscribe(request: Request) -> Response:
    """GET: the confirm page. POST (the button, or RFC 8058 one-click): unsubscribe."""
    ctx = web_context(request)
    payload = _payload(ctx, "unsubscribe", request.path_params["token"])
    if payload is None:
        return _not_found(ctx)
    confirm = request.method == "POST"
    body = await run_in_threadpool(_unsubscribe_view, ctx, payload, confirm, request.url.path)
    return _not_found(ctx) if body is None else _html(body)


def _preferences_view(
    ctx: WebContext, payload: dict[str, Any], wanted: dict[str, bool] | None, path: str
) -> str | None:
    now = ctx.clock.now()
    settings = ctx.settings
    email_off = False
    with ctx.engine.begin() as conn:
        target = find_target(conn, payload, lock=wanted is not None)
        if target is None:
            return None
        person = target.person
        for channel, on in (wanted or {}).items():
            changed = set_marketing(conn, person.id, channel, on, PREFERENCES_SOURCE, now)
            email_off |= channel == "email" and changed and not on
            if channel == "email" and on:
                _lift_unsubscribe(conn, person)
        choices = {
            channel: current_consent(conn, person.id, channel, "marketing") is True
            for channel in pages.PREFERENCE_CHANNELS
        }
        reason = suppression_reason(conn, "email", person.email) if person.email else None
    if email_off:
        _record_safely(settings, "unsubscribe", target, now, {"via": "preferences"})
    return pages.preferences_page(
        pages.language_for(person.language, settings.language),
        shop=settings.shop_name,
        first_name=person.first_name,
        masked_email=pages.mask_email(person.email),
        action=path,
        choices=choices,
        saved=wanted is not None,
        email_blocked=reason not in (None, "unsubscribed"),
    )


async def preferences(request: Request) -> Response:
    """GET: the current choices. POST (the page's form): save them."""
    ctx = web_context(request)
    payload = _payload(ctx, "preferences", request.path_params["token"])
    if payload is None:
        return _not_found(ctx)
    wanted: dict[str, bool] | None = None
    if request.method == "POST":
        form = await request.form()
        # only the page's own form saves: a bare POST (a scanner) must not turn all off
        if form.get("form") == "preferences":
            wanted = {ch: form.get(ch) == "on" for ch in pages.PREFERENCE_CHANNELS}
    body = await run_in_threadpool(_preferences_view, ctx, payload, wanted, request.url.path)
    return _not_found(ctx) if body is None else _html(body)


def routes() -> list[BaseRoute]:
    return [
        Mount(
            "/l",
            routes=[
                Route("/c/{token}", click, methods=["GET"]),
                Route("/o/{token}.gif", open_pixel, methods=["GET"]),
                Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
                Route("/p/{token}", preferences, methods=["GET", "POST"]),
            ],
        )
    ]
