"""Rendering: every intent in every style and language, the email's HTML and text, SMS and
push; escaping, links, blocks; `reengage messages preview` and `intents` as a user runs them."""

from __future__ import annotations

import dataclasses
import html as htmllib
import json
import re
from functools import cache
from pathlib import Path

import markupsafe
import mrml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from reengage.cli import app
from reengage.config import LANGUAGES, Home
from reengage.messages import render as rendering
from reengage.messages.context import Context, Offer
from reengage.messages.copy import Catalogue
from reengage.messages.intents import INTENTS, VARIANTS
from reengage.messages.render import Links, Rendered, Renderer, paragraphs
from reengage.messages.samples import sample_context

LINKS = Links(
    unsubscribe="https://r.example/u/TOKEN-U?x=1&y=2",
    preferences="https://r.example/p/TOKEN-P",
)


@cache
def renderer() -> Renderer:
    return Renderer(Catalogue())


def _parts(r: Rendered) -> dict[str, str]:
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("intent", list(INTENTS))
def test_every_intent_renders_in_every_style(intent: str, language: str) -> None:
    for sparse in (False, True):
        context = sample_context(language, sparse=sparse)
        for variant in VARIANTS:
            where = f"{intent}.{variant} ({language}, {'sparse' if sparse else 'full'})"
            r = renderer().render(intent, variant, language, context, LINKS)
            for name, value in _parts(r).items():
                assert value.strip(), f"{where}: empty {name}"
                assert "{{" not in value and "{%" not in value, f"{where}: Jinja left in {name}"
                assert "None" not in value, f"{where}: a missing value printed in {name}"
            for name in ("subject", "preheader", "sms", "push_title", "push_body"):
                value = getattr(r, name)
                assert "\n" not in value and "  " not in value, f"{where}: {name} {value!r}"
            cta = _cta_label(r)
            assert markupsafe.escape(cta) in r.html, where
            assert f'href="{markupsafe.escape(r.url)}"' in r.html, where
            assert f'href="{markupsafe.escape(LINKS.unsubscribe)}"' in r.html, where
            assert f'href="{markupsafe.escape(LINKS.preferences)}"' in r.html, where
            assert LINKS.unsubscribe in r.text and LINKS.preferences in r.text, where
            assert f"{cta}: {r.url}" in r.text, where
            assert r.html.startswith("<!doctype html>"), where
            assert f"<title>{markupsafe.escape(r.subject)}</title>" in r.html, where


def _cta_label(r: Rendered) -> str:
    line = next(line for line in r.text.splitlines() if line.endswith(f": {r.url}"))
    return line[: -len(f": {r.url}")]


def test_blocks_follow_the_intent_and_the_data() -> None:
    context = sample_context("en")
    offer = context.offer
    assert offer is not None
    incentive = renderer().render("cart_incentive", "neutral", "en", context, LINKS)
    assert offer.code in incentive.html and "Organic cotton socks" in incentive.html
    # a reminder does not show an offer, even when the context holds one
    reminder = renderer().render("cart_reminder", "neutral", "en", context, LINKS)
    assert offer.code not in reminder.html and offer.code not in reminder.text
    for intent in ("thank_you", "check_in"):  # service messages: no products, no offer
        r = renderer().render(intent, "promoter", "en", context, LINKS)
        assert INTENTS[intent].purpose == "transactional"
        assert offer.code not in r.html
        assert all(p.title not in r.html for p in context.products)
        assert context.last_order is not None and context.last_order.total in r.html
    browse = renderer().render("browse_reminder", "examiner", "en", context, LINKS)
    assert all(p.title in browse.html and p.url in browse.text for p in context.products)
    sparse = renderer().render(
        "winback_incentive", "neutral", "en", sample_context("en", sparse=True), LINKS
    )
    assert "You might also like" not in sparse.html and "Your code" not in sparse.html


