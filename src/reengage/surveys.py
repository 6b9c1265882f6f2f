"""Surveys answered with one click from a message: the check-in after delivery ("how is it
going?"), NPS ("how likely are you to recommend us?", 0-10) and the win-back "why did you
leave?". docs/surveys.md explains them.

An answer is kept on the contact, in `contacts.attributes`:

    {"surveys": {"nps": {"answer": 9, "at": "2026-11-01T09:30:00+00:00", "message_id": 12}},
     "promotions_paused_until": "2026-12-01T09:30:00+00:00"}

(the latest answer to each survey, readable in segment rules as `checkin`, `nps` and
`left_because`), and as a `survey_answer` event in the events facts. A negative answer
(`Survey.negative`) pauses promotional messages for `PAUSE` (the contact policy blocks them
with reason `paused_after_feedback`) and is posted, signed, to the shop's support webhook.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
from sqlalchemy import Connection, select

from reengage.channels.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, signature_header
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.facts.kinds import EVENTS
from reengage.facts.writer import append
from reengage.state.schema import contacts

log = logging.getLogger(__name__)

# how long promotions stay paused after a negative answer (a constant, not a setting)
PAUSE = timedelta(days=30)
PAUSED_KEY = "promotions_paused_until"
SURVEYS_KEY = "surveys"
EVENT_TYPE = "survey_answer"
SUPPORT_EVENT = "feedback.negative"
SUPPORT_TIMEOUT = 10.0  # seconds: the person is waiting for the thank-you page


@dataclass(frozen=True)
class Survey:
    """One survey: its id (in links, events and attributes), the intent whose email asks it,
    its answers, the answers that are negative, and the segment field that reads the latest
    answer."""

    id: str
    intent: str
    answers: tuple[str, ...]
    negative: frozenset[str]
    field: str
    numeric: bool = False

    def value(self, answer: str) -> str | int:
        """The answer as stored: NPS as a number, the others as text."""
        return int(answer) if self.numeric else answer


NPS_ANSWERS = tuple(str(n) for n in range(11))
WINBACK_REASONS = ("price", "quality", "delivery", "elsewhere", "not_needed", "other")

SURVEYS: dict[str, Survey] = {
    s.id: s
    for s in (
        Survey("checkin", "check_in", ("good", "problem"), frozenset({"problem"}), "checkin"),
        Survey(
            "nps",
            "nps_survey",
            NPS_ANSWERS,
            frozenset(str(n) for n in range(7)),  # detractors: 0-6
            "nps",
            numeric=True,
        ),
        # price, elsewhere, no longer needed and other are information; a product or a
        # delivery that let them down is a complaint support can act on
        Survey(
            "winback",
            "winback_survey",
            WINBACK_REASONS,
            frozenset({"quality", "delivery"}),
            "left_because",
        ),
    )
}
BY_INTENT: dict[str, Survey] = {s.intent: s for s in SURVEYS.values()}

# the words of the answer buttons and of the line above them, per language
LABELS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "checkin": {
            "prompt": "One click to answer:",
            "good": "All good",
            "problem": "I have a problem",
        },
        "nps": {
            "prompt": "How likely are you to recommend us to a friend? One click to answer:",
            "low": "0 = not at all likely",
            "high": "10 = extremely likely",
        },
        "winback": {
            "prompt": "Why did you stop ordering? One click to answer:",
            "price": "Too expensive",
            "quality": "The quality let me down",
            "delivery": "Delivery problems",
            "elsewhere": "I found it elsewhere",
            "not_needed": "I no longer need it",
            "other": "Something else",
        },
    },
    "it": {
        "checkin": {
            "prompt": "Rispondi con un clic:",
            "good": "Tutto bene",
            "problem": "Ho un problema",
        },
        "nps": {
            "prompt": "Quanto è probabile che ci consigli a un amico? Rispondi con un clic:",
            "low": "0 = per niente probabile",
            "high": "10 = estremamente probabile",
        },
        "winback": {
            "prompt": "Perché non hai più ordinato? Rispondi con un clic:",
            "price": "Troppo caro",
            "quality": "La qualità mi ha deluso",
            "delivery": "Problemi di consegna",
            "elsewhere": "L'ho trovato altrove",
            "not_needed": "Non mi serve più",
            "other": "Altro",
        },
    },
    "fr": {
        "checkin": {
            "prompt": "Répondez en un clic :",
            "good": "Tout va bien",
            "problem": "J'ai un problème",
        },
        "nps": {
            "prompt": "Quelle est la probabilité que vous nous recommandiez à un ami ? "
            "Répondez en un clic :",
            "low": "0 = pas du tout probable",
            "high": "10 = très probable",
        },
        "winback": {
            "prompt": "Pourquoi ne commandez-vous plus ? Répondez en un clic :",
            "price": "Trop cher",
            "quality": "La qualité m'a déçu",
            "delivery": "Problèmes de livraison",
            "elsewhere": "Je l'ai trouvé ailleurs",
            "not_needed": "Je n'en ai plus besoin",
            "other": "Autre chose",
        },
    },
}


def answer_label(language: str, survey: Survey, answer: str) -> str:
    """The text of an answer's button: the number for NPS."""
    return answer if survey.numeric else LABELS[language][survey.id][answer]


