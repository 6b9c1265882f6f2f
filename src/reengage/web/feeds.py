"""Live product feeds for the ad platforms' scheduled fetches.

- `GET /feeds/meta.csv`: the catalogue as Meta's catalogue feed;
- `GET /feeds/google.xml`: as Google Merchant Center's product feed;
- `GET /feeds/skipped.json?format=meta|google`: the products left out, with the reason.

Each feed answer says how many products were left out in `X-Reengage-Skipped`. The whole
catalogue is public (the shop shows it anyway). `?segment=NAME` gives the products that
segment viewed or carted lately: that says what a few people looked at, so it needs an API
key of scope `read`, sent as `Authorization: Bearer KEY` or as the password of HTTP Basic
authentication (which Meta's and Google's scheduled fetches can send).
"""

from __future__ import annotations

import base64
import binascii

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.errors import InputError
from reengage.keys import authenticate
from reengage.retarget.feeds import Feed, build
from reengage.web.app import WebContext, web_context

SKIPPED_HEADER = "X-Reengage-Skipped"


def _key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _refused(status: int, message: str) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="reengage feeds"'} if status == 401 else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


async def _feed(request: Request, fmt: str) -> Feed | Response:
    ctx: WebContext = web_context(request)
    segment = request.query_params.get("segment") or None
    if segment is not None:
        key = _key(request)
        if key is None:
            return _refused(401, "a segment's product set needs an API key")
        holder = await run_in_threadpool(authenticate, ctx.engine, ctx.clock, key)
        if holder is None:
            return _refused(401, "the API key is unknown or revoked")
        if not holder.allows("read"):
            return _refused(403, "this needs a key with scope read (or higher)")
    try:
        return await run_in_threadpool(
            build, ctx.settings, ctx.engine, fmt, segment=segment, now=ctx.clock.now()
        )
    except InputError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)


async def meta_csv(request: Request) -> Response:
    feed = await _feed(request, "meta")
    return feed if isinstance(feed, Response) else _answer(feed)


async def google_xml(request: Request) -> Response:
    feed = await _feed(request, "google")
    return feed if isinstance(feed, Response) else _answer(feed)


async def skipped_json(request: Request) -> Response:
    fmt = request.query_params.get("format", "meta")
    if fmt not in ("meta", "google"):
        return JSONResponse({"detail": "format: meta or google"}, status_code=400)
    feed = await _feed(request, fmt)
    if isinstance(feed, Response):
        return feed
    return JSONResponse(feed.summary(), headers={SKIPPED_HEADER: str(len(feed.skipped))})


def _answer(feed: Feed) -> Response:
    return Response(
        feed.body,
        media_type=feed.content_type,
        headers={SKIPPED_HEADER: str(len(feed.skipped)), "Cache-Control": "no-cache"},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/feeds/meta.csv", meta_csv, methods=["GET"]),
        Route("/feeds/google.xml", google_xml, methods=["GET"]),
        Route("/feeds/skipped.json", skipped_json, methods=["GET"]),
    ]