def test_the_button_leads_where_the_intent_says() -> None:
    context = sample_context("en")
    r = renderer()
    assert r.render("cart_reminder", None, "en", context, LINKS).url == context.cart_url
    assert r.render("review_request", None, "en", context, LINKS).url == context.review_url
    assert r.render("cart_help", None, "en", context, LINKS).url == context.help_url
    assert r.render("sunset_goodbye", None, "en", context, LINKS).url == LINKS.preferences
    newsletter = r.render("newsletter", None, "en", context, LINKS)
    assert newsletter.url == context.shop_url  # the shop's news: to the shop, picks shown
    assert all(p.title in newsletter.html for p in context.products)
    assert r.render("up_sell", None, "en", context, LINKS).url == context.products[0].url
    assert r.render("replenishment", None, "en", context, LINKS).url == context.product.url  # type: ignore[union-attr]
    bare = dataclasses.replace(context, products=())
    assert r.render("replenishment", None, "en", bare, LINKS).url == context.product.url  # type: ignore[union-attr]
    custom = dataclasses.replace(LINKS, cta="https://shop.example.com/cart/restore/abc")
    assert r.render("cart_reminder", None, "en", context, custom).url == custom.cta


@pytest.mark.parametrize("intent", ["cross_sell", "up_sell", "down_sell"])
def test_recommendation_buttons_never_lead_back_to_the_main_product(intent: str) -> None:
    """cross_sell's main product is what they bought, down_sell's what they looked at and left:
    the button goes to the first recommendation, or to the shop when there is none."""
    context = sample_context("en")
    assert context.product is not None and context.products
    assert INTENTS[intent].cta == "recommendation"
    for variant in VARIANTS:
        r = renderer().render(intent, variant, "en", context, LINKS)
        assert r.url == context.products[0].url != context.product.url
        bare = dataclasses.replace(context, products=())
        assert renderer().render(intent, variant, "en", bare, LINKS).url == context.shop_url

    def track(url: str) -> str:
        return f"https://r.example/c/?u={url}"

    tracked = dataclasses.replace(LINKS, track=track)
    bare = dataclasses.replace(context, products=())
    assert renderer().render(intent, None, "fr", bare, tracked).url == track(context.shop_url)


def test_last_chance_is_the_last_word_before_the_sunset_in_every_language() -> None:
    """In every language and style: we stop writing unless we hear from them, the preferences
    link keeps them, an offer's end date is given, and the button goes to the shop."""
    stop = {
        "en": ("stop", "go quiet", "no more"),
        "it": ("smett", "si ferm", "da parte"),
        "fr": ("cess", "arrêt"),
    }
    for language in LANGUAGES:
        preferences = rendering.LABELS[language]["preferences"]
        for sparse in (False, True):
            context = sample_context(language, sparse=sparse)
            for variant in VARIANTS:
                where = f"last_chance.{variant} ({language}, {'sparse' if sparse else 'full'})"
                prepared = renderer().prepare("last_chance", variant, language, context, LINKS)
                body = " ".join(" ".join(p.lines) for p in prepared.paragraphs)
                assert preferences in body, where
                for text in (body, prepared.sms, prepared.push_body):
                    assert any(word in text.lower() for word in stop[language]), (where, text)
                if context.offer is not None:
                    assert context.offer.expires in body and context.offer.code in prepared.sms
                assert prepared.values["cta_url"] == context.shop_url, where


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_offer_box_writes_its_end_date_right_for_any_day(language: str) -> None:
    """ "valido fino al 8 novembre" is wrong Italian ("all'8", "all'11", "al 1º"): the box says
    "valido fino al giorno 8 novembre"; French writes "jusqu’au 1er novembre"."""
    from datetime import date

    from reengage.messages.context import format_date

    for day in (1, 8, 11, 20):
        expires = format_date(date(2026, 11, day), language)
        expected = {
            "en": f"valid until {day} November 2026",
            "it": f"valido fino al giorno {day} novembre 2026",
            "fr": f"valable jusqu’au {'1er' if day == 1 else day} novembre 2026",
        }[language]
        offer = Offer("SHOP-7K3QH-M9XPT", "10%", expires, 3)
        context = dataclasses.replace(sample_context(language), offer=offer)
        for intent in ("cart_incentive", "last_chance"):
            r = renderer().render(intent, "neutral", language, context, LINKS)
            assert expected in r.text and expected in htmllib.unescape(r.html), (intent, day)
            if language == "it":
                wrong = re.compile(rf"\bal {day}\b|\ball'{day}\b")
                assert not wrong.search(r.text) and not wrong.search(r.html), (intent, day)


