"""Facebook Messenger and Instagram messages through Meta's Send API.

Sending: `POST {meta_graph_url}/{meta_api_version}/{messenger_page_id}/messages
?access_token={messenger_page_access_token}` (`me/messages` without a page id) with
`{"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": …}}`. Meta
answers `{"recipient_id": …, "message_id": "m_…"}`. Instagram messages go through the same
endpoint with the Instagram-scoped id, using the page linked to the Instagram account.

Standard messaging has the same 24-hour rule as WhatsApp: a `RESPONSE` only within 24 hours of
the person's last message (the check is `conversations.reply`'s). Message tags, which reach
outside the window, are not used.

Receiving: `parse_webhook` reads the `messages`, `message_deliveries` and `message_reads`
events of a Page (`object` = `page`) or Instagram (`object` = `instagram`) webhook:
`entry[].messaging[]` with `sender`, `recipient`, `timestamp` (milliseconds) and `message`
(`mid`, `text`), `delivery` (`mids`) or `read` (`watermark`). Echoes of the page's own
messages (`message.is_echo`) are skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from reengage.channels.delivery import TemporaryFailure
from reengage.config import Settings
from reengage.errors import ConfigError
from reengage.social.conversations import Inbound, ReadUpTo, StatusChange
from reengage.social.whatsapp import _dicts, post_json

OBJECTS = {"page": "messenger", "instagram": "instagram"}


class MessengerSend:
    """The Send API for one Facebook page (and the Instagram account linked to it)."""

    def __init__(
        self,
        *,
        page_access_token: str,
        page_id: str | None = None,
        graph_url: str = "https://graph.facebook.com",
        api_version: str = "v25.0",
        client: httpx.Client | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.url = f"{graph_url.rstrip('/')}/{api_version}/{page_id or 'me'}/messages"
        self._params = {"access_token": page_access_token}
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client | None = None) -> MessengerSend:
        if not settings.messenger_page_access_token:
            raise ConfigError(
                "Messenger needs messenger_page_access_token: set it in reengage.toml or as "
                "REENGAGE_MESSENGER_PAGE_ACCESS_TOKEN"
            )
        return cls(
            page_access_token=settings.messenger_page_access_token,
            page_id=settings.messenger_page_id,
            graph_url=settings.meta_graph_url,
            api_version=settings.meta_api_version,
            client=client,
        )

    @staticmethod
    def text_payload(recipient: str, text: str) -> dict[str, Any]:
        return {
            "recipient": {"id": recipient},
            "messaging_type": "RESPONSE",
            "message": {"text": text},
        }

    def send(self, payload: dict[str, Any]) -> str:
        """Send one message; the `message_id` Meta gave it."""
        answer = post_json(self._client, "messenger", self.url, payload, params=self._params)
        mid = answer.get("message_id")
        if not mid:
            raise TemporaryFailure("messenger: Send API answered without a message id")
        return str(mid)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _when(millis: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(millis) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_webhook(payload: Any) -> list[Inbound | StatusChange | ReadUpTo]:
    """The messages, deliveries and reads in a Page or Instagram webhook."""
    found: list[Inbound | StatusChange | ReadUpTo] = []
    if not isinstance(payload, dict) or payload.get("object") not in OBJECTS:
        return found
    channel = OBJECTS[payload["object"]]
    for entry in _dicts(payload.get("entry")):
        for event in _dicts(entry.get("messaging")):
            sender = event.get("sender")
            psid = sender.get("id") if isinstance(sender, dict) else None
            at = _when(event.get("timestamp"))
            message = event.get("message")
            if isinstance(message, dict) and psid and message.get("mid"):
                if message.get("is_echo"):
                    continue
                text = message.get("text")
                kind = "text" if isinstance(text, str) else "attachment"
                found.append(
                    Inbound(
                        channel=channel,
                        external_id=str(psid),
                        provider_id=str(message["mid"]),
                        at=at,
                        kind=kind,
                        body=text if isinstance(text, str) else None,
                    )
                )
            delivery = event.get("delivery")
            if isinstance(delivery, dict):
                for mid in delivery.get("mids") or []:
                    found.append(StatusChange(channel, str(mid), "delivered", at))
            read = event.get("read")
            if isinstance(read, dict) and psid:
                watermark = _when(read.get("watermark"))
                if watermark is not None:
                    found.append(ReadUpTo(channel, str(psid), watermark))
    return found
