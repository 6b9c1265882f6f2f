"""What one claimed outbox row becomes on its channel: the message rendered in its contact's
language and style, its links signed (click-tracked links, the open pixel, unsubscribe,
preferences and a survey's one-click answers), and the channel's `Outgoing` (MIME headers for
email, the plain link and the opt-out for SMS, title, body and URL for push). Also the
channels a run opens from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import markupsafe
from sqlalchemy import Engine

from reengage.channels.delivery import Channel, Outgoing
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import ReengageError
from reengage.measure.utm import Origin, shop_link, tag, tags
from reengage.messages.batch_contexts import Person
from reengage.messages.claims import Claimed
from reengage.messages.context import Context
from reengage.messages.intents import INTENTS
from reengage.messages.render import Links, Rendered, Renderer
from reengage.messages.tokens import sign
from reengage.web.links import is_web_url, open_url, preferences_url, unsubscribe_url
from reengage.web.survey_links import survey_url


@dataclass(frozen=True)
class Job:
    """A claimed row the policy allowed, with its contact, address and context."""

    row: Claimed
    person: Person
    to: str
    context: Context


class Composer:
    """Builds the `Outgoing` of a job. Safe to share between threads (its caches only grow)."""

    def __init__(self, settings: Settings, renderer: Renderer) -> None:
        self.settings = settings
        self.renderer = renderer
        self.secret = settings.secret()
        self._own_links = f"{settings.public_url}/l/"
        self._clicks = f"{settings.public_url}/l/c/"
        self._urls: dict[str, bool] = {}

    def preload(self, row: Claimed) -> None:
        """Load the copy and layouts in this thread (a broken override stops the run here,
        before any message of the batch is sent)."""
        self.renderer.variant(row.intent, row.variant, row.language)
        self.renderer.layout.html(row.variant, row.language)
        self.renderer.layout.text(row.language)

    def build(
        self, job: Job, handing: Callable[[], None] | None = None
    ) -> tuple[Outgoing, str | None]:
        """The message for the job's channel, and the subject to record (None for SMS)."""
        row, person = job.row, job.person
        settings = self.settings
        mid, cid = row.id, person.id
        track: Callable[[str], str] | None = None
        if row.channel != "sms":  # an SMS keeps its one link short: neither tags nor tracking
            utm = tags(
                settings.utm,
                Origin(
                    row.channel,
                    row.journey or row.campaign,
                    row.step,
                    row.variant,
                    row.intent,
                    row.style,
                ),
            )

            def track(url: str) -> str:
                if not self._trackable(url):
                    return url
                if shop_link(url, settings.shop_url, settings.public_url):
                    url = tag(url, utm)
                # what `web.links.click_url` makes, without checking the URL again
                token = sign(self.secret, "click", {"c": cid, "m": mid, "u": url})
                return f"{self._clicks}{token}"

        cta = row.payload.get("cta_url")
        links = Links(
            unsubscribe=unsubscribe_url(settings, mid, cid),
            preferences=preferences_url(settings, mid, cid),
            cta=str(cta) if cta else None,
            track=track,
            survey=lambda survey, answer: survey_url(settings, mid, cid, survey, answer),
        )
        rendered = self.renderer.render(
            row.intent,
            row.variant,
            row.language,
            job.context,
            links,
            overrides=row.payload.get("copy"),
        )
        purpose = INTENTS[row.intent].purpose
        if row.channel == "email":
            headers = {
                "Feedback-ID": ":".join(
                    (
                        _header_token(row.campaign or row.journey or "direct"),
                        row.intent,
                        "reengage",
                    )
                )
            }
            extra = row.payload.get("headers")
            if isinstance(extra, dict):
                headers.update({str(k): str(v) for k, v in extra.items()})
            html = with_pixel(rendered, open_url(settings, mid, cid))
            return (
                Outgoing(
                    mid,
                    "email",
                    job.to,
                    subject=rendered.subject,
                    text=rendered.text,
                    html=html,
                    headers=headers,
                    data={"contact_id": cid, "purpose": purpose},
                    handing=handing,
                ),
                rendered.subject,
            )
        if row.channel == "sms":
            return (
                Outgoing(
                    mid,
                    "sms",
                    job.to,
                    text=rendered.sms_with_link,
                    data={
                        "contact_id": cid,
                        "purpose": purpose,
                        "language": row.language,
                        "country": person.country,
                    },
                    handing=handing,
                ),
                None,
            )
        return (
            Outgoing(
                mid,
                row.channel,
                job.to,
                subject=rendered.push_title,
                text=rendered.push_body,
                data={"contact_id": cid, "purpose": purpose, "url": rendered.url},
                handing=handing,
            ),
            rendered.push_title,
        )

    def _trackable(self, url: str) -> bool:
        """Whether a link is one to wrap for click tracking: a web address (the same URLs
        recur in every message: products, the cart, the shop), not one of our own links."""
        found = self._urls.get(url)
        if found is None:
            found = is_web_url(url) and not url.startswith(self._own_links)
            if len(self._urls) < 100_000:
                self._urls[url] = found
        return found


def open_channel(name: str, settings: Settings, engine: Engine, clock: Clock) -> Channel:
    """The channel the settings configure for `name`; ReengageError when it cannot open."""
    if name == "email":
        from reengage.channels.email import email_channel

        return email_channel(settings, clock)
    if name == "sms":
        from reengage.channels.sms import TwilioSMS

        return TwilioSMS.from_settings(settings)
    if name == "push":
        from reengage.channels.push import PushChannel

        return PushChannel.from_settings(settings, engine, clock)
    raise ReengageError(f"reengage cannot deliver on {name!r}")


def with_pixel(rendered: Rendered, url: str) -> str:
    """The HTML with the open pixel at the end of the body."""
    pixel = str(
        markupsafe.Markup(
            '<img src="{}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;" />'
        ).format(url)
    )
    html = rendered.html
    at = html.rfind("</body>")
    return html + pixel if at < 0 else html[:at] + pixel + html[at:]


def _header_token(value: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in value)
