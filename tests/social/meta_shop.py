"""Shared by the messaging-app tests: a Graph API stand-in that checks the documented request
formats, Meta's webhook payloads as documented, and signed delivery through the web app."""

from __future__ import annotations

import itertools
import json
import warnings
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from channels.local_peer import Reply, Request
from reengage.clock import Clock
from reengage.config import Settings, load_settings
from reengage.state.contacts import ConsentChange, record_consents
from reengage.state.schema import contacts
from reengage.web.app import create_app
from reengage.web.social_hooks import compute_signature

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

VERSION = "v25.0"
PHONE_NUMBER_ID = "106540352242922"
WA_TOKEN = "EAAG-whatsapp-token"
PAGE_ID = "1234567890"
PAGE_TOKEN = "EAAG-page-token"
APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-me-please"


def meta_env(graph_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    """The settings for the Meta channels, as REENGAGE_* variables."""
    return {
        "REENGAGE_META_GRAPH_URL": graph_url,
        "REENGAGE_META_API_VERSION": VERSION,
        "REENGAGE_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "REENGAGE_WHATSAPP_ACCESS_TOKEN": WA_TOKEN,
        "REENGAGE_MESSENGER_PAGE_ID": PAGE_ID,
        "REENGAGE_MESSENGER_PAGE_ACCESS_TOKEN": PAGE_TOKEN,
        "REENGAGE_META_APP_SECRET": APP_SECRET,
        "REENGAGE_META_VERIFY_TOKEN": VERIFY_TOKEN,
    }


def meta_settings(env: dict[str, str], graph_url: str = "http://127.0.0.1:9") -> Settings:
    return load_settings({**env, **meta_env(graph_url)})


class Graph:
    """Answers as the Graph API does, after checking each request against its documentation;
    a request that does not match gets a 400 and is listed in `problems`."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.ids = itertools.count(1)

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or request.headers.get("content-type") != "application/json":
            return self._bad("not a JSON POST")
        body = request.json()
        if request.path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages":
            return self._whatsapp(request, body)
        if request.path == f"/{VERSION}/{PAGE_ID}/messages":
            return self._messenger(request, body)
        return self._bad(f"unknown path {request.path}")

    def _bad(self, problem: str) -> Reply:
        self.problems.append(problem)
        return Reply(400, {"error": {"message": problem, "type": "OAuthException", "code": 100}})

    def _whatsapp(self, request: Request, body: dict[str, Any]) -> Reply:
        if request.headers.get("authorization") != f"Bearer {WA_TOKEN}":
            return Reply(401, {"error": {"message": "bad token", "code": 190}})
        if body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return self._bad("messaging_product or to missing")
        if body["type"] == "template":
            template = body["template"]
            if set(body) != {"messaging_product", "to", "type", "template"}:
                return self._bad(f"template fields {sorted(body)}")
            if not template.get("name") or set(template["language"]) != {"code"}:
                return self._bad("template name or language")
        elif body["type"] == "text":
            expected = {"messaging_product", "recipient_type", "to", "type", "text"}
            if set(body) != expected or body["recipient_type"] != "individual":
                return self._bad(f"text fields {sorted(body)}")
            if set(body["text"]) != {"body"} or not body["text"]["body"]:
                return self._bad("text body")
        else:
            return self._bad(f"type {body['type']}")
        wamid = f"wamid.OUT{next(self.ids)}"
        return Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"].lstrip("+")}],
                "messages": [{"id": wamid}],
            },
        )

    def _messenger(self, request: Request, body: dict[str, Any]) -> Reply:
        if request.query.get("access_token") != [PAGE_TOKEN]:
            return Reply(401, {"error": {"message": "bad token", "code": 190}})
        if set(body) != {"recipient", "messaging_type", "message"}:
            return self._bad(f"send fields {sorted(body)}")
        if body["messaging_type"] != "RESPONSE" or set(body["message"]) != {"text"}:
            return self._bad("messaging_type or message")
        return Reply(
            200, {"recipient_id": body["recipient"]["id"], "message_id": f"m_OUT{next(self.ids)}"}
        )


# ---- Meta's webhook payloads, as documented ---------------------------------------------


def wa_payload(
    *, messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
    }
    if messages:
        value["contacts"] = [
            {"profile": {"name": "Anna"}, "wa_id": m["from"]} for m in messages[:1]
        ]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
    }


def wa_text(sender: str, wamid: str, at: datetime, body: str) -> dict[str, Any]:
    return wa_payload(
        messages=[
            {
                "from": sender,
                "id": wamid,
                "timestamp": str(int(at.timestamp())),
                "type": "text",
                "text": {"body": body},
            }
        ]
    )


def wa_status(wamid: str, status: str, at: datetime, recipient: str) -> dict[str, Any]:
    return wa_payload(
        statuses=[
            {
                "id": wamid,
                "status": status,
                "timestamp": str(int(at.timestamp())),
                "recipient_id": recipient,
            }
        ]
    )


def page_payload(events: list[dict[str, Any]], obj: str = "page") -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": PAGE_ID, "time": 1, "messaging": events}]}


def page_text(psid: str, mid: str, at: datetime, text: str) -> dict[str, Any]:
    return {
        "sender": {"id": psid},
        "recipient": {"id": PAGE_ID},
        "timestamp": int(at.timestamp() * 1000),
        "message": {"mid": mid, "text": text},
    }


# ---- the shop ---------------------------------------------------------------------------


def web_client(settings: Settings, engine: Engine, clock: Clock) -> TestClient:
    return TestClient(create_app(settings, engine, clock), follow_redirects=False)


def deliver(client: TestClient, payload: dict[str, Any], secret: str = APP_SECRET) -> Any:
    """POST payload to /hooks/meta as Meta does: signed with the app secret."""
    body = json.dumps(payload).encode()
    return client.post(
        "/hooks/meta",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": compute_signature(secret, body),
        },
    )


def add_contact(
    engine: Engine,
    now: datetime,
    *,
    customer_id: str = "C1",
    phone: str | None = "333 123 4567",
    country: str | None = "IT",
    consent: dict[str, bool] | None = None,
) -> int:
    """A contact as the shop's import made it, with WhatsApp consents {purpose: granted}."""
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id=customer_id,
                phone=phone,
                country=country,
                created_at=now,
                updated_at=now,
                origin="customers",
                attributes={},
            )
        ).inserted_primary_key
        assert key is not None
        contact_id = int(key[0])
        record_consents(
            conn,
            [
                ConsentChange(contact_id, "whatsapp", purpose, granted, "signup", now)
                for purpose, granted in (consent or {}).items()
            ],
        )
    return contact_id
