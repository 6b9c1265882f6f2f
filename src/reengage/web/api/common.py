"""What every API module shares: the request's context and key, scopes, cursors, errors and
the small models that describe them in the OpenAPI document."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, StringConstraints
from starlette.concurrency import run_in_threadpool

from reengage.clock import as_utc
from reengage.config import Home
from reengage.keys import KeyHolder, authenticate
from reengage.web.app import WebContext

SCOPE_KEY = "reengage.web"  # where the bridge leaves the outer app's context in the scope
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_ID = 2**62  # ids fit a signed 64-bit column on every backend

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key from `reengage keys create`, sent as `Authorization: Bearer KEY`.",
)


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# text without NUL, which PostgreSQL does not store
Clean = Annotated[str, AfterValidator(_no_nul)]
Text8 = Annotated[Clean, StringConstraints(max_length=8)]
Text32 = Annotated[Clean, StringConstraints(max_length=32)]
Text64 = Annotated[Clean, StringConstraints(max_length=64)]
Text200 = Annotated[Clean, StringConstraints(max_length=200)]
Text320 = Annotated[Clean, StringConstraints(max_length=320)]
Id128 = Annotated[Clean, StringConstraints(min_length=1, max_length=128)]


def _sane_instant(value: datetime) -> datetime:
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 2100 or not 1970 <= as_utc(moment).year <= 2100:
        raise ValueError("must be between 1970 and 2100")
    return as_utc(moment)


# an instant in 1970-2100; without an offset it is taken as UTC
Instant = Annotated[datetime, AfterValidator(_sane_instant)]


def iso(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No key, or a key unknown or revoked."},
    403: {"model": Problem, "description": "The key's scope does not allow this."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such resource."}
}


def context(request: Request) -> WebContext:
    found = request.scope.get(SCOPE_KEY)
    assert isinstance(found, WebContext)
    return found


def home(ctx: WebContext) -> Home:
    return Home(ctx.settings)


def require(scope: str) -> Callable[..., Any]:
    """A dependency: the key holder, when the request's key allows `scope`."""

    async def holder(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> KeyHolder:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "an API key is needed", {"WWW-Authenticate": "Bearer"})
        ctx = context(request)
        found = await run_in_threadpool(
            authenticate, ctx.engine, ctx.clock, credentials.credentials
        )
        if found is None:
            raise HTTPException(
                401, "the API key is unknown or revoked", {"WWW-Authenticate": "Bearer"}
            )
        if not found.allows(scope):
            raise HTTPException(403, f"this needs a key with scope {scope} (or higher)")
        return found

    return holder


Reader = Annotated[KeyHolder, Depends(require("read"))]
Writer = Annotated[KeyHolder, Depends(require("write"))]
Admin = Annotated[KeyHolder, Depends(require("admin"))]
Context = Annotated[WebContext, Depends(context)]
ContactId = Annotated[int, Path(ge=1, le=MAX_ID, description="The contact's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (1 to {MAX_LIMIT}).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1000,
        description="The `next_cursor` of the previous page; omit it for the first page.",
    ),
]


def invalid(where: str, name: str, message: str) -> RequestValidationError:
    """A 422 naming the field, as FastAPI's own validation errors do."""
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error"}])


def not_found(what: str) -> HTTPException:
    return HTTPException(404, f"no {what}")


# ---- cursors --------------------------------------------------------------------------------


def encode_cursor(kind: str, *values: Any) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str, types: tuple[type, ...]) -> list[Any] | None:
    """The values a cursor of this kind holds; a 422 naming `cursor` for anything else."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid("query", "cursor", "not a cursor this API gave") from None
    if (
        not isinstance(found, list)
        or len(found) != len(types) + 1
        or found[0] != kind
        or not all(
            isinstance(v, t)
            and not isinstance(v, bool)
            and (not isinstance(v, int) or abs(v) <= MAX_ID)
            for v, t in zip(found[1:], types, strict=True)
        )
    ):
        raise invalid("query", "cursor", "not a cursor of this list")
    return found[1:]
