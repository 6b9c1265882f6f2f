"""The REST API under /api/v1, described by /openapi.json (docs/web.md, "The REST API").

A FastAPI app mounted inside the Starlette app: FastAPI validates each request against the
same models the OpenAPI document is made from, so the two cannot drift apart. Every route
needs an API key (`reengage keys create`) sent as `Authorization: Bearer KEY`: none, or an
unknown or revoked one, is a 401; a key whose scope is too low a 403. Input that does not
fit is a 422 naming the field: `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from reengage.web.api import audience, contacts, facts, messages, privacy
from reengage.web.api.common import SCOPE_KEY

PREFIX = "/api/v1"
TITLE = "reengage"
VERSION = "1"
DESCRIPTION = (
    "Contacts, consents, events, orders, segments, journeys, messages, reports and privacy "
    "of one reengage home. Send an API key as `Authorization: Bearer KEY`; lists are paged "
    "with `limit` and the opaque `next_cursor` of the previous page."
)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e.get("type", "value_error")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _refused(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except for a body that is not JSON: a 422 naming the body, as any
    other input that does not fit (FastAPI says 400 when the bytes do not even decode)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        detail = [{"loc": ["body"], "msg": "not JSON in UTF-8", "type": "json_invalid"}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


def build() -> FastAPI:
    api = FastAPI(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        exception_handlers={
            RequestValidationError: _invalid,
            StarletteHTTPException: _refused,
        },
        generate_unique_id_function=lambda route: route.name,
    )
    for module in (contacts, facts, audience, messages, privacy):
        api.include_router(module.router)
    return api


def openapi_document(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the mounted app, with its paths as served (under /api/v1)."""
    document = get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=api.routes)
    document["paths"] = {PREFIX + path: ops for path, ops in document["paths"].items()}
    return document


class _Bridge:
    """Hands the outer app's context to the mounted API (a mounted app is its own
    `request.app`, so it cannot read the outer app's state)."""

    def __init__(self, api: ASGIApp) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SCOPE_KEY] = scope["app"].state.web
        await self.api(scope, receive, send)


def routes() -> list[BaseRoute]:
    api = build()
    document = openapi_document(api)

    async def openapi(_: Request) -> JSONResponse:
        return JSONResponse(document)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Mount(PREFIX, app=_Bridge(api)),
    ]
