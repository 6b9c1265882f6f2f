"""The event collector: what the shop's pages report, taken in over HTTP (docs/web.md).

- `POST /t/events` takes `{"events": [...]}` in the vocabulary of docs/formats.md and answers
  202 `{"accepted": N, "rejected": [{"index": i, "reason": "..."}]}` once the good events are
  durable in the journal. 400 for a body that is not such JSON, 413 over
  `collector_max_bytes`, 429 (with Retry-After) for a client over `collector_rate_per_minute`.
  Any content type is read as JSON: `navigator.sendBeacon` sends `text/plain`.
- `GET /t/p.gif?e=page_view&aid=...` records one event from its query string and always
  answers a 1x1 GIF, whatever the input (a broken image would show on the shop's page).
- `GET /t/tracker.js` serves the tracking snippet; `GET /t/hello` answers "ok" and does
  nothing else: the baseline the collector's benchmark measures the pixel against.

CORS: answers carry `Access-Control-Allow-Origin` for the origins in `allowed_origins` only;
a preflight from another origin is refused. Bots (by user agent) get the usual answer with
nothing stored. The journal (reengage.ingest.journal) is stored in the facts by a flusher
that runs with the app (`running`). Log lines carry counts and error types, never an id, an
address or an IP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.ingest import journal
from reengage.ingest.collected import flusher
from reengage.ingest.events_in import check_batch, pixel_event
from reengage.web.app import WebContext, web_context
from reengage.web.bodies import read_limited
from reengage.web.links import NO_STORE, PIXEL

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0  # how often the journal is stored in the facts
TRACKER = Path(__file__).parent / "static" / "tracker.js"
TRACKER_CACHE = "public, max-age=3600"
PREFLIGHT_MAX_AGE = "86400"
# Words in the user agents of crawlers, link previews, page-speed and uptime checkers (in
# lower case). Not headless browsers as such: end-to-end tests of a shop's pages run in one.
BOT_WORDS = (
    "bot",
    "crawl",
    "spider",
    "slurp",
    "archiver",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "preview",
    "whatsapp",
    "phantomjs",
    "lighthouse",
    "pingdom",
    "uptimerobot",
    "gtmetrix",
    "pagespeed",
    "google-inspectiontool",
    "mediapartners",
    "feedfetcher",
    "ahrefs",
    "semrush",
    "mj12",
    "petalsearch",
    "yandex",
    "baiduspider",
    "bytespider",
    "scrapy",
)
RATE_KEEP = 50_000  # clients remembered before the idle ones are forgotten

_journals: dict[int, journal.GroupCommit] = {}  # by id() of the app's WebContext


# ---- who is asking -----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def is_bot_agent(user_agent: str) -> bool:
    """Whether a user agent is a bot's (cached: the same few agents come again and again)."""
    agent = user_agent.lower()
    return any(word in agent for word in BOT_WORDS)


def is_bot(request: Request) -> bool:
    return is_bot_agent(request.headers.get("user-agent", ""))


class RateLimit:
    """Requests per minute per client address: a token bucket that refills continuously,
    `per_minute` deep. Kept in memory: each process counts its own clients."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def wait(self, client: str, now: float) -> float:
        """0 when the request may go on (and counts it); else seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        tokens, at = self._buckets.get(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + max(0.0, now - at) * rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate
        if len(self._buckets) >= RATE_KEEP and client not in self._buckets:
            self._forget(now)
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0

    def _forget(self, now: float) -> None:
        """Drop the clients whose bucket has filled up again (they lose nothing)."""
        full = 60.0
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}


_limits: dict[int, RateLimit] = {}


def _limited(request: Request, ctx: WebContext) -> float:
    limit = _limits.get(id(ctx))
    if limit is None:
        limit = _limits[id(ctx)] = RateLimit(ctx.settings.collector_rate_per_minute)
    if limit.per_minute <= 0:
        return 0.0
    client = request.client.host if request.client else ""
    return limit.wait(client, ctx.clock.now().timestamp())


# ---- CORS ----------------------------------------------------------------------------------


def _cors(request: Request, ctx: WebContext) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") in ctx.settings.allowed_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _preflight(request: Request, ctx: WebContext) -> Response:
    headers = _cors(request, ctx)
    if "Access-Control-Allow-Origin" not in headers:
        return Response(status_code=403, headers=headers)
    headers |= {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    }
    return Response(status_code=204, headers=headers)


# ---- handlers ------------------------------------------------------------------------------


class TooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (TooLarge past it)."""
    body = await read_limited(request, limit)
    if body is None:
        raise TooLarge
    return body


def _answer(body: dict[str, Any], status: int, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def events(request: Request) -> Response:
    ctx = web_context(request)
    if request.method == "OPTIONS":
        return _preflight(request, ctx)
    headers = _cors(request, ctx)
    if is_bot(request):
        return _answer({"accepted": 0, "rejected": [], "ignored": "bot"}, 202, headers)
    wait = _limited(request, ctx)
    if wait:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return _answer({"error": "too many requests"}, 429, headers)
    try:
        body = await _body(request, ctx.settings.collector_max_bytes)
    except TooLarge:
        limit = ctx.settings.collector_max_bytes
        return _answer({"error": f"the body is larger than {limit} bytes"}, 413, headers)
    except ClientDisconnect:
        return Response(status_code=400)
    try:
        payload = json.loads(body)
    except ValueError:  # bad JSON and bad UTF-8 alike
        return _answer({"error": "the body is not JSON"}, 400, headers)
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return _answer({"error": 'the body must be {"events": [...]}'}, 400, headers)
    good, bad = check_batch(payload["events"], ctx.clock.now(), ctx.settings.zone)
    if good:
        group = _journals.get(id(ctx))
        if group is None:
            return _answer({"error": "the collector is not running"}, 503, headers)
        try:
            await group.append(journal.encode(good))
        except OSError as exc:
            log.error("could not journal %d event(s): %r", len(good), exc)
            headers["Retry-After"] = "5"
            return _answer({"error": "the events could not be stored"}, 503, headers)
    return _answer({"accepted": len(good), "rejected": bad}, 202, headers)


async def pixel(request: Request) -> Response:
    """Always the GIF: a bad, limited or unstorable event is dropped without a word."""
    ctx = web_context(request)
    if not is_bot(request) and not _limited(request, ctx):
        record = pixel_event(request.query_params, ctx.clock.now(), ctx.settings.zone)
        group = _journals.get(id(ctx))
        if isinstance(record, dict) and group is not None:
            try:
                group.append_soon_durable(journal.encode([record]))
            except OSError as exc:
                log.error("could not journal a pixel event: %r", exc)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def tracker(request: Request) -> Response:
    if not TRACKER.is_file():
        return PlainTextResponse("no tracking snippet is installed", status_code=404)
    return FileResponse(
        TRACKER, media_type="application/javascript", headers={"Cache-Control": TRACKER_CACHE}
    )


async def hello(request: Request) -> Response:
    """The bare baseline: no parsing, no journal."""
    return PlainTextResponse("ok")


# ---- the journal's flusher -------------------------------------------------------------------


async def _flush(group: journal.GroupCommit, store: Callable[[], int]) -> None:
    """Seal the open segment and store every sealed one; errors are logged, and the journal
    keeps the events for the next round."""
    try:
        await group.seal()
        await run_in_threadpool(store)
    except Exception as exc:
        log.error("could not store the journal in the facts (will retry): %r", exc)


async def _flush_every(
    group: journal.GroupCommit, store: Callable[[], int], seconds: float
) -> None:
    while True:
        await asyncio.sleep(seconds)
        await _flush(group, store)


@asynccontextmanager
async def running(context: WebContext) -> AsyncIterator[None]:
    """The journal for the app's lifetime: what an earlier run left is stored before the
    first request, then the journal is stored every FLUSH_SECONDS, and once more at the end."""
    writer = await run_in_threadpool(journal.JournalWriter, context.settings.journal_path)
    group = journal.GroupCommit(writer)
    store = flusher(context.settings, context.engine, context.clock)
    await _flush(group, store)
    _journals[id(context)] = group
    task = asyncio.create_task(_flush_every(group, store, FLUSH_SECONDS))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _journals.pop(id(context), None)
        _limits.pop(id(context), None)
        await group.close()  # seals what this process wrote
        try:
            await run_in_threadpool(store)
        except Exception as exc:  # kept in the journal: the next start stores it
            log.error("could not store the journal in the facts at the end: %r", exc)


def routes() -> list[BaseRoute]:
    return [
        Route("/t/events", events, methods=["POST", "OPTIONS"]),
        Route("/t/p.gif", pixel, methods=["GET"]),
        Route("/t/tracker.js", tracker, methods=["GET"]),
        Route("/t/hello", hello, methods=["GET"]),
    ]
