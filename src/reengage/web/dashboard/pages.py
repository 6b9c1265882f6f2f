"""The dashboard's pages over the whole shop: overview, customers, segments, journeys, and
messages with the campaigns' results. Each handler reads (data.py, journeys.py, the
campaign report) and renders; nothing here writes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from reengage.campaigns import lifecycle
from reengage.campaigns.results import results
from reengage.config import Home
from reengage.errors import ReengageError
from reengage.web.app import web_context
from reengage.web.dashboard import data
from reengage.web.dashboard.auth import HOME, login_required
from reengage.web.dashboard.journeys import journeys as journey_drawings
from reengage.web.dashboard.templating import page


def to_dashboard(_: Request) -> Response:
    return RedirectResponse(HOME, status_code=302)


@login_required
def overview(request: Request) -> Response:
    context = web_context(request)
    found = data.overview(context.settings, context.engine, context.clock.now())
    return page(request, "overview.html", "overview", now=context.clock.now(), **found)


@login_required
def customers(request: Request) -> Response:
    found = data.customers(web_context(request).engine)
    return page(request, "customers.html", "customers", **found)


@login_required
def segments(request: Request) -> Response:
    context = web_context(request)
    found = data.segment_history(context.engine, context.clock.now())
    return page(request, "segments.html", "segments", **found)


@login_required
def journeys(request: Request) -> Response:
    context = web_context(request)
    drawn = journey_drawings(Home(context.settings), context.engine)
    return page(request, "journeys.html", "journeys", journeys=drawn)


def campaign_results(context: Any) -> list[dict[str, Any]]:
    """Every campaign's report (`campaigns show`), newest definition first; one that cannot
    be read says why instead."""
    home = Home(context.settings)
    now = context.clock.now()
    found: list[dict[str, Any]] = []
    with data.facts(context.settings) as con:
        for row in lifecycle.rows(context.engine):
            try:
                found.append(results(home, context.engine, row.name, now, facts=con))
            except ReengageError as exc:
                found.append({"name": row.name, "status": row.status, "error": str(exc)})
    return found


@login_required
def messages(request: Request) -> Response:
    context = web_context(request)
    found = data.outbox(context.engine)
    return page(
        request,
        "messages.html",
        "messages",
        outbox=found,
        campaigns=campaign_results(context),
    )
