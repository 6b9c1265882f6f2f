"""Meta's webhooks for the messaging apps: WhatsApp (Cloud API), Messenger and Instagram.

- `GET /hooks/meta`: the subscription handshake. Meta calls it with `hub.mode=subscribe`,
  `hub.verify_token` and `hub.challenge`; when the token is `meta_verify_token` the answer is
  the challenge as plain text, else 403. Without `meta_verify_token` the route is a 404.
- `POST /hooks/meta`: the events. The `X-Hub-Signature-256` header (`sha256=` and the hex
  HMAC-SHA256 of the raw body, keyed with `meta_app_secret`) is checked before anything else:
  401 when it does not match, and nothing is written; 404 while `meta_app_secret` is unset.
  Then messages and status reports are stored (`social.conversations.receive`), once per
  platform message id, so a repeated delivery changes nothing. Answers 200
  `{"messages": N, "statuses": M}` (the new ones); 400 for a body that is not JSON.

Log lines carry no number, id or text of the people writing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from reengage.social import messenger, whatsapp
from reengage.social.conversations import receive
from reengage.web.app import web_context
from reengage.web.bodies import read_limited

log = logging.getLogger(__name__)

META_PATH = "/hooks/meta"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY = 1024 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def compute_signature(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` Meta sends for body: `sha256=` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(app_secret: str, body: bytes, header: str) -> bool:
    if not header:
        return False
    return hmac.compare_digest(compute_signature(app_secret, body).encode(), header.encode())


def _error(message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=NO_STORE)


async def verify(request: Request) -> Response:
    """The GET handshake Meta makes when the webhook is subscribed."""
    token = web_context(request).settings.meta_verify_token
    if not token:
        return Response(status_code=404, headers=NO_STORE)
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        given.encode(), token.encode()
    ):
        log.warning("refused a Meta webhook handshake: wrong mode or verify token")
        return Response(status_code=403, headers=NO_STORE)
    return PlainTextResponse(params.get("hub.challenge", ""), headers=NO_STORE)


async def events(request: Request) -> Response:
    """WhatsApp, Messenger and Instagram events, signed with meta_app_secret."""
    ctx = web_context(request)
    secret = ctx.settings.meta_app_secret
    if not secret:
        return Response(status_code=404, headers=NO_STORE)
    try:
        body = await read_limited(request, MAX_BODY)
    except ClientDisconnect:
        return Response(status_code=400, headers=NO_STORE)
    if body is None:
        return _error(f"the body is longer than {MAX_BODY} bytes", 413)
    if not valid_signature(secret, body, request.headers.get(SIGNATURE_HEADER, "")):
        log.warning("refused a Meta webhook: %s does not match", SIGNATURE_HEADER)
        return _error(f"{SIGNATURE_HEADER} does not match", 401)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error("the body is not JSON", 400)
    items = [*whatsapp.parse_webhook(payload), *messenger.parse_webhook(payload)]
    counts = await run_in_threadpool(receive, ctx.engine, items, ctx.clock.now())
    log.info(
        "Meta webhook: %d new messages, %d status changes", counts["messages"], counts["statuses"]
    )
    return JSONResponse(counts, headers=NO_STORE)


def routes() -> list[BaseRoute]:
    return [
        Route(META_PATH, verify, methods=["GET"]),
        Route(META_PATH, events, methods=["POST"]),
    ]
