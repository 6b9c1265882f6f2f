"""The dashboard's guard rails: signed session cookies, CSRF tokens, security headers and a
limit on failed logins per address.

The session is Starlette's signed cookie (itsdangerous), keyed by HMAC(secret_key,
"dashboard-session") so that a session cookie can never pass for a message link's token,
scoped to /dashboard, HttpOnly, SameSite=Lax, Secure when public_url is https. Headers are set
on the dashboard's responses only: the collector (/t/), the API and the links in messages are
called from other sites and keep their own headers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reengage.config import Settings

PREFIX = "/dashboard"
COOKIE = "reengage_dashboard"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# a rendered email, alone in a sandboxed frame of the preview page: its inline styles, the
# shop's images, no script at all, framed by the dashboard only
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def session_key(settings: Settings) -> str:
    """The key of the session cookies, derived from the home's secret."""
    return hmac.new(settings.secret(), b"dashboard-session", hashlib.sha256).hexdigest()


def _ours(path: str) -> bool:
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class DashboardGuard:
    """Sessions and security headers for the dashboard's paths; other paths pass untouched."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.sessions = SessionMiddleware(
            app,
            secret_key=session_key(settings),
            session_cookie=COOKIE,
            max_age=int(settings.session_hours * 3600),
            path=PREFIX,
            same_site="lax",
            https_only=settings.public_url.startswith("https://"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _ours(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(PREFIX + "/static/")

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                own_policy = "content-security-policy" in headers
                for name, value in HEADERS.items():
                    if name not in headers and not (own_policy and name == "x-frame-options"):
                        headers[name] = value
                if not static and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.sessions(scope, receive, guarded)


def middleware(settings: Settings) -> list[Middleware]:
    return [Middleware(DashboardGuard, settings=settings)]


# --- CSRF -----------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form, once its CSRF token (field or header) matches the session's: 403
    otherwise."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return fields


# --- failed logins ----------------------------------------------------------------------------


class LoginLimiter:
    """At most `limit` failed logins per client address in `window` seconds."""

    def __init__(self, limit: int = 10, window: float = 900.0) -> None:
        self.limit = limit
        self.window = window
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        found = self.failures.setdefault(address, deque())
        cutoff = time.monotonic() - self.window
        while found and found[0] < cutoff:
            found.popleft()
        return found

    def blocked(self, address: str) -> bool:
        return len(self._recent(address)) >= self.limit

    def failed(self, address: str) -> None:
        self._recent(address).append(time.monotonic())
        if len(self.failures) > 10_000:  # forget the quiet addresses rather than grow forever
            for key in [k for k, v in self.failures.items() if not v]:
                del self.failures[key]

    def succeeded(self, address: str) -> None:
        self.failures.pop(address, None)


def login_limiter(request: Request) -> LoginLimiter:
    found = getattr(request.app.state, "dashboard_logins", None)
    if not isinstance(found, LoginLimiter):
        found = LoginLimiter()
        request.app.state.dashboard_logins = found
    return found
