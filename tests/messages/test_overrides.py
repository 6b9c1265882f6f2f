"""A campaign's own copy: some fields of an intent's copy replaced by the campaign's text,
rendered in the same sandbox and context, checked like the shipped copy, compiled once."""

from __future__ import annotations

import dataclasses
from functools import cache

import markupsafe
import pytest

from reengage.errors import InputError
from reengage.messages.copy import Catalogue, CopyError, TemplateError, check_overrides
from reengage.messages.intents import FIELDS
from reengage.messages.render import Links, Renderer
from reengage.messages.samples import sample_context as sample

LINKS = Links(unsubscribe="https://r.example/u/T", preferences="https://r.example/p/T")
WHERE = "campaign copy"


@cache
def renderer() -> Renderer:
    return Renderer(Catalogue())


def test_an_overridden_subject_replaces_only_the_subject() -> None:
    context = sample("en")
    base = renderer().render("newsletter", "examiner", "en", context, LINKS)
    mine = renderer().render(
        "newsletter",
        "examiner",
        "en",
        context,
        LINKS,
        overrides={"subject": "New in at {{ shop_name }}: the winter collection"},
    )
    assert mine.subject == "New in at Northwind Goods: the winter collection"
    assert f"<title>{markupsafe.escape(mine.subject)}</title>" in mine.html
    # everything else is the intent's copy
    assert mine.text == base.text
    for name in ("preheader", "sms", "push_title", "push_body", "url"):
        assert getattr(mine, name) == getattr(base, name)
    assert mine.html.replace(mine.subject, base.subject) == base.html


def test_heading_body_and_channels_can_be_the_campaigns_own() -> None:
    overrides = {
        "heading": "Winter is here",
        "body": "Our winter collection has landed.\n\n- Wool\n- Cashmere\n\nSee you soon!",
        "cta": "See the collection",
        "sms": "{{ shop_name }}:   winter\nis here.",
        "push_title": "Winter is here ❄",
    }
    r = renderer().render("newsletter", "nurturer", "fr", sample("fr"), LINKS, overrides)
    assert r.text.startswith("Winter is here\n\nOur winter collection has landed.\n\n- Wool\n")
    assert "See the collection: https://shop.example.com" in r.text
    assert "<li" in r.html and "Cashmere" in r.html
    assert r.sms == "Northwind Goods: winter is here."  # one line, as the copy's
    assert r.push_title == "Winter is here ❄"
    base = renderer().render("newsletter", "nurturer", "fr", sample("fr"), LINKS)
    assert r.subject == base.subject and r.push_body == base.push_body
    assert "Sac week-end en toile cirée" in r.html  # the intent's blocks stay


def test_a_guarded_first_name_reads_with_and_without_one() -> None:
    overrides = {
        "subject": "{% if first_name %}{{ first_name }}, winter{% else %}Winter{% endif %} is here",
        "heading": "{{ first_name or 'Hello' }}!",
    }
    check_overrides(overrides, "en", where=WHERE)
    full = renderer().render("newsletter", None, "en", sample("en"), LINKS, overrides)
    sparse = renderer().render(
        "newsletter", None, "en", sample("en", sparse=True), LINKS, overrides
    )
    assert full.subject == "Alex, winter is here" and full.text.startswith("Alex!\n")
    assert sparse.subject == "Winter is here" and sparse.text.startswith("Hello!\n")


def test_whatever_the_context_holds_is_escaped_in_html() -> None:
    context = dataclasses.replace(sample("en"), first_name="<b>Al</b>")
    overrides = {"body": "Hi {{ first_name }}, <script>x</script>"}
    r = renderer().render("newsletter", None, "en", context, LINKS, overrides)
    assert "<script>" not in r.html and "<b>Al</b>" not in r.html
    assert markupsafe.escape("Hi <b>Al</b>, <script>x</script>") in r.html


# --- mistakes: one clear line naming where and the field ---------------------------------


