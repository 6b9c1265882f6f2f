"""One-click answers to the surveys in messages (`reengage.surveys`, docs/surveys.md).

Each answer button of a message is a link `/l/s/<token>`, the token signed for the purpose
`survey` with the contact, the message, the survey and the answer: ids and the answer only.
Build them with `survey_url`.

- `GET /l/s/<token>` from a person records the answer and shows a thank-you page in the
  contact's language. A fetch that looks automatic (`links.machine_reason`: Apple's proxy, a
  scanner within a minute of sending) records nothing and shows the answer with a button
  that POSTs it: mail scanners fetch every link of a message, and must not answer for anyone.
- `POST /l/s/<token>` (that button) records the answer. No CSRF token: the token in the
  address is itself the secret, as for unsubscribing.
- A bad token, or one for a contact who is gone, is a 404 page.

Recording: the answer goes on the contact (committed first), then, for a negative answer, to
the support webhook, then into the events facts as a `survey_answer` event (which also says
whether support was reached). The same answer to the same message again records nothing new.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from reengage.config import Settings
from reengage.messages.tokens import sign
from reengage.surveys import (
    SURVEYS,
    Respondent,
    answer_label,
    is_answer,
    record_event,
    route_to_support,
    store_answer,
)
from reengage.web import pages
from reengage.web.app import WebContext, web_context
from reengage.web.links import _html, _not_found, _payload, find_target, machine_reason

log = logging.getLogger(__name__)


def survey_path(
    settings: Settings, message_id: int | None, contact_id: int, survey: str, answer: str
) -> str:
    if not is_answer(survey, answer):
        raise ValueError(f"{answer!r} is not an answer to the survey {survey!r}")
    payload: dict[str, Any] = {"c": contact_id, "s": survey, "a": answer}
    if message_id is not None:
        payload["m"] = message_id
    return f"/l/s/{sign(settings.secret(), 'survey', payload)}"


def survey_url(
    settings: Settings, message_id: int | None, contact_id: int, survey: str, answer: str
) -> str:
    """The one-click link that answers `survey` with `answer` for a contact's message."""
    return settings.public_url + survey_path(settings, message_id, contact_id, survey, answer)


def _answer_view(
    ctx: WebContext, payload: dict[str, Any], record: bool, agent: str | None, path: str
) -> str | None:
    """The page for an answer link; records the answer when `record` (a POST) or when a GET
    looks like a person's."""
    now = ctx.clock.now()
    settings = ctx.settings
    survey = SURVEYS[payload["s"]]
    answer: str = payload["a"]
    message_id = payload.get("m")
    with ctx.engine.begin() as conn:
        target = find_target(conn, payload, lock=True)
        if target is None:
            return None
        if not record:
            sent_at = target.message.sent_at if target.message else None
            record = machine_reason(agent, sent_at, now) is None
        stored = (
            store_answer(conn, target.person.id, survey, answer, message_id, now)
            if record
            else None
        )
    person = target.person
    lang = pages.language_for(person.language, settings.language)
    if stored is not None and stored.changed:
        extra: dict[str, Any] = {}
        if stored.negative:
            respondent = Respondent(
                person.id, person.customer_id, person.email, person.first_name, person.language
            )
            extra["support"] = route_to_support(
                settings, respondent, survey, answer, message_id, now, stored.paused_until
            )
        try:
            record_event(
                settings, person.id, person.customer_id, survey, answer, message_id, now, extra
            )
        except Exception as exc:  # the answer is on the contact: never an error page for this
            log.error("could not record a survey answer of message %s: %r", message_id, exc)
    return pages.survey_page(
        lang,
        shop=settings.shop_name,
        first_name=person.first_name,
        answer=answer_label(lang, survey, answer),
        action=path,
        state="ask" if stored is None else "done",
        negative=answer in survey.negative,
    )


async def answer(request: Request) -> Response:
    """GET: record (a person) or ask to confirm (a machine). POST: record."""
    ctx = web_context(request)
    payload = _payload(ctx, "survey", request.path_params["token"])
    if payload is None or not is_answer(payload.get("s"), payload.get("a")):
        return _not_found(ctx)
    record = request.method == "POST"
    # a HEAD (a link checker) has no user agent here: it looks automatic, records nothing
    agent = request.headers.get("user-agent") if request.method == "GET" else None
    body = await run_in_threadpool(_answer_view, ctx, payload, record, agent, request.url.path)
    return _not_found(ctx) if body is None else _html(body)


def routes() -> list[BaseRoute]:
    # a Route of its own, listed before the `/l` mount of `links` (a mount answers 404 for
    # every path under it that none of its routes match)
    return [Route("/l/s/{token}", answer, methods=["GET", "POST"])]
