"""The email as a phone shows it: headless Chromium at 375 px wide, for every intent.

Playwright drives the Chromium the system provides (`chromium` on the PATH, which .ci/run installs);
it never downloads a browser. Without Chromium these tests fail, they do not skip.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from reengage.config import LANGUAGES
from reengage.messages.context import Context
from reengage.messages.copy import Catalogue, sample_context
from reengage.messages.intents import INTENTS, VARIANTS
from reengage.messages.render import Links, Renderer

WIDTH = 375
# a square photo, as shops upload them: wider than the phone, so the layout must shrink it
PHOTO = (
    "data:image/svg+xml;base64,"
    + base64.b64encode(
        b'<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="1200">'
        b'<rect width="1200" height="1200" fill="#c9b79c"/></svg>'
    ).decode()
)
LINKS = Links(unsubscribe="https://r.example/u/TOKEN", preferences="https://r.example/p/TOKEN")

# one style per intent, rotating, and the languages in turn: every style and language appears
CASES = [
    (intent, VARIANTS[n % len(VARIANTS)], LANGUAGES[n % len(LANGUAGES)])
    for n, intent in enumerate(INTENTS)
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Chromium is not installed: the email layout tests need it "
            "(apt-get install chromium; .ci/run does it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@cache
def renderer() -> Renderer:
    return Renderer(Catalogue())


def _with_photos(context: Context) -> Context:
    def photo(item: Any) -> Any:
        return dataclasses.replace(item, image_url=PHOTO)

    return dataclasses.replace(
        context,
        cart=tuple(map(photo, context.cart)),
        product=photo(context.product) if context.product else None,
        products=tuple(map(photo, context.products)),
    )


# the page's facts, measured by the browser
MEASURE = """() => {
  const visible = (el) => {
    const s = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    return s.display !== 'none' && s.visibility !== 'hidden' && parseFloat(s.opacity) > 0
      && r.width > 0 && r.height > 0 && parseFloat(s.maxHeight || '1') !== 0;
  };
  const small = [];
  for (const el of document.body.querySelectorAll('*')) {
    const text = Array.from(el.childNodes)
      .filter((n) => n.nodeType === Node.TEXT_NODE)
      .map((n) => n.textContent.trim()).join('');
    if (!text || !visible(el)) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < 14) small.push(`${size}px: ${text.slice(0, 40)}`);
  }
  const button = document.querySelector('.cta a');
  const box = button && button.getBoundingClientRect();
  return {
    scrollWidth: document.documentElement.scrollWidth,
    small,
    button: box && {left: box.left, right: box.right, width: box.width, height: box.height,
                    visible: visible(button), text: button.textContent.trim(),
                    href: button.getAttribute('href')},
  };
}"""


@pytest.mark.parametrize(("intent", "variant", "language"), CASES, ids=lambda v: str(v))
def test_the_email_fits_a_phone(
    browser: Any, intent: str, variant: str, language: str, tmp_path: Path
) -> None:
    context = _with_photos(sample_context(language))
    rendered = renderer().render(intent, variant, language, context, LINKS)
    page = browser.new_page(viewport={"width": WIDTH, "height": 800})
    try:
        page.set_content(rendered.html, wait_until="load")
        facts = page.evaluate(MEASURE)
        page.screenshot(path=str(tmp_path / f"{intent}-{variant}-{language}.png"), full_page=True)
    finally:
        page.close()
    assert facts["scrollWidth"] <= WIDTH, "the email scrolls sideways on a phone"
    assert not facts["small"], f"text smaller than 14px: {facts['small']}"
    button = facts["button"]
    assert button is not None and button["visible"], "the call to action is missing"
    assert button["href"] == rendered.url and button["height"] >= 40
    assert button["left"] >= 0 and button["right"] <= WIDTH, (
        f"the button leaves the screen: {button}"
    )


def test_every_style_and_language_is_seen() -> None:
    assert {v for _, v, _ in CASES} == set(VARIANTS)
    assert {lang for _, _, lang in CASES} == set(LANGUAGES)
    assert [i for i, _, _ in CASES] == list(INTENTS)