def test_tracking_wraps_every_shop_link_but_not_the_unsubscribe() -> None:
    def track(url: str) -> str:
        return "https://r.example/c/" + url.replace("https://", "")

    tracked = dataclasses.replace(LINKS, track=track)
    context = sample_context("en")
    r = renderer().render("browse_reminder", "neutral", "en", context, tracked)
    hrefs = set(re.findall(r'href="([^"]+)"', r.html))
    shop = {h for h in hrefs if "shop.example.com" in h and not h.startswith("mailto:")}
    assert shop and all(h.startswith("https://r.example/c/") for h in shop)
    assert (
        htmllib.escape(LINKS.unsubscribe) in hrefs
        or LINKS.unsubscribe.replace("&", "&amp;") in hrefs
    )
    assert r.url == track(context.product.url)  # type: ignore[union-attr]
    assert track(context.products[0].url) in r.text


def test_unknown_style_reads_as_neutral_and_styles_differ() -> None:
    context = sample_context("en")
    neutral = renderer().render("winback_reminder", "neutral", "en", context, LINKS)
    assert renderer().render("winback_reminder", "unknown", "en", context, LINKS) == neutral
    assert renderer().render("winback_reminder", None, "en", context, LINKS) == neutral
    subjects = {
        renderer().render("winback_reminder", v, "en", context, LINKS).subject for v in VARIANTS
    }
    assert len(subjects) == len(VARIANTS)


names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() == s and s != "")


@settings(max_examples=60, deadline=None)
@given(name=names, title=names)
def test_whatever_a_name_or_title_holds_is_escaped_in_html(name: str, title: str) -> None:
    context = sample_context("en")
    product = dataclasses.replace(context.product, title=title)  # type: ignore[type-var]
    context = dataclasses.replace(context, first_name=name, product=product)
    r = renderer().render("browse_reminder", "neutral", "en", context, LINKS)
    assert f"Hi {name}," in r.text
    assert markupsafe.escape(name) in r.html
    assert markupsafe.escape(title) in r.html
    assert "<script" not in r.html


def test_paragraphs_and_lists_of_the_body() -> None:
    parts = paragraphs("Hello,\n\n  \n- one\n- two\n\nA line\nand its next\n\n\n")
    assert [(p.lines, p.bullets) for p in parts] == [
        (("Hello,",), False),
        (("one", "two"), True),
        (("A line", "and its next"), False),
    ]
    linked = paragraphs("Write to help@shop.example.com or see https://shop.example.com/help.")
    assert str(linked[0].html[0]) == (
        'Write to <a href="mailto:help@shop.example.com">help@shop.example.com</a> or see '
        '<a href="https://shop.example.com/help">https://shop.example.com/help</a>.'
    )
    assert str(paragraphs("<b>x</b> a@b.co")[0].html[0]).startswith("&lt;b&gt;x&lt;/b&gt; ")


def test_compiling_mjml_once_gives_what_compiling_each_message_gives() -> None:
    """The fast path (MJML compiled once with Jinja tags in it, Jinja on the HTML) shows the
    same email as the slow one (Jinja on the MJML, then MJML per message)."""
    from jinja2 import Environment, StrictUndefined

    source = (Path(rendering.__file__).parent / "layout.mjml").read_text(encoding="utf-8")
    baked = rendering._bake(source, "en", rendering.ACCENTS["examiner"], escape=True)
    slow_template = Environment(autoescape=True, undefined=StrictUndefined).from_string(baked)
    context = sample_context("en")
    fast_html = renderer().render("winback_incentive", "examiner", "en", context, LINKS).html
    prepared = renderer().prepare("winback_incentive", "examiner", "en", context, LINKS)
    values = {**prepared.values, "paragraphs": prepared.paragraphs}
    slow_html = mrml.to_html(slow_template.render(values)).content

    def visible(page: str) -> list[str]:
        text = re.sub(r"<style.*?</style>|<!--.*?-->", "", page, flags=re.S)
        return htmllib.unescape(re.sub(r"<[^>]+>", " ", text)).split()

    assert visible(fast_html) == visible(slow_html)
    assert set(re.findall(r'href="([^"]+)"', fast_html)) == set(
        re.findall(r'href="([^"]+)"', slow_html)
    )


