"""Proofs: a campaign's message, each test variant of it, rendered on the sample context and
sent to one address the marketer gives (their own inbox or phone) before the campaign
starts. A proof is not a message to a contact: it goes through the campaign's channel but
not through the outbox or the contact policy, records nothing, and its links act on no one
(the unsubscribe and preferences links are the preview's placeholders)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Engine

from reengage.campaigns.definition import Campaign
from reengage.channels.delivery import Outgoing
from reengage.clock import Clock
from reengage.config import Settings
from reengage.errors import InputError
from reengage.messages.copy import Catalogue
from reengage.messages.intents import INTENTS, variant_for
from reengage.messages.render import Links, Rendered, Renderer
from reengage.messages.samples import sample_context

PREFIX = "[proof]"


@dataclass(frozen=True)
class Proof:
    arm: str | None
    language: str
    variant: str
    subject: str | None
    text: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "variant": self.arm,
            "language": self.language,
            "style_variant": self.variant,
            "subject": self.subject,
        }


def proofs(
    settings: Settings,
    campaign: Campaign,
    to: str,
    *,
    language: str,
    style: str | None,
    arms: list[str] | None = None,
    clock: Clock,
) -> list[tuple[Proof, Outgoing]]:
    """One proof per test variant (`arms`, default all; the campaign's copy when it has no
    test), rendered in `language` and for `style` (neutral when the campaign does not adapt
    to style), as the campaign's channel would carry it to `to`."""
    if campaign.channel not in ("email", "sms"):
        raise InputError(
            f"campaign {campaign.name}: proofs go by email or SMS, not {campaign.channel}"
        )
    names: list[str | None] = [None]
    if campaign.test is not None:
        known = [a.name for a in campaign.test.arms]
        unknown = [a for a in arms or [] if a not in known]
        if unknown:
            raise InputError(
                f"campaign {campaign.name} has no variant {unknown[0]!r} "
                f"(its variants: {', '.join(known)})"
            )
        names = list(arms or known)
    elif arms:
        raise InputError(f"campaign {campaign.name} has no test variants")
    variant = variant_for(style) if campaign.adapt_style else "neutral"
    renderer = Renderer(Catalogue.for_settings(settings))
    context = replace(sample_context(language, settings.currency), shop_name=settings.shop_name)
    base = settings.public_url
    links = Links(unsubscribe=f"{base}/u/PREVIEW", preferences=f"{base}/p/PREVIEW")
    made: list[tuple[Proof, Outgoing]] = []
    # a proof's message id is negative, so no outbox row has it (a bounce or a click on a
    # proof matches no message) and unique by the time, so a maildir keeps every proof sent
    stamp = int(clock.now().timestamp() * 1000) * 100
    for i, arm in enumerate(names):
        where = f"campaign {campaign.name}" + (f" variant {arm}" if arm else "")
        rendered = renderer.render(
            campaign.intent,
            variant,
            language,
            context,
            links,
            overrides=campaign.copy_for(language, arm),
            overrides_from=where,
        )
        proof = Proof(arm, language, variant, _subject(rendered, arm), rendered.text)
        made.append((proof, _outgoing(campaign, -(stamp + i), to, rendered, proof)))
    return made


def _subject(rendered: Rendered, arm: str | None) -> str:
    label = f"{PREFIX} " if arm is None else f"{PREFIX} ({arm}) "
    return label + rendered.subject


def _outgoing(
    campaign: Campaign, message_id: int, to: str, rendered: Rendered, proof: Proof
) -> Outgoing:
    purpose = INTENTS[campaign.intent].purpose
    if campaign.channel == "sms":
        return Outgoing(
            message_id,
            "sms",
            to,
            text=f"{PREFIX} {rendered.sms_with_link}",
            data={"purpose": purpose, "language": proof.language},
        )
    return Outgoing(
        message_id,
        "email",
        to,
        subject=proof.subject,
        text=rendered.text,
        html=rendered.html,
        headers={"X-Reengage-Proof": campaign.name},
        data={"purpose": purpose},
    )


def send_proofs(
    settings: Settings, engine: Engine, clock: Clock, made: list[tuple[Proof, Outgoing]]
) -> list[str | None]:
    """Send each proof through the campaign's channel; the provider's ids."""
    from reengage.messages.outgoing import open_channel

    if not made:
        return []
    channel = open_channel(made[0][1].channel, settings, engine, clock)
    try:
        return [channel.send(message).provider_id for _, message in made]
    finally:
        channel.close()
