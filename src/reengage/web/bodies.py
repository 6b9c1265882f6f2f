"""Reading a request body no further than a limit: what every route that takes a body from
the open internet (the collector, the webhooks) does before it looks at a byte of it."""

from __future__ import annotations

from starlette.requests import Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None when it is longer than `limit` bytes: refused from its declared
    Content-Length when there is one, else as soon as the stream passes the limit."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
