"""The copy files: complete in every language, within limits, and overridable by a shop, with
mistakes reported by file, line, field and name before anything is sent."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reengage.config import LANGUAGES
from reengage.errors import InputError
from reengage.messages import context as ctx
from reengage.messages.copy import PACKAGED, Catalogue, CopyError, TemplateError, sample_context
from reengage.messages.intents import FIELDS, INTENTS, LIMITS, VARIANTS, variant_for


@cache
def shipped() -> Catalogue:
    return Catalogue()


def _yaml_keys(language: str) -> set[tuple[str, str, str]]:
    import yaml

    data = yaml.safe_load((PACKAGED / f"{language}.yaml").read_text(encoding="utf-8"))
    return {
        (i, v, f) for i, variants in data.items() for v, fields in variants.items() for f in fields
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_every_intent_style_and_field(language: str) -> None:
    expected = {(i, v, f) for i in INTENTS for v in VARIANTS for f in FIELDS}
    assert _yaml_keys(language) == expected
    copy = shipped().copy(language)  # compiles, checks names, renders both samples
    assert set(copy.variants) == {(i, v) for i in INTENTS for v in VARIANTS}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("sparse", [False, True], ids=["full", "sparse"])
def test_sms_and_push_fit_their_limits(language: str, sparse: bool) -> None:
    variables = sample_context(language, sparse=sparse).variables()
    copy = shipped().copy(language)
    too_long = []
    for (intent, variant), compiled in copy.variants.items():
        parts = dict(zip(FIELDS, compiled.render(variables), strict=True))
        for field, limit in LIMITS.items():
            text = " ".join(parts[field].split())
            if not text or len(text) > limit:
                too_long.append(f"{intent}.{variant}.{field}: {len(text)} > {limit}: {text}")
    assert not too_long, "\n".join(too_long)


def test_incentive_copy_speaks_of_an_offer_only_when_there_is_one() -> None:
    full, sparse = (sample_context("en", sparse=s).variables() for s in (False, True))
    code = sample_context("en").offer.code  # type: ignore[union-attr]
    copy = shipped().copy("en")
    for (intent, _), compiled in copy.variants.items():
        without = " ".join(compiled.render(sparse))
        assert code not in without
        if INTENTS[intent].incentive:
            assert code in " ".join(compiled.render(full)), intent
    for intent in ("thank_you", "check_in"):  # service messages never sell
        for variant in VARIANTS:
            assert code not in " ".join(copy.variant(intent, variant).render(full))


# a Jinja tag that uses the name `products`
_USES_PRODUCTS = r"\{[{%][^}]*\bproducts\b[^}]*[}%]\}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_copy_speaks_of_recommendations_only_where_the_email_shows_them(language: str) -> None:
    """An intent whose email has no grid of recommendations must not say "below" about them:
    its templates never use `products`."""
    import yaml

    data = yaml.safe_load((PACKAGED / f"{language}.yaml").read_text(encoding="utf-8"))
    found = [
        f"{intent}.{variant}.{field}"
        for intent, variants in data.items()
        if "recommendations" not in INTENTS[intent].blocks
        for variant, fields in variants.items()
        for field, text in fields.items()
        if re.search(_USES_PRODUCTS, text)
    ]
    assert not found, found


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_body_line_loses_its_line_break_to_a_tag(language: str) -> None:
    """trim_blocks eats the line break after a tag that ends a line: a line of text ending in
    `{% endif %}` would be glued to the next one (a list item to the next, two paragraphs into
    one). A tag may end a line only when it is alone on it, or on the body's last line."""
    import yaml

    data = yaml.safe_load((PACKAGED / f"{language}.yaml").read_text(encoding="utf-8"))
    glued = []
    for intent, variants in data.items():
        for variant, fields in variants.items():
            lines = fields["body"].rstrip("\n").split("\n")
            for line in lines[:-1]:
                text = line.strip()
                if text.endswith("%}") and not re.fullmatch(r"\{%[^%]*%\}", text):
                    glued.append(f"{intent}.{variant}: {text[-50:]}")
    assert not glued, glued


