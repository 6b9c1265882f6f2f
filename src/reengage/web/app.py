"""The ASGI app behind `reengage serve`: it only assembles the sections.

Each section is a module with a `routes() -> list[BaseRoute]` function: the links in messages,
the provider callbacks, the shop's order webhooks, the event collector (with its tracking
snippet), the REST API and the dashboard. A handler finds the settings, the state engine and
the clock with `web_context(request)`; the app never opens or closes the engine, its owner
(the `serve` command, a test) does. The collector's journal flusher runs for the app's
lifetime (`collector.running`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from reengage.clock import Clock
from reengage.config import Settings


@dataclass(frozen=True)
class WebContext:
    """What every handler may need, shared by all requests."""

    settings: Settings
    engine: Engine
    clock: Clock


def web_context(request: Request) -> WebContext:
    found = request.app.state.web
    assert isinstance(found, WebContext)
    return found


async def healthz(request: Request) -> JSONResponse:
    """200 {"status": "ok"} when the state store answers; 503 otherwise."""
    engine = web_context(request).engine

    def ping() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    if await run_in_threadpool(ping):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable"}, status_code=503)


def create_app(settings: Settings, engine: Engine, clock: Clock) -> Starlette:
    """The web app over this home's state: /healthz and every section's routes."""
    settings.secret()  # links cannot be checked without the key: say so now, not per request
    # imported here: the sections import `web_context` from this module
    from reengage.web import (
        api,
        collector,
        dashboard,
        feeds,
        hooks,
        links,
        onsite,
        shop_hooks,
        social_hooks,
        survey_links,
    )

    context = WebContext(settings, engine, clock)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        *survey_links.routes(),
        *links.routes(),
        *hooks.routes(),
        *social_hooks.routes(),
        *shop_hooks.routes(),
        *collector.routes(),
        *onsite.routes(),
        *api.routes(),
        *feeds.routes(),
        *dashboard.routes(),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with collector.running(context):
            yield

    # the dashboard's signed session cookies and security headers, on its own paths only
    app = Starlette(routes=routes, lifespan=lifespan, middleware=dashboard.middleware(settings))
    app.state.web = context
    return app
