"""The browser for the dashboard and tracking-snippet tests (see browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import CHROMIUM_ARGS, chromium_path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright, shared by a module's tests. Not by the
    whole session: Playwright's sync API keeps an event loop running on the main thread while
    it is open, and a later test's `asyncio.run` would refuse to start.

    CI installs Chromium (.ci/run); without it these tests fail rather than pass unseen."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    assert path, "no chromium on PATH: apt-get install chromium (.ci/run does)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