def test_unknown_style_falls_back_to_neutral() -> None:
    assert variant_for("unknown") == variant_for(None) == "neutral"
    assert variant_for("examiner") == "examiner"
    with pytest.raises(InputError, match="unknown style 'bossy'"):
        variant_for("bossy")


# --- a shop's overrides -----------------------------------------------------------------


def _override(tmp_path: Path, text: str, language: str = "en") -> Catalogue:
    folder = tmp_path / "messages" / "copy"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{language}.yaml").write_text(text, encoding="utf-8")
    return Catalogue(tmp_path)


def _error(tmp_path: Path, text: str) -> str:
    catalogue = _override(tmp_path, text)
    with pytest.raises(CopyError) as caught:
        catalogue.copy("en")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_partial_override_replaces_only_what_it_names(tmp_path: Path) -> None:
    catalogue = _override(
        tmp_path,
        'cart_reminder:\n  examiner:\n    subject: "{{ shop_name }}: {{ cart_count }} saved"\n',
    )
    variables = sample_context("en").variables()
    mine = catalogue.copy("en").variant("cart_reminder", "examiner").render(variables)
    theirs = shipped().copy("en").variant("cart_reminder", "examiner").render(variables)
    assert mine[0] == "Northwind Goods: 3 saved"
    assert mine[1:] == theirs[1:]
    other = catalogue.copy("en").variant("cart_reminder", "nurturer").render(variables)
    assert other == shipped().copy("en").variant("cart_reminder", "nurturer").render(variables)


def test_an_undefined_name_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        '# my copy\ncart_reminder:\n  go_getter:\n    subject: "Hi {{ frist_name }}"\n',
    )
    path = tmp_path / "messages" / "copy" / "en.yaml"
    assert message == f"{path} line 4 (cart_reminder.go_getter.subject): 'frist_name' is undefined"


def test_a_line_inside_a_body_is_found(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        "thank_you:\n  nurturer:\n    body: |\n      Hello,\n\n      Your {{ ordr.total }}.\n",
    )
    assert message.endswith("line 6 (thank_you.nurturer.body): 'ordr' is undefined")


def test_a_syntax_error_names_its_line(tmp_path: Path) -> None:
    message = _error(
        tmp_path, "check_in:\n  examiner:\n    body: |\n      One\n      {% if offer %}two\n"
    )
    assert "line 5 (check_in.examiner.body): Unexpected end of template" in message
    assert "'endif'" in message


def test_a_wrong_attribute_is_found_by_rendering_the_samples(tmp_path: Path) -> None:
    message = _error(tmp_path, 'review_request:\n  neutral:\n    heading: "{{ product.titel }}"\n')
    assert message.endswith(
        "line 3 (review_request.neutral.heading): 'Product' has no attribute 'titel'"
    )


def test_copy_that_needs_an_offer_must_say_so(tmp_path: Path) -> None:
    message = _error(tmp_path, 'last_chance:\n  neutral:\n    subject: "Code {{ offer.code }}"\n')
    assert "line 3 (last_chance.neutral.subject):" in message
    assert "code" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cart_remindr:\n  neutral:\n    subject: x\n", "line 2: unknown intent 'cart_remindr'"),
        ("cart_reminder:\n  bossy:\n    subject: x\n", "unknown variant 'bossy'"),
        (
            "cart_reminder:\n  neutral:\n    title: x\n",
            "line 3 (cart_reminder.neutral): unknown field 'title'",
        ),
        (
            "cart_reminder:\n  neutral:\n    subject: [a, b]\n",
            "line 3 (cart_reminder.neutral.subject): must be text",
        ),
        ('cart_reminder:\n  neutral:\n    subject: "x\n', "not valid YAML"),
        ("- a list\n", "line 1: expected intents as keys"),
        (
            'check_in:\n  neutral:\n    subject: "{{ shop_name | shout }}"\n',
            "line 3 (check_in.neutral.subject): no filter named 'shout'",
        ),
        (
            'check_in:\n  neutral:\n    heading: "{{ shop_name.__class__ }}"\n',
            "line 3 (check_in.neutral.heading): access to attribute '__class__'",
        ),
    ],
)
def test_shape_mistakes_are_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_too_long_texts_are_listed_not_fatal(tmp_path: Path) -> None:
    catalogue = _override(tmp_path, 'cart_reminder:\n  neutral:\n    sms: "' + "x" * 141 + '"\n')
    assert catalogue.copy("en").too_long == [
        f"{tmp_path / 'messages/copy/en.yaml'} line 3 (cart_reminder.neutral.sms): "
        "141 characters with sample values, more than the 140 a sms may have"
    ]


