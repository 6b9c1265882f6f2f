"""WhatsApp through Meta's Business Cloud API: approved templates and free-form text.

Sending: `POST {meta_graph_url}/{meta_api_version}/{whatsapp_phone_number_id}/messages` with
`Authorization: Bearer {whatsapp_access_token}` and a JSON body:

- a template (business-initiated, any time, to an opted-in number):
  `{"messaging_product": "whatsapp", "to": "+39…", "type": "template",
  "template": {"name": …, "language": {"code": …}, "components": […]}}`
- text (a free-form answer, only inside the 24-hour customer service window):
  `{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+39…",
  "type": "text", "text": {"body": …}}`

Meta answers `{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id":
"wamid…"}]}`; the `wamid` is the receipt, and the id later status webhooks name. Errors come
as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`: only the code is
kept (the message may quote the number).

Receiving: `parse_webhook` reads the `messages` webhook (`object` =
`whatsapp_business_account`, `entry[].changes[].value` with `messages` and `statuses`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from reengage.channels.delivery import PermanentFailure, TemporaryFailure
from reengage.config import Settings
from reengage.errors import ConfigError
from reengage.social.conversations import Inbound, StatusChange

# Graph API error codes worth waiting for: throttling (4, 80007, 130429, 131056) and
# Meta's own trouble (1, 2, 131000, 131016)
TEMPORARY_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056})
GRAPH_ERRORS = {
    131047: "more than 24 hours since the person last wrote: only a template can be sent",
    131026: "the message could not be delivered (not a WhatsApp number, or old app)",
    131051: "unsupported message type",
    132000: "the template's parameters do not match it",
    132001: "no such approved template in this language",
    10: "the app lacks the permission (or the 24-hour window closed)",
    100: "invalid parameter",
    190: "the access token expired or is invalid",
}


def graph_error(what: str, response: httpx.Response) -> Exception:
    """The failure a Graph API error answer stands for (temporary or permanent)."""
    code: int | None = None
    try:
        found = response.json().get("error", {}).get("code")
        code = found if isinstance(found, int) else None
    except (ValueError, AttributeError):
        pass
    status = response.status_code
    where = f"{what}: Graph API {status}" + (f" error {code}" if code is not None else "")
    if status == 429 or status >= 500 or code in TEMPORARY_CODES:
        return TemporaryFailure(f"{where}, try again later")
    if status == 401 or code == 190:
        return TemporaryFailure(f"{where}: {GRAPH_ERRORS[190]}")
    return PermanentFailure(f"{where}: {GRAPH_ERRORS.get(code or 0, 'request refused')}")


def post_json(
    client: httpx.Client,
    what: str,
    url: str,
    payload: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST payload as JSON to the Graph API; its JSON answer, or a delivery failure."""
    try:
        response = client.post(url, json=payload, headers=headers, params=params)
    except httpx.TransportError as exc:
        raise TemporaryFailure(f"{what}: Graph API unreachable ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise graph_error(what, response)
    try:
        answer = response.json()
    except ValueError:
        raise TemporaryFailure(f"{what}: Graph API answered without JSON") from None
    if not isinstance(answer, dict):
        raise TemporaryFailure(f"{what}: Graph API answered an unexpected body")
    return answer


class WhatsAppCloud:
    """The WhatsApp Business Cloud API for one business phone number."""

    channel = "whatsapp"

    def __init__(
        self,
        *,
        phone_number_id: str,
        access_token: str,
        graph_url: str = "https://graph.facebook.com",
        api_version: str = "v25.0",
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.url = f"{graph_url.rstrip('/')}/{api_version}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client | None = None) -> WhatsAppCloud:
        missing = [
            name
            for name in ("whatsapp_phone_number_id", "whatsapp_access_token")
            if not getattr(settings, name)
        ]
        if missing:
            raise ConfigError(
                f"WhatsApp needs {', '.join(missing)}: set them in reengage.toml or as "
                f"{', '.join('REENGAGE_' + m.upper() for m in missing)}"
            )
        assert settings.whatsapp_phone_number_id and settings.whatsapp_access_token
        return cls(
            phone_number_id=settings.whatsapp_phone_number_id,
            access_token=settings.whatsapp_access_token,
            graph_url=settings.meta_graph_url,
            api_version=settings.meta_api_version,
            client=client,
        )

    @staticmethod
    def template_payload(
        to: str, name: str, language: str, components: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        template: dict[str, Any] = {"name": name, "language": {"code": language}}
        if components:
            template["components"] = components
        return {"messaging_product": "whatsapp", "to": to, "type": "template", "template": template}

    @staticmethod
    def text_payload(to: str, body: str) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": body},
        }

    def send(self, payload: dict[str, Any]) -> str:
        """Send one message; the `wamid` Meta gave it."""
        answer = post_json(self._client, "whatsapp", self.url, payload, headers=self._headers)
        try:
            return str(answer["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise TemporaryFailure("whatsapp: Graph API answered without a message id") from None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _when(stamp: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(stamp), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def parse_webhook(payload: Any) -> list[Inbound | StatusChange]:
    """The messages and status reports in a WhatsApp `messages` webhook; anything else in it
    (other fields, malformed entries) is skipped."""
    found: list[Inbound | StatusChange] = []
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return found
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            if change.get("field", "messages") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            for m in _dicts(value.get("messages")):
                if not m.get("id") or not m.get("from"):
                    continue
                kind = str(m.get("type") or "unknown")[:16]
                body: str | None = None
                if kind == "text" and isinstance(m.get("text"), dict):
                    body = str(m["text"].get("body") or "")
                elif kind == "button" and isinstance(m.get("button"), dict):
                    body = str(m["button"].get("text") or "")
                found.append(
                    Inbound(
                        channel="whatsapp",
                        external_id=str(m["from"]),
                        provider_id=str(m["id"]),
                        at=_when(m.get("timestamp")),
                        kind=kind,
                        body=body,
                    )
                )
            for s in _dicts(value.get("statuses")):
                if not s.get("id") or not s.get("status"):
                    continue
                found.append(
                    StatusChange(
                        channel="whatsapp",
                        provider_id=str(s["id"]),
                        status=str(s["status"])[:16],
                        at=_when(s.get("timestamp")),
                    )
                )
    return found
