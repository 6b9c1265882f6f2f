"""The survey emails (check_in, nps_survey, winback_survey) render in every language and
style with a button per answer, each its own signed link; other intents carry none."""

from __future__ import annotations

from functools import cache

import markupsafe
import pytest

from reengage.config import LANGUAGES
from reengage.messages.copy import sample_context
from reengage.messages.intents import VARIANTS
from reengage.messages.render import Links, Renderer
from reengage.surveys import BY_INTENT, LABELS, answer_label


@cache
def renderer() -> Renderer:
    return Renderer()


def links() -> Links:
    return Links(
        unsubscribe="https://r.example/l/u/T",
        preferences="https://r.example/l/p/T",
        survey=lambda survey, answer: f"https://r.example/l/s/{survey}-{answer}",
    )


@pytest.mark.parametrize("intent", sorted(BY_INTENT))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_survey_email_has_its_answer_buttons(intent: str, language: str) -> None:
    survey = BY_INTENT[intent]
    for variant in VARIANTS:
        for sparse in (False, True):
            context = sample_context(language, sparse=sparse)
            rendered = renderer().render(intent, variant, language, context, links())
            html, text = rendered.html, rendered.text
            prompt = LABELS[language][survey.id]["prompt"]
            assert str(markupsafe.escape(prompt)) in html and prompt in text
            assert html.count('class="answer"') == len(survey.answers), (variant, sparse)
            for answer in survey.answers:
                url = f"https://r.example/l/s/{survey.id}-{answer}"
                label = answer_label(language, survey, answer)
                assert f'href="{url}"' in html
                assert str(markupsafe.escape(label)) in html
                assert f"- {label}: {url}" in text
            if survey.numeric:
                assert LABELS[language]["nps"]["low"] in text


def test_without_survey_links_a_preview_shows_the_buttons_leading_nowhere() -> None:
    plain = Links(unsubscribe="u", preferences="p")
    rendered = renderer().render("nps_survey", None, "en", sample_context("en"), plain)
    assert rendered.html.count('class="answer"') == 11
    assert 'href="#"' in rendered.html


def test_other_intents_carry_no_answers() -> None:
    rendered = renderer().render("cart_reminder", None, "en", sample_context("en"), links())
    assert 'class="answer"' not in rendered.html and "/l/s/" not in rendered.text