def is_answer(survey_id: object, answer: object) -> bool:
    return (
        isinstance(survey_id, str)
        and survey_id in SURVEYS
        and isinstance(answer, str)
        and answer in SURVEYS[survey_id].answers
    )


# ---- on the contact --------------------------------------------------------------------


def paused_until(attributes: object) -> datetime | None:
    """When a contact's pause of promotions ends (None: not paused, or unreadable)."""
    if not isinstance(attributes, dict):
        return None
    value = attributes.get(PAUSED_KEY)
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Stored:
    """What storing an answer did: `changed` when it is a new answer (for this survey and
    message), `negative` when it is a negative one, and the end of the pause it set."""

    changed: bool
    negative: bool
    paused_until: datetime | None = None


def store_answer(
    conn: Connection,
    contact_id: int,
    survey: Survey,
    answer: str,
    message_id: int | None,
    now: datetime,
) -> Stored:
    """Keep the answer as the contact's latest to the survey, in the caller's transaction
    (the contact's row locked); the same answer to the same message again changes nothing.

    A negative answer pauses promotions until now + PAUSE (never shortening a longer pause);
    answering differently afterwards does not lift it (support has been told already).
    """
    row = conn.execute(
        select(contacts.c.attributes).where(contacts.c.id == contact_id).with_for_update()
    ).first()
    if row is None:
        return Stored(False, False)
    attributes: dict[str, Any] = dict(row.attributes) if isinstance(row.attributes, dict) else {}
    known = attributes.get(SURVEYS_KEY)
    answers: dict[str, Any] = dict(known) if isinstance(known, dict) else {}
    value = survey.value(answer)
    before = answers.get(survey.id)
    if (
        isinstance(before, dict)
        and before.get("answer") == value
        and before.get("message_id") == message_id
    ):
        return Stored(False, answer in survey.negative)
    answers[survey.id] = {"answer": value, "at": now.isoformat(), "message_id": message_id}
    attributes[SURVEYS_KEY] = answers
    until = None
    negative = answer in survey.negative
    if negative:
        until = now + PAUSE
        current = paused_until(attributes)
        if current is not None and current > until:
            until = current
        attributes[PAUSED_KEY] = until.isoformat()
    conn.execute(
        contacts.update()
        .where(contacts.c.id == contact_id)
        .values(attributes=attributes, updated_at=now)
    )
    return Stored(True, negative, until)


# ---- in the facts ----------------------------------------------------------------------

_EVENT_SCHEMA = pa.schema([f for f in EVENTS.schema if f.name != "ingested_at"])