def test_a_layout_whose_tags_mjml_would_change_is_refused() -> None:
    broken = '<mjml><mj-body><mj-section><mj-column><mj-image src="x" foo="{{ bar }}" /></mj-column></mj-section></mj-body></mjml>'
    with pytest.raises(RuntimeError, match="changed the Jinja tags"):
        rendering._compile_mjml(broken)


def test_a_context_from_the_outbox_payload_renders_the_same() -> None:
    context = sample_context("it")
    payload = json.loads(json.dumps(context.to_payload()))
    again = Context.from_payload(payload)
    first = renderer().render("last_chance", "examiner", "it", context, LINKS)
    assert renderer().render("last_chance", "examiner", "it", again, LINKS) == first


def test_days_left_and_offer_wording() -> None:
    context = dataclasses.replace(
        sample_context("en"), offer=Offer("LAST-1", "€5.00", "2 November 2026", 1)
    )
    r = renderer().render("last_chance", "go_getter", "en", context, LINKS)
    assert "that's tomorrow" in r.text and "LAST-1" in r.sms


# --- the command line -------------------------------------------------------------------


def test_intents_lists_purpose_and_blocks(cli: CliRunner) -> None:
    result = cli.invoke(app, ["messages", "intents", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert list(rows) == list(INTENTS)
    assert {i for i, r in rows.items() if r["purpose"] == "transactional"} == {
        "thank_you",
        "check_in",
    }
    assert rows["cart_incentive"]["blocks"] == ["cart", "offer"]
    table = cli.invoke(app, ["messages", "intents"])
    assert "cart_reminder" in table.output and "transactional" in table.output


def test_preview_a_sample(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REENGAGE_HOME", str(tmp_path / "no-home-needed"))
    out = tmp_path / "preview" / "cart.html"
    result = cli.invoke(
        app,
        [
            "messages",
            "preview",
            "cart_reminder",
            "--style",
            "go_getter",
            "--lang",
            "en",
            "--html",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Subject:   Your cart is saved" in result.output
    assert "Complete my order: https://shop.example.com/cart" in result.output
    assert out.read_text().startswith("<!doctype html>")
    sms = cli.invoke(app, ["messages", "preview", "last_chance", "--channel", "sms"])
    assert sms.exit_code == 0 and "THANKS-7Q2K" in sms.output
    push = cli.invoke(app, ["messages", "preview", "check_in", "--channel", "push", "--json"])
    data = json.loads(push.stdout)
    assert data["variant"] == "neutral" and data["purpose"] == "transactional"
    assert data["push_title"] and data["html_file"] is None
    bad = cli.invoke(app, ["messages", "preview", "cart_remindr"])
    assert bad.exit_code == 2 and "unknown intent 'cart_remindr'" in bad.stderr
    bad_style = cli.invoke(app, ["messages", "preview", "cart_reminder", "--style", "bossy"])
    assert bad_style.exit_code == 2


def test_preview_uses_the_home_override_and_check_reports_it(cli: CliRunner, home: Home) -> None:
    folder = home.path / "messages" / "copy"
    folder.mkdir(parents=True)
    (folder / "en.yaml").write_text(
        'thank_you:\n  neutral:\n    subject: "Grazie, {{ shop_name }}"\n'
    )
    result = cli.invoke(app, ["messages", "preview", "thank_you", "--json"])
    assert json.loads(result.stdout)["subject"] == "Grazie, Our shop"
    (folder / "en.yaml").write_text('thank_you:\n  neutral:\n    subject: "{{ shop_nam }}"\n')
    broken = cli.invoke(app, ["messages", "preview", "thank_you"])
    assert broken.exit_code == 2
    assert broken.stderr.strip().startswith("error: ")
    assert "en.yaml line 3 (thank_you.neutral.subject): 'shop_nam' is undefined" in " ".join(
        broken.stderr.split()
    )
    assert cli.invoke(app, ["messages", "check"]).exit_code == 2


ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price
O1,A,2026-09-01T10:00:00Z,P1,1,40
O1,A,2026-09-01T10:00:00Z,P2,2,12.5
O2,B,2026-09-02T10:00:00Z,P1,1,40
O2,B,2026-09-02T10:00:00Z,P2,1,12.5
O3,C,2026-09-03T10:00:00Z,P1,1,40
O3,C,2026-09-03T10:00:00Z,P2,1,12.5
O4,D,2026-09-04T10:00:00Z,P1,1,40
O4,D,2026-09-04T10:00:00Z,P3,1,30
"""
PRODUCTS = """product_id,title,category,price,url,image_url
P1,Trail runner,shoes,40,https://www.runshop.example/p/trail,https://www.runshop.example/i/trail.jpg
P2,Wool socks,socks,12.5,https://www.runshop.example/p/socks,
P3,Road runner,shoes,30,https://www.runshop.example/p/road,
P4,Race flat,shoes,70,https://www.runshop.example/p/flat,
"""
CUSTOMERS = (
    "customer_id,email,first_name,language,timezone\nA,a@example.com,Marie,fr-FR,Europe/Paris\n"
)
EVENTS = """customer_id,type,occurred_at,product_id
A,add_to_cart,2026-10-20T09:00:00Z,P4
A,product_view,2026-10-21T09:00:00Z,P3
"""


def test_preview_a_real_contact(cli: CliRunner, home: Home, tmp_path: Path) -> None:
    for kind, text in (
        ("products", PRODUCTS),
        ("customers", CUSTOMERS),
        ("orders", ORDERS),
        ("events", EVENTS),
    ):
        (tmp_path / f"{kind}.csv").write_text(text)
        result = cli.invoke(app, ["import", kind, str(tmp_path / f"{kind}.csv")])
        assert result.exit_code == 0, result.output
    now = ["--now", "2026-11-01T09:00:00Z"]
    assert cli.invoke(app, [*now, "score", "--as-of", "2026-11-01"]).exit_code == 0
    result = cli.invoke(
        app, [*now, "messages", "preview", "cart_reminder", "--contact", "A", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["language"] == "fr"  # "fr-FR" on the contact
    assert data["variant"] == "neutral"  # too little behaviour for a style
    assert data["url"] == "https://www.runshop.example/cart"
    assert "Race flat" in data["text"] and "70,00\u00a0€" in data["text"]
    assert "Marie" in data["text"]
    thanks = cli.invoke(
        app,
        [
            *now,
            "messages",
            "preview",
            "thank_you",
            "--contact",
            "a@example.com",
            "--lang",
            "en",
            "--json",
        ],
    )
    text = json.loads(thanks.stdout)["text"]
    assert "Your order of 1 September 2026" in text
    assert "Trail runner" in text and "Wool socks" in text and "€65.00" in text
    missing = cli.invoke(app, ["messages", "preview", "thank_you", "--contact", "nobody"])
    assert missing.exit_code == 2 and "no contact" in missing.stderr
    upgrade = cli.invoke(app, [*now, "messages", "preview", "up_sell", "--contact", "A", "--json"])
    data = json.loads(upgrade.stdout)
    assert data["url"] == "https://www.runshop.example/p/flat"  # dearer, same category
    assert "Trail runner" in data["text"]  # what they chose, named in the copy
    browse = cli.invoke(
        app, [*now, "messages", "preview", "browse_reminder", "--contact", "A", "--json"]
    )
    data = json.loads(browse.stdout)
    assert data["url"] == "https://www.runshop.example/p/road"  # the last product viewed
    assert "Trail runner" in data["text"].split("Road runner", 1)[1]  # recommended with it