def _one_line(caught: pytest.ExceptionInfo[Exception]) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_undefined_name_names_the_field() -> None:
    overrides = {"subject": "Hi {{ frist_name }}"}
    with pytest.raises(TemplateError) as caught:
        check_overrides(overrides, "en", where=WHERE)
    assert _one_line(caught) == "campaign copy (subject): 'frist_name' is undefined"
    with pytest.raises(TemplateError) as caught:
        renderer().render(
            "newsletter", None, "it", sample("it"), LINKS, overrides, overrides_from="payload copy"
        )
    assert _one_line(caught) == "payload copy (subject): 'frist_name' is undefined"


def test_a_syntax_error_names_the_field_and_its_line() -> None:
    overrides = {"body": "Hello,\n\n{% if products %}Our picks are below."}
    with pytest.raises(TemplateError) as caught:
        check_overrides(overrides, "fr", where="campaign winter")
    message = _one_line(caught)
    assert message.startswith("campaign winter (body line 3): Unexpected end of template")
    assert "'endif'" in message


def test_an_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        check_overrides({"title": "Winter"}, "en", where=WHERE)
    assert _one_line(caught) == (
        f"campaign copy: unknown field 'title' (known: {', '.join(FIELDS)})"
    )
    with pytest.raises(InputError, match="unknown field 'title'"):
        renderer().render("newsletter", None, "en", sample("en"), LINKS, {"title": "Winter"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # only the samples' render finds these
        ({"heading": "{{ product.titel }}"}, "(heading): 'Product' has no attribute 'titel'"),
        ({"sms": "Code {{ offer.code }}"}, "(sms): 'None' has no attribute 'code'"),
        ({"body": "{% if products %}Below.{% endif %}"}, "(body): renders empty with the sparse"),
        ({"cta": "{{ shop_name | shout }}"}, "(cta): no filter named 'shout'"),
        ({"cta": "{{ shop_name.__class__ }}"}, "(cta): access to attribute '__class__'"),
        ({"subject": None}, "(subject): must be text"),
    ],
)
def test_the_check_renders_the_full_and_the_sparse_samples(
    overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(CopyError) as caught:
        check_overrides(overrides, "en", where=WHERE)
    assert expected in _one_line(caught)


def test_the_check_uses_the_homes_copy_and_currency() -> None:
    catalogue = Catalogue(currency="GBP")
    check_overrides(
        {
            "body": "From {{ 12.5 | money }}{% if products %}, like the {{ products[0].title }}{% endif %}."
        },
        "en",
        where=WHERE,
        catalogue=catalogue,
    )
    own = catalogue.copy("en").render_overrides(
        {"body": "{{ 12.5 | money }}"}, sample("en", "GBP").variables(), WHERE
    )
    assert own == {"body": "£12.50"}


# --- compiled once ------------------------------------------------------------------------


def test_one_override_is_compiled_once_for_many_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Renderer(Catalogue())
    copy = r.catalogue.copy("it")
    compiled: list[object] = []
    compile = copy.env.compile

    def counting(*args: object, **kwargs: object) -> object:
        compiled.append(args[0])
        return compile(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(copy.env, "compile", counting)
    overrides = {"subject": "Novità da {{ shop_name }} (test {{ 1 + 1 }})"}
    contexts = [sample("it"), sample("it", sparse=True)]
    subjects = {
        r.render("newsletter", variant, "it", contexts[n % 2], LINKS, overrides).subject
        for n in range(200)
        for variant in ("neutral", "promoter")
    }
    assert subjects == {"Novità da Northwind Goods (test 2)"}
    assert len(compiled) == 1
    r.render("newsletter", None, "it", contexts[0], LINKS, {"heading": overrides["subject"]})
    assert len(compiled) == 1  # kept by text, whatever the field
    r.render("newsletter", None, "it", contexts[0], LINKS, {"subject": "Altro"})
    assert len(compiled) == 2
