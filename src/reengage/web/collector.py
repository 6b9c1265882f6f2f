"""The event collector (placeholder: the collector helper replaces this module)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from reengage.web.app import WebContext


@asynccontextmanager
async def running(context: WebContext) -> AsyncIterator[None]:
    yield


def routes() -> list[BaseRoute]:
    return []
