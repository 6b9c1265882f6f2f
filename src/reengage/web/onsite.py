"""On-site messages for the tracking snippet (reengage.onsite.decide, docs/retargeting.md).

`GET /t/onsite?aid=...&cid=...&page=product&pid=...` answers `{"placements": [...]}`, each
with its placement, variant, headline, products, the `properties` the snippet records in its
`onsite_impression`, and the `html` it shows (escaped here; its links record `onsite_click`
through the snippet, its close button removes it). The language is `lang`, else the browser's
Accept-Language, else the contact's, else the home's. CORS as the collector's: a shop origin not
in `allowed_origins`, and a bot, get no placements. The snippet asks only after the visitor
consented to tracking.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.onsite.decide import Offer, Placement, Visitor, close_label, decide
from reengage.web.app import web_context
from reengage.web.collector import _cors, _limited, is_bot

MAX_ID = 128
BOX = (
    "background:#fff;color:#222;border:1px solid #ccc;border-radius:8px;padding:1em;"
    "box-shadow:0 4px 20px rgba(0,0,0,.25);font:inherit;z-index:2147483647"
)
CENTRED = "position:fixed;top:1em;left:50%;transform:translateX(-50%);max-width:24em"
STYLES = {
    "recommendations": "margin:1em 0",
    "exit_intent": f"{CENTRED};{BOX}",
    "welcome_back": f"position:fixed;bottom:1em;left:1em;right:1em;{BOX}",
}
LIST = "list-style:none;display:flex;flex-wrap:wrap;gap:1em;padding:0"
NO_STORE = {"Cache-Control": "no-store"}
CLOSE = "this.closest('[data-placement]').remove()"


def _param(request: Request, name: str) -> str | None:
    value = (request.query_params.get(name) or "").strip()
    return value[:MAX_ID] or None


def _accepted_language(request: Request) -> str | None:
    first = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
    return first[:MAX_ID] or None


def properties(placement: Placement) -> dict[str, str]:
    """What an impression or a click of the placement records as its properties."""
    return {"placement": placement.placement, "variant": placement.variant}


def _clicked(placement: Placement, product_id: str) -> str:
    """The onclick attribute recording an `onsite_click` of a product through the snippet."""
    args = json.dumps(["onsite_click", properties(placement), {"productId": product_id}])
    return f' onclick="{escape(f"window.reengage.track({args[1:-1]})")}"'


def _price(offer: Offer) -> str:
    if offer.price is None:
        return ""
    amount = f"{offer.price:.2f}"
    return f"{amount} {offer.currency}" if offer.currency else amount


def _item(placement: Placement, offer: Offer) -> str:
    label = f"<span>{escape(offer.title or offer.product_id)}</span>"
    if offer.image_url:
        label = f'<img src="{escape(offer.image_url)}" alt="" width="120" loading="lazy"> {label}'
    if offer.url:
        pid = escape(offer.product_id)
        click = _clicked(placement, offer.product_id)
        label = f'<a href="{escape(offer.url)}" data-pid="{pid}"{click}>{label}</a>'
    price = _price(offer)
    if price:
        label += f' <span class="reengage-price">{escape(price)}</span>'
    return f"<li>{label}</li>"


def render(placement: Placement) -> str:
    """The placement's HTML: a heading, its products, a close button on the interrupting ones."""
    name = placement.placement
    role = ' role="dialog"' if name == "exit_intent" else ""
    parts = [
        f'<div class="reengage-{name.replace("_", "-")}" data-placement="{name}"{role}'
        f' style="{STYLES[name]}">',
        f"<p><strong>{escape(placement.headline)}</strong></p>",
    ]
    if placement.products:
        items = "".join(_item(placement, p) for p in placement.products)
        parts.append(f'<ul style="{LIST}">{items}</ul>')
    if name != "recommendations":
        label = escape(close_label(placement.language))
        parts.append(f'<button type="button" data-close onclick="{CLOSE}">{label}</button>')
    parts.append("</div>")
    return "".join(parts)


async def onsite(request: Request) -> Response:
    ctx = web_context(request)
    headers = _cors(request, ctx) | NO_STORE
    nothing: dict[str, Any] = {"placements": []}
    if request.headers.get("origin") and "Access-Control-Allow-Origin" not in headers:
        return JSONResponse(nothing, headers=headers)
    if is_bot(request):
        return JSONResponse(nothing, headers=headers)
    if _limited(request, ctx):
        return JSONResponse({"error": "too many requests"}, status_code=429, headers=headers)
    product_id = _param(request, "pid")
    visitor = Visitor(
        anonymous_id=_param(request, "aid"),
        customer_id=_param(request, "cid"),
        page=_param(request, "page") or ("product" if product_id else "other"),
        product_id=product_id,
        language=_param(request, "lang") or _accepted_language(request),
    )
    placements = await run_in_threadpool(decide, ctx.settings, ctx.engine, visitor, ctx.clock.now())
    answers = [p.as_dict() | {"properties": properties(p), "html": render(p)} for p in placements]
    return JSONResponse({"placements": answers}, headers=headers)


def routes() -> list[BaseRoute]:
    return [Route("/t/onsite", onsite, methods=["GET"])]
