"""Logging in and out of the dashboard, and the guard every page goes through.

A session holds the user's id and when they logged in (wall-clock time: the session's age is
real whatever `--now` says); it ends after `session_hours`, at logout, or as soon as the user
is disabled. Log lines never carry the address typed in.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from reengage.users import User, authenticate, get_user
from reengage.web.app import web_context
from reengage.web.dashboard.security import CSRF_FIELD, checked_form, login_limiter
from reengage.web.dashboard.templating import page

log = logging.getLogger("reengage.dashboard")

LOGIN = "/dashboard/login"
HOME = "/dashboard/"
Handler = Callable[[Request], Response]


def current_user(request: Request) -> User | None:
    """The logged-in user of this request's session, None when there is none (or it expired,
    or the user was disabled: the session is then cleared)."""
    session = request.session
    uid, since = session.get("uid"), session.get("at")
    if not isinstance(uid, int) or not isinstance(since, int | float):
        return None
    hours = web_context(request).settings.session_hours
    user = (
        None if time.time() - since > hours * 3600 else get_user(web_context(request).engine, uid)
    )
    if user is None:
        session.clear()
    return user


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard page of this site, never elsewhere."""
    if (
        not target
        or not target.startswith("/dashboard")
        or target.startswith(LOGIN)
        or "//" in target
        or "\\" in target
    ):
        return HOME
    return target


def login_required(handler: Handler) -> Handler:
    """A page for logged-in users; anyone else is sent to the login form (302)."""

    @functools.wraps(handler)
    def guarded(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN}?next={quote(wanted, safe='')}", status_code=302)
        request.state.user = user
        return handler(request)

    return guarded


async def login(request: Request) -> Response:
    if request.method == "GET":
        if await run_in_threadpool(current_user, request) is not None:
            return RedirectResponse(HOME, status_code=302)
        return page(
            request, "login.html", "login", next=_safe_next(request.query_params.get("next"))
        )
    form = await checked_form(request)
    target = _safe_next(form.get("next"))
    address = request.client.host if request.client else "unknown"
    limiter = login_limiter(request)
    if limiter.blocked(address):
        log.warning("dashboard: login refused, too many failures from one address")
        return page(
            request,
            "login.html",
            "login",
            status_code=429,
            next=target,
            error="Too many failed logins: wait a few minutes and try again.",
        )
    context = web_context(request)
    user = await run_in_threadpool(
        authenticate,
        context.engine,
        form.get("email", ""),
        form.get("password", ""),
        context.clock.now(),
    )
    if user is None:
        limiter.failed(address)
        log.info("dashboard: failed login")
        return page(
            request,
            "login.html",
            "login",
            status_code=401,
            next=target,
            error="Wrong email or password.",
        )
    limiter.succeeded(address)
    request.session.clear()  # a new session: nothing from before the login survives
    request.session.update(
        {"uid": user.id, "at": int(time.time()), CSRF_FIELD: secrets.token_urlsafe(32)}
    )
    log.info("dashboard: user %d logged in", user.id)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse(LOGIN, status_code=303)
