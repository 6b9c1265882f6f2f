"""A message as a contact would get it: any intent, in any style's copy and any language,
rendered with the home's copy on the sample context (as a campaign's proof is), its links
the preview's placeholders. The email's HTML is served alone, with its own restrictive policy,
to a sandboxed frame of the page: its inline styles never reach the dashboard."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from reengage.config import LANGUAGES, Settings
from reengage.errors import ReengageError
from reengage.messages.copy import Catalogue
from reengage.messages.intents import INTENTS, VARIANTS
from reengage.messages.render import Links, Rendered, Renderer
from reengage.messages.samples import sample_context
from reengage.web.app import web_context
from reengage.web.dashboard.auth import login_required
from reengage.web.dashboard.security import PREVIEW_CSP
from reengage.web.dashboard.templating import page

DEFAULT_INTENT = "cart_reminder"


def choice(request: Request) -> tuple[str, str, str]:
    """The intent, style variant and language asked for (400 for one that does not exist)."""
    params = request.query_params
    intent = params.get("intent") or DEFAULT_INTENT
    style = params.get("style") or VARIANTS[0]
    language = params.get("language") or LANGUAGES[0]
    if intent not in INTENTS or style not in VARIANTS or language not in LANGUAGES:
        raise HTTPException(400, "unknown intent, style or language")
    return intent, style, language


def render_preview(settings: Settings, intent: str, style: str, language: str) -> Rendered:
    renderer = Renderer(Catalogue.for_settings(settings))
    context = replace(sample_context(language, settings.currency), shop_name=settings.shop_name)
    base = settings.public_url
    links = Links(unsubscribe=f"{base}/u/PREVIEW", preferences=f"{base}/p/PREVIEW")
    return renderer.render(intent, style, language, context, links)


@login_required
def preview_page(request: Request) -> Response:
    intent, style, language = choice(request)
    settings = web_context(request).settings
    values: dict[str, Any] = {
        "intents": list(INTENTS),
        "styles": VARIANTS,
        "languages": LANGUAGES,
        "intent": intent,
        "style": style,
        "language": language,
        "channels": INTENTS[intent].channels,
        "query": request.url.query or f"intent={intent}&style={style}&language={language}",
    }
    try:
        values["rendered"] = render_preview(settings, intent, style, language)
    except ReengageError as exc:  # the home's copy overrides do not compile
        values["error"] = str(exc)
    return page(request, "preview.html", "preview", **values)


@login_required
def preview_email(request: Request) -> Response:
    intent, style, language = choice(request)
    try:
        rendered = render_preview(web_context(request).settings, intent, style, language)
    except ReengageError as exc:
        raise HTTPException(422, str(exc)) from None
    return HTMLResponse(
        rendered.html,
        headers={"content-security-policy": PREVIEW_CSP, "x-frame-options": "SAMEORIGIN"},
    )
