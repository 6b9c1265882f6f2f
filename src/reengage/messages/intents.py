"""What a message is for: the twenty intents, the five copy variants, the fields of copy.

An intent says *why* we write (a cart left behind, a thank-you, a goodbye); the copy for it is
written once per behavioural style and language (`copy/<lang>.yaml`). Per intent this module
fixes what the rest of the system must not guess:

- **purpose** — `marketing` or `transactional`, the consent purpose the contact policy checks.
  Only `thank_you` and `check_in` are service messages (`transactional`): they follow an order,
  sell nothing and carry no offer and no recommendations — that is what keeps them service
  messages. Everything else, cart reminders and review requests included, is marketing and
  needs marketing consent.
- **blocks** — what the email shows besides the copy: the cart lines, the order it follows,
  one product card, a grid of recommended products, the offer box. A block whose data is
  missing (no offer issued, no recommendations) is left out, never shown empty.
- **channels** — the default priority of channels, best first: the policy picks the first one
  the contact can be reached on.
- **cta** — where the button points: the cart, the main product, the first recommended
  product, the review page, the help page, the email preferences (to stay subscribed) or the
  shop. A missing main product falls back to the first recommendation, then to the shop; a
  missing recommendation falls back to the shop, never to the main product (for `cross_sell`
  that is what they already bought, for `down_sell` what they looked at and left).

Three intents ask a one-click survey (`reengage.surveys`, docs/surveys.md): `check_in` ("how
is it going?", still a service message), `nps_survey` (0-10) and `winback_survey` ("why did you
leave?"); their email carries a button per answer. `referral_invite` asks a happy customer to
share the shop (the `advocacy` journey sends it to promoters).

`newsletter` is the shop's news, sent by a campaign that usually brings its own heading and
body (copy overrides); its own copy still reads well alone.

The win-back series runs `winback_reminder` → `winback_incentive` → `last_chance` →
`sunset_goodbye`: `last_chance` is the last message before the sunset (the last time we write
about this; without a sign from them we stop writing), and after `sunset_goodbye` the contact
is suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reengage.errors import InputError

# behavioural styles as scoring stores them (scores.style), and the copy variant for each
STYLES = ("go_getter", "promoter", "nurturer", "examiner")
VARIANTS = (*STYLES, "neutral")

# every variant of every intent has each of these fields, all Jinja templates
FIELDS = ("subject", "preheader", "heading", "body", "cta", "sms", "push_title", "push_body")

# the most characters a field may have once rendered with typical values
LIMITS = {"sms": 140, "push_title": 40, "push_body": 120}

BLOCKS = ("cart", "order", "product", "recommendations", "offer")
CTA_TARGETS = ("cart", "product", "recommendation", "review", "help", "preferences", "shop")

Purpose = Literal["marketing", "transactional"]


@dataclass(frozen=True)
class Intent:
    id: str
    purpose: Purpose
    blocks: tuple[str, ...]
    channels: tuple[str, ...]
    cta: str
    description: str

    @property
    def incentive(self) -> bool:
        """Whether the copy may speak of an offer (always through `offer`, guarded)."""
        return "offer" in self.blocks

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "purpose": self.purpose,
            "blocks": list(self.blocks),
            "channels": list(self.channels),
            "cta": self.cta,
            "description": self.description,
        }


def _intent(
    id: str,
    purpose: Purpose,
    blocks: tuple[str, ...],
    channels: tuple[str, ...],
    cta: str,
    description: str,
) -> Intent:
    assert set(blocks) <= set(BLOCKS) and cta in CTA_TARGETS
    return Intent(id, purpose, blocks, channels, cta, description)


INTENTS: dict[str, Intent] = {
    i.id: i
    for i in (
        _intent(
            "cart_reminder",
            "marketing",
            ("cart",),
            ("email", "push", "sms"),
            "cart",
            "a cart was left: what is in it, one click back",
        ),
        _intent(
            "cart_help",
            "marketing",
            ("cart",),
            ("email",),
            "help",
            "the cart is still there: answers, sizes, delivery and returns, a person to ask",
        ),
        _intent(
            "cart_incentive",
            "marketing",
            ("cart", "offer"),
            ("email", "sms", "push"),
            "cart",
            "the cart, with the offer the escalation ladder allows (if any)",
        ),
        _intent(
            "browse_reminder",
            "marketing",
            ("product", "recommendations"),
            ("email", "push"),
            "product",
            "a product was looked at and left: it, and a few like it",
        ),
        _intent(
            "thank_you",
            "transactional",
            ("order",),
            ("email",),
            "help",
            "after an order: thanks, what happens next, whom to ask",
        ),
        _intent(
            "check_in",
            "transactional",
            ("order",),
            ("email",),
            "help",
            "some days after delivery: is everything all right?",
        ),
        _intent(
            "review_request",
            "marketing",
            ("product",),
            ("email",),
            "review",
            "an honest review of what they bought",
        ),
        _intent(
            "cross_sell",
            "marketing",
            ("recommendations",),
            ("email", "push"),
            "recommendation",
            "what goes with what they bought",
        ),
        _intent(
            "up_sell",
            "marketing",
            ("recommendations",),
            ("email",),
            "recommendation",
            "a step up from what they chose",
        ),
        _intent(
            "down_sell",
            "marketing",
            ("recommendations",),
            ("email", "push"),
            "recommendation",
            "a lighter, less costly alternative to what they looked at",
        ),
        _intent(
            "winback_reminder",
            "marketing",
            ("recommendations",),
            ("email", "push"),
            "shop",
            "a customer went quiet: what is new, no pressure",
        ),
        _intent(
            "winback_incentive",
            "marketing",
            ("offer", "recommendations"),
            ("email", "sms"),
            "shop",
            "a quiet customer, with the offer the ladder allows (if any)",
        ),
        _intent(
            "last_chance",
            "marketing",
            ("offer",),
            ("email", "sms", "push"),
            "shop",
            "last of the win-back series before the sunset: we stop writing unless they want to"
            " hear from us (preferences link); an offer they hold ends on its date",
        ),
        _intent(
            "sunset_goodbye",
            "marketing",
            (),
            ("email",),
            "preferences",
            "we stop writing to the unengaged: how to stay if they want to",
        ),
        _intent(
            "vip_thanks",
            "marketing",
            ("offer",),
            ("email", "sms"),
            "shop",
            "the best customers: thanks, and something for them if there is an offer",
        ),
        _intent(
            "replenishment",
            "marketing",
            ("product",),
            ("email", "push", "sms"),
            "product",
            "what they buy regularly is probably running out",
        ),
        _intent(
            "newsletter",
            "marketing",
            ("recommendations",),
            ("email", "push"),
            "shop",
            "the shop's news to its subscribers: what is new, a few picks for them",
        ),
        _intent(
            "nps_survey",
            "marketing",
            (),
            ("email",),
            "shop",
            "how likely they are to recommend the shop: 0 to 10, one click",
        ),
        _intent(
            "winback_survey",
            "marketing",
            (),
            ("email",),
            "shop",
            "a customer who left: why? one click per reason (price, quality, delivery, ...)",
        ),
        _intent(
            "referral_invite",
            "marketing",
            (),
            ("email",),
            "shop",
            "a happy customer: share the shop with friends and on social media",
        ),
    )
}


class UnknownName(InputError):
    """An intent, style, variant or language that does not exist."""


def intent(name: str) -> Intent:
    try:
        return INTENTS[name]
    except KeyError:
        raise UnknownName(f"unknown intent {name!r} (known: {', '.join(INTENTS)})") from None


def variant_for(style: str | None) -> str:
    """The copy variant for a contact's style: `neutral` when the style is unknown."""
    if style is not None and style in VARIANTS:
        return style
    if style in (None, "", "unknown"):
        return "neutral"
    raise UnknownName(f"unknown style {style!r} (known: {', '.join((*VARIANTS, 'unknown'))})")