def event_id(
    contact_id: int, survey: str, message_id: int | None, answer: str, at: datetime
) -> str:
    """One id per change of answer: contact, survey, message, answer and the instant. A
    repeated click of the same answer is not written at all (`store_answer` says so)."""
    parts = (str(contact_id), survey, str(message_id or ""), answer, at.isoformat())
    return "s-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def record_event(
    settings: Settings,
    contact_id: int,
    customer_id: str | None,
    survey: Survey,
    answer: str,
    message_id: int | None,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    """Append the `survey_answer` event: {survey, answer, message_id} (+ `support` for a
    negative answer: sent, failed or not_configured)."""
    properties = {"survey": survey.id, "answer": survey.value(answer), "message_id": message_id}
    properties.update(extra or {})
    row = {
        "event_id": event_id(contact_id, survey.id, message_id, answer, now),
        "customer_id": customer_id,
        "anonymous_id": None,
        "type": EVENT_TYPE,
        "occurred_at": now,
        "product_id": None,
        "session_id": None,
        "source": "reengage",
        "device": None,
        "duration_s": None,
        "properties": json.dumps(properties, sort_keys=True),
    }
    append(
        settings.facts_path,
        EVENTS,
        pa.Table.from_pylist([row], schema=_EVENT_SCHEMA),
        ingested_at=now,
    )


# ---- to support --------------------------------------------------------------------------


@dataclass(frozen=True)
class Respondent:
    """Who answered: what support needs to reach them."""

    id: int
    customer_id: str | None
    email: str | None
    first_name: str | None
    language: str | None


def support_body(
    respondent: Respondent,
    survey: Survey,
    answer: str,
    message_id: int | None,
    at: datetime,
    paused: datetime | None,
) -> dict[str, Any]:
    """The JSON document posted to support for a negative answer."""
    return {
        "id": event_id(respondent.id, survey.id, message_id, answer, at),
        "type": SUPPORT_EVENT,
        "created": int(at.timestamp()),
        "feedback": {
            "survey": survey.id,
            "answer": survey.value(answer),
            "message_id": message_id,
            "answered_at": at.isoformat(),
            "promotions_paused_until": paused.isoformat() if paused else None,
        },
        "contact": {
            "id": respondent.id,
            "customer_id": respondent.customer_id,
            "email": respondent.email,
            "first_name": respondent.first_name,
            "language": respondent.language,
        },
    }


def route_to_support(
    settings: Settings,
    respondent: Respondent,
    survey: Survey,
    answer: str,
    message_id: int | None,
    at: datetime,
    paused: datetime | None,
    *,
    client: httpx.Client | None = None,
) -> str:
    """POST a negative answer, signed like the webhook channel (`Reengage-Signature`), to
    `webhook_url`: "sent" (2xx), "failed", or "not_configured" (no webhook_url or
    webhook_secret). Logged with ids only: the body itself goes to the shop, not to a log."""
    url, secret = settings.webhook_url, settings.webhook_secret
    if not url or not secret:
        log.warning(
            "negative %s answer of contact %s not routed to support: no webhook_url and "
            "webhook_secret (promotions are paused all the same)",
            survey.id,
            respondent.id,
        )
        return "not_configured"
    document = support_body(respondent, survey, answer, message_id, at, paused)
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: str(document["id"]),
        SIGNATURE_HEADER: signature_header(secret, int(document["created"]), body),
    }
    own = client is None
    http = client or httpx.Client(timeout=SUPPORT_TIMEOUT)
    try:
        response = http.post(str(url), content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.error(
            "negative %s answer of contact %s not routed to support: %s",
            survey.id,
            respondent.id,
            type(exc).__name__,
        )
        return "failed"
    finally:
        if own:
            http.close()
    if 200 <= response.status_code < 300:
        return "sent"
    log.error(
        "negative %s answer of contact %s not routed to support: the receiver answered %s",
        survey.id,
        respondent.id,
        response.status_code,
    )
    return "failed"
