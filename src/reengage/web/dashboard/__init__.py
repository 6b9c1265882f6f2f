"""The marketers' dashboard under /dashboard: server-rendered pages (Jinja2), charts drawn by
the vendored Chart.js (static/vendor, MIT) from JSON in the page, nothing to build.

Every page needs a logged-in user (`reengage users create EMAIL`); sessions are signed
cookies, every form carries a CSRF token, and the dashboard's responses carry a strict
content security policy (security.py).
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from reengage.web.dashboard import auth, contacts, pages, preview, reports
from reengage.web.dashboard.security import middleware

__all__ = ["middleware", "routes"]

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    return [
        Route("/", pages.to_dashboard, methods=["GET"]),
        Route("/dashboard", pages.to_dashboard, methods=["GET"]),
        Mount(
            "/dashboard",
            routes=[
                Route("/", pages.overview, methods=["GET"]),
                Route("/login", auth.login, methods=["GET", "POST"]),
                Route("/logout", auth.logout, methods=["POST"]),
                Route("/customers", pages.customers, methods=["GET"]),
                Route("/segments", pages.segments, methods=["GET"]),
                Route("/journeys", pages.journeys, methods=["GET"]),
                Route("/messages", pages.messages, methods=["GET"]),
                Route("/reports", reports.reports_page, methods=["GET"]),
                Route("/contacts", contacts.contact_search, methods=["GET"]),
                Route("/contacts/{contact_id:int}", contacts.contact_page, methods=["GET"]),
                Route("/preview", preview.preview_page, methods=["GET"]),
                Route("/preview/email", preview.preview_email, methods=["GET"]),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ],
        ),
    ]