def test_an_empty_override_changes_nothing(tmp_path: Path) -> None:
    catalogue = _override(tmp_path, "# nothing yet\n")
    variables = sample_context("en").variables()
    assert catalogue.copy("en").variant("thank_you", "neutral").render(variables) == (
        shipped().copy("en").variant("thank_you", "neutral").render(variables)
    )


def test_a_render_error_names_the_field(tmp_path: Path) -> None:
    catalogue = _override(
        tmp_path, 'cart_help:\n  promoter:\n    push_title: "{{ cart[0].title }}"\n'
    )
    empty = ctx.Context(shop_name="S", shop_url="https://s.example")
    with pytest.raises(TemplateError, match=r"line 3 \(cart_help\.promoter\.push_title\): "):
        catalogue.copy("en").variant("cart_help", "promoter").render(empty.variables())


# --- how values are written -------------------------------------------------------------


def test_money_in_each_language() -> None:
    assert ctx.format_money(1234.5, "EUR", "en") == "€1,234.50"
    assert ctx.format_money(1234.5, "EUR", "it") == "€\u00a01.234,50"
    assert ctx.format_money(1234.5, "EUR", "fr") == "1\u202f234,50\u00a0€"
    assert ctx.format_money(12, "GBP", "en") == "£12.00"
    assert ctx.format_money(12, "CHF", "en") == "CHF\u00a012.00"
    assert ctx.format_money(1500, "JPY", "en") == "¥1,500"
    assert ctx.format_money(Decimal("0.005"), "EUR", "en") == "€0.01"


def test_dates_and_discounts_in_each_language() -> None:
    day = date(2026, 12, 3)
    assert [ctx.format_date(day, lang) for lang in LANGUAGES] == [
        "3 December 2026",
        "3 dicembre 2026",
        "3 décembre 2026",
    ]
    assert ctx.format_date(date(2026, 12, 1), "fr") == "1er décembre 2026"
    moment = datetime.fromisoformat("2026-12-03T17:00:00+00:00")
    assert ctx.format_datetime(moment, "it", "Europe/Rome") == "3 dicembre 2026, 18:00"
    assert ctx.format_datetime(moment, "fr", "Europe/Paris") == "3 décembre 2026 à 18:00"
    assert ctx.format_discount("percent", Decimal("10.00"), "EUR", "en") == "10%"
    assert ctx.format_discount("percent", 12.5, "EUR", "fr") == "12,5\u00a0%"
    assert ctx.format_discount("amount", 5, "EUR", "en") == "€5.00"
    assert ctx.format_discount("free_shipping", 0, "EUR", "it") == "spedizione gratuita"


@given(
    st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False),
    st.sampled_from(LANGUAGES),
)
def test_money_reads_back_as_the_amount(amount: Decimal, language: str) -> None:
    text = ctx.format_money(amount, "EUR", language)
    digits = text.replace("€", "").replace("\u00a0", "").replace("\u202f", "")
    if language == "en":
        digits = digits.replace(",", "")
    else:
        digits = digits.replace(".", "").replace(",", ".")
    assert Decimal(digits) == amount


@given(st.text(max_size=40))
def test_a_context_survives_the_outbox_payload(name: str) -> None:
    import json

    context = ctx.Context(**{**sample_context("en").variables(), "first_name": name})
    again = ctx.Context.from_payload(json.loads(json.dumps(context.to_payload())))
    assert again == context
    assert again.variables() == context.variables()
