"""Rendering one message: subject, preheader, HTML and text email, SMS and push, from the copy
of an intent in a style and language and the context of one contact.

How the email is made, and why it is fast: `layout.mjml` is MJML with Jinja tags in it. It is
compiled to HTML by mrml once per process — Jinja tags pass through MJML untouched, which is
checked when it is compiled — and the resulting HTML is a Jinja template, rendered per message
with autoescape. Copy renders to plain text in the sandbox (`copy.environment`), so whatever a
contact's name or a product title holds is escaped on its way into the HTML. The text part
renders `layout.txt` from the same copy and blocks.

    renderer = Renderer(Catalogue.for_settings(settings))
    rendered = renderer.render("cart_reminder", "go_getter", "en", context, links)

A campaign's own text for some fields (`overrides`, {field: template}) replaces those fields of
the intent's copy; it renders in the same sandbox, with the same context, compiled once per
text (`LanguageCopy.override`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import markupsafe
import mrml
from jinja2 import Environment, StrictUndefined
from jinja2 import Template as JinjaTemplate

from reengage.messages.context import Context
from reengage.messages.copy import Catalogue, Variant
from reengage.messages.intents import FIELDS, INTENTS, Intent, UnknownName, variant_for
from reengage.surveys import BY_INTENT, Survey, answer_label
from reengage.surveys import LABELS as SURVEY_LABELS

HERE = Path(__file__).parent

# the words the layout itself writes, per language
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "quantity": "Qty",
        "total": "Total",
        "your_code": "Your code",
        "enter_code": "Enter it at checkout",
        "valid_until": "valid until",
        "order_of": "Your order of",
        "recommended": "You might also like",
        "sent_by": "This email comes from",
        "unsubscribe": "Unsubscribe",
        "preferences": "Email preferences",
    },
    "it": {
        "quantity": "Qtà",
        "total": "Totale",
        "your_code": "Il tuo codice",
        "enter_code": "Inseriscilo al momento del pagamento",
        "valid_until": "valido fino al giorno",  # "al giorno": no "all'8", "all'11"
        "order_of": "Il tuo ordine ·",
        "recommended": "Potrebbero piacerti anche",
        "sent_by": "Questa email ti arriva da",
        "unsubscribe": "Annulla l'iscrizione",
        "preferences": "Preferenze email",
    },
    "fr": {
        "quantity": "Qté",
        "total": "Total",
        "your_code": "Votre code",
        "enter_code": "À saisir lors du paiement",
        "valid_until": "valable jusqu’au",  # "jusqu’au 1er décembre", "jusqu’au 8 décembre"
        "order_of": "Votre commande du",
        "recommended": "Vous aimerez aussi",
        "sent_by": "Cet e-mail vous est envoyé par",
        "unsubscribe": "Se désabonner",
        "preferences": "Préférences e-mail",
    },
}

# the button and accent colour of each variant (white text on each passes WCAG AA)
ACCENTS = {
    "go_getter": "#b3261e",
    "promoter": "#8a2f9f",
    "nurturer": "#2e6b4e",
    "examiner": "#1f4e79",
    "neutral": "#2f3b45",
}


@dataclass(frozen=True)
class Links:
    """The links a message carries that the caller makes (signed, per contact and message).

    `cta` overrides where the button points (by default the intent's target in the context);
    `track`, when given, wraps every link to the shop (button, products, cart) for click
    tracking. The unsubscribe and preferences links are used as given. `survey` makes the
    one-click answer links of a survey intent's email, `survey(survey_id, answer)`; without
    it (a preview) the answer buttons lead nowhere (`#`).
    """

    unsubscribe: str
    preferences: str
    cta: str | None = None
    track: Callable[[str], str] | None = None
    survey: Callable[[str, str], str] | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message in every channel's form. `url` is where the button, the SMS link and a
    click on the push notification lead; the SMS channel adds it and the opt-out line."""

    subject: str
    preheader: str
    html: str
    text: str
    sms: str
    push_title: str
    push_body: str
    url: str

    @property
    def sms_with_link(self) -> str:
        """The SMS with its link at the end (unless the copy already wrote it)."""
        return self.sms if self.url in self.sms else f"{self.sms} {self.url}"


@dataclass(frozen=True, slots=True)
class Paragraph:
    lines: tuple[str, ...]
    bullets: bool

    @property
    def html(self) -> tuple[str | markupsafe.Markup, ...]:
        """The lines for HTML: web addresses and email addresses made links."""
        return tuple(_autolink(line) for line in self.lines)


_LINKABLE = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _autolink(text: str) -> str | markupsafe.Markup:
    if "@" not in text and "://" not in text:
        return text  # escaped by the layout
    parts: list[str] = []
    last = 0
    for match in _LINKABLE.finditer(text):
        target = match.group(0)
        href = target if "://" in target else f"mailto:{target}"
        parts.append(markupsafe.escape(text[last : match.start()]))
        parts.append(markupsafe.Markup('<a href="{}">{}</a>').format(href, target))
        last = match.end()
    parts.append(markupsafe.escape(text[last:]))
    return markupsafe.Markup("").join(parts)


_BLANK = re.compile(r"\n[ \t]*\n")


def paragraphs(body: str) -> list[Paragraph]:
    """Body text to paragraphs: blank lines separate them; a paragraph whose every line starts
    with "- " is a list. Paragraphs that rendered empty (a false `{% if %}`) are dropped."""
    found = []
    for chunk in _BLANK.split(body.strip()):
        lines = [line.strip() for line in chunk.strip().split("\n") if line.strip()]
        if not lines:
            continue
        if all(line.startswith("- ") for line in lines):
            found.append(Paragraph(tuple(line[2:].strip() for line in lines), True))
        else:
            found.append(Paragraph(tuple(lines), False))
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Layout:
    """The email layouts, HTML (from MJML) and text, compiled once and shared by every message.

    What only depends on the variant and the language (the accent colour, the layout's own
    words) is written into a copy of the template per variant and language, so that a
    message's render only fills in what is its own.
    """

    def __init__(self, mjml_source: str, text_source: str) -> None:
        self.html_source = _compile_mjml(mjml_source)
        self.text_source = text_source
        options: dict[str, Any] = {"undefined": StrictUndefined, "auto_reload": False}
        self._html_env = Environment(autoescape=True, **options)
        self._text_env = Environment(
            autoescape=False, trim_blocks=True, lstrip_blocks=True, **options
        )
        self._html: dict[tuple[str, str], JinjaTemplate] = {}
        self._text: dict[str, JinjaTemplate] = {}

    def html(self, variant: str, language: str) -> JinjaTemplate:
        found = self._html.get((variant, language))
        if found is None:
            source = _bake(self.html_source, language, ACCENTS[variant], escape=True)
            found = self._html[(variant, language)] = self._html_env.from_string(source)
        return found

    def text(self, language: str) -> JinjaTemplate:
        found = self._text.get(language)
        if found is None:
            source = _bake(self.text_source, language, "", escape=False)
            found = self._text[language] = self._text_env.from_string(source)
        return found


def _bake(source: str, language: str, accent: str, *, escape: bool) -> str:
    labels = LABELS.get(language, LABELS["en"])

    def label(match: re.Match[str]) -> str:
        word = labels[match.group(1)]
        return str(markupsafe.escape(word)) if escape else word

    source = re.sub(r"\{\{ labels\.(\w+) \}\}", label, source)
    return source.replace("{{ accent }}", accent).replace("{{ language }}", language)


_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _compile_mjml(source: str) -> str:
    """MJML to HTML with the Jinja tags intact (checked: none lost, moved into a new one or
    repeated, except expressions MJML writes twice, like the title)."""
    html: str = mrml.to_html(source).content
    before, after = _TAG.findall(source), _TAG.findall(html)
    statements = [t for t in before if t.startswith("{%")]
    if statements != [t for t in after if t.startswith("{%")] or set(before) != set(after):
        raise RuntimeError("the MJML compiler changed the Jinja tags of the email layout")
    return html


@cache
def default_layout() -> Layout:
    return Layout(
        (HERE / "layout.mjml").read_text(encoding="utf-8"),
        (HERE / "layout.txt").read_text(encoding="utf-8"),
    )


class Renderer:
    """Renders messages from one catalogue of copy; safe to share between threads."""

    def __init__(self, catalogue: Catalogue | None = None, layout: Layout | None = None):
        self.catalogue = catalogue or Catalogue()
        self.layout = layout or default_layout()
        self._variants: dict[tuple[str, str, str], Variant] = {}

    def variant(self, intent: str, variant: str, language: str) -> Variant:
        """The compiled copy of one intent in one variant and language."""
        key = (intent, variant, language)
        found = self._variants.get(key)
        if found is None:
            found = self._variants[key] = self.catalogue.copy(language).variant(intent, variant)
        return found

    def render(
        self,
        intent: str,
        style: str | None,
        language: str,
        context: Context,
        links: Links,
        overrides: Mapping[str, str] | None = None,
        overrides_from: str = "payload copy",
    ) -> Rendered:
        """The message `intent` in the copy for `style` (a scored style, a variant, or
        unknown/None for neutral) and `language`, personalised with `context`.

        `overrides` ({field: template}) replace those fields of the copy; their errors name
        `overrides_from` and the field: "campaign copy (subject): 'frist_name' is undefined".
        """
        copy = self.prepare(intent, style, language, context, links, overrides, overrides_from)
        values = copy.values
        values["paragraphs"] = copy.paragraphs
        html = self.layout.html(copy.variant, language).render(values)
        values["paragraphs"] = ["\n".join(_text_lines(p)) for p in copy.paragraphs]
        text = self.layout.text(language).render(values)
        return Rendered(
            subject=values["subject"],
            preheader=values["preheader"],
            html=html,
            text=text.strip() + "\n",
            sms=copy.sms,
            push_title=copy.push_title,
            push_body=copy.push_body,
            url=values["cta_url"],
        )

    def prepare(
        self,
        intent: str,
        style: str | None,
        language: str,
        context: Context,
        links: Links,
        overrides: Mapping[str, str] | None = None,
        overrides_from: str = "payload copy",
    ) -> Prepared:
        """The copy rendered and the values the layouts need: everything but the layouts."""
        spec = INTENTS.get(intent)
        if spec is None:
            raise UnknownName(f"unknown intent {intent!r} (known: {', '.join(INTENTS)})")
        variant = variant_for(style)
        copy = self.variant(intent, variant, language)
        variables = context.variables()
        if overrides:
            own = self.catalogue.copy(language).render_overrides(
                overrides, variables, overrides_from
            )
            texts = [
                own.get(f, t) for f, t in zip(FIELDS, copy.render(variables, own), strict=True)
            ]
        else:
            texts = copy.render(variables)
        subject, preheader, heading, body, cta, sms, push_title, push_body = texts
        url = links.cta or cta_target(spec, context, links)
        blocks = spec.blocks
        values = {
            **variables,
            "shop_link": context.shop_url,
            "subject": _one_line(subject),
            "preheader": _one_line(preheader),
            "heading": _one_line(heading),
            "cta": _one_line(cta),
            "unsubscribe_url": links.unsubscribe,
            "preferences_url": links.preferences,
            "show_cart": "cart" in blocks and bool(context.cart),
            "show_order": "order" in blocks and context.last_order is not None,
            "show_product": "product" in blocks and context.product is not None,
            "show_recommendations": "recommendations" in blocks and bool(context.products),
            "show_offer": "offer" in blocks and context.offer is not None,
            "survey": _survey(BY_INTENT.get(intent), language, links),
        }
        if links.track is not None:
            url = links.track(url)
            values.update(_tracked(context, links.track))
        values["cta_url"] = url
        return Prepared(
            variant,
            values,
            paragraphs(body),
            _one_line(sms),
            _one_line(push_title),
            _one_line(push_body),
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message before its layouts: the copy rendered, the layouts' values ready."""

    variant: str
    values: dict[str, Any]
    paragraphs: list[Paragraph]
    sms: str
    push_title: str
    push_body: str


def _tracked(context: Context, track: Callable[[str], str]) -> dict[str, Any]:
    """The context's links to the shop, each wrapped for click tracking."""

    def item(i: Any) -> Any:
        return dataclasses.replace(i, url=track(i.url)) if i.url else i

    return {
        "shop_link": track(context.shop_url),
        "cart": tuple(item(i) for i in context.cart),
        "product": item(context.product) if context.product is not None else None,
        "products": tuple(item(p) for p in context.products),
    }


def _survey(survey: Survey | None, language: str, links: Links) -> dict[str, Any] | None:
    """The answer buttons of a survey intent's email: a line above them, one button per
    answer (for NPS, 0 to 10 and what the ends mean)."""
    if survey is None:
        return None
    lang = language if language in SURVEY_LABELS else "en"
    words = SURVEY_LABELS[lang][survey.id]
    answers = [
        {
            "label": answer_label(lang, survey, answer),
            "url": links.survey(survey.id, answer) if links.survey is not None else "#",
        }
        for answer in survey.answers
    ]
    scale = f"{words['low']} · {words['high']}" if survey.numeric else ""
    return {"id": survey.id, "prompt": words["prompt"], "answers": answers, "scale": scale}


def _text_lines(p: Paragraph) -> tuple[str, ...]:
    return tuple(f"- {line}" for line in p.lines) if p.bullets else p.lines


def cta_target(spec: Intent, context: Context, links: Links) -> str:
    """Where an intent's button leads, from what the context holds."""
    variables = context.variables()
    if spec.cta == "cart":
        return str(variables["cart_url"])
    first = context.products[0].url if context.products else ""
    if spec.cta == "product":
        main = context.product.url if context.product is not None else ""
        return main or first or context.shop_url
    if spec.cta == "recommendation":
        # never the main product: for cross_sell it is what they already bought, for up_sell
        # and down_sell what they chose or looked at; with nothing to recommend, the shop
        return first or context.shop_url
    if spec.cta == "review":
        return str(variables["review_url"])
    if spec.cta == "help":
        return str(variables["help_url"])
    if spec.cta == "preferences":
        return links.preferences
    return context.shop_url


_default: Renderer | None = None


def render(
    intent: str,
    style: str | None,
    language: str,
    context: Context,
    links: Links,
    overrides: Mapping[str, str] | None = None,
    overrides_from: str = "payload copy",
) -> Rendered:
    """`Renderer.render` with the packaged copy (no home overrides) and EUR prices."""
    global _default
    if _default is None:
        _default = Renderer()
    return _default.render(intent, style, language, context, links, overrides, overrides_from)
