"""Jinja2 pages for the dashboard: every page extends base.html (navigation, the logged-in
user, the logout form with its CSRF token). Charts travel as JSON in
`<script type="application/json">` blocks that static/dashboard.js draws: no inline script."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from reengage.web.dashboard.security import csrf_token

HERE = Path(__file__).parent
NAV = (
    ("overview", "Overview", "/dashboard/"),
    ("customers", "Customers", "/dashboard/customers"),
    ("segments", "Segments", "/dashboard/segments"),
    ("journeys", "Journeys", "/dashboard/journeys"),
    ("messages", "Messages & campaigns", "/dashboard/messages"),
    ("contacts", "Contacts", "/dashboard/contacts"),
    ("preview", "Preview", "/dashboard/preview"),
)


def _json(value: Any) -> Markup:
    """JSON safe inside a <script type="application/json"> element."""
    text = json.dumps(value, default=str, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.{digits}f}%"


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def _show(value: Any) -> str:
    """A score for a person: floats to a few decimals, times to the minute, none as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, datetime):
        return _when(value)
    return str(value)


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["tojson_safe"] = _json
env.filters["number"] = _number
env.filters["pct"] = _pct
env.filters["when"] = _when
env.filters["show"] = _show


def page(
    request: Request, template: str, section: str, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """A dashboard page: the template with the navigation, the user and the CSRF token."""
    html = env.get_template(template).render(
        nav=NAV,
        section=section,
        user=getattr(request.state, "user", None),
        csrf=csrf_token(request),
        **values,
    )
    return HTMLResponse(html, status_code=status_code)
