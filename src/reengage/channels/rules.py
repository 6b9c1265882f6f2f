"""The contact policy's decision core: pure, from what was read about a contact to a decision.

`decide` takes the facts (`PolicyFacts`: consents, address, suppressions, zone, last order,
counted messages) and one `SendRequest` and answers allow, block(reason) or defer(until,
reason). It reads no database and no clock, so the property tests can throw thousands of
random contacts and streams at it; `reengage.channels.policy` reads the facts from the state
store and calls it. docs/policy.md explains every rule.

Rules, in the order they are applied (the first that objects names the reason):

1. consent for the channel and purpose (absent is not granted)      -> block no_consent
2. an address on the channel (email, phone; push needs none here)   -> block no_address
3. the address is not suppressed                                    -> block suppressed:<why>
3b. marketing only: not while promotions are paused after a negative survey answer
                                                    -> block paused_after_feedback
4. marketing only: not within purchase_cooldown_days of an order    -> defer purchase_cooldown
5. marketing only: frequency caps, channel then all, day then week  -> defer (or block) cap:...
6. not inside quiet hours, in the contact's wall time               -> defer quiet_hours

A deferral goes to the first instant at which rules 4 to 6 all let the message through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from reengage.channels.caps import Cap, Counted, bumps, caps_for, effective, frees_at, is_full
from reengage.channels.quiet_hours import quiet_hours, zone_named
from reengage.clock import as_utc
from reengage.config import Settings
from reengage.state.schema import CHANNELS

Action = Literal["allow", "block", "defer"]
Purpose = Literal["marketing", "transactional"]
PURPOSES: tuple[Purpose, ...] = ("marketing", "transactional")

NO_CONSENT = "no_consent"
NO_ADDRESS = "no_address"
QUIET_HOURS = "quiet_hours"
PURCHASE_COOLDOWN = "purchase_cooldown"
LOWER_PRIORITY = "lower_priority"
PAUSED_AFTER_FEEDBACK = "paused_after_feedback"

# the longest a send held back by a frequency cap waits; past it the send is blocked
DEFAULT_MAX_DEFER = timedelta(days=3)
# which contact field addresses each channel; channels not listed need no address here
ADDRESS_FIELD = {"email": "email", "sms": "phone", "whatsapp": "phone"}
# deferral steps before giving up (each step moves strictly forward; a handful is the norm)
MAX_STEPS = 64

_TEXT = {
    NO_CONSENT: "no current consent for this channel and purpose",
    NO_ADDRESS: "the contact has no address on this channel",
    QUIET_HOURS: "inside quiet hours in the contact's time zone",
    PURCHASE_COOLDOWN: "the contact ordered recently: promotions wait for the cooldown",
    LOWER_PRIORITY: "made way for a message of higher priority",
    PAUSED_AFTER_FEEDBACK: "promotions are paused after a negative answer to a survey",
}


def suppressed(reason: str) -> str:
    """The reason code for a suppressed address: `suppressed:unsubscribed`, ..."""
    return f"suppressed:{reason}"


def describe(reason: str) -> str:
    """The human text of a reason code (never personal data: codes carry none)."""
    if reason in _TEXT:
        return _TEXT[reason]
    kind, _, rest = reason.partition(":")
    if kind == "suppressed":
        return f"the address is suppressed on this channel ({rest})"
    if kind == "cap":
        scope, _, period = rest.partition(":")
        where = "all channels together" if scope == "all" else scope
        span = "this calendar day" if period == "day" else "the last 7 days"
        return f"frequency cap reached: {where}, {span}"
    return reason


@dataclass(frozen=True)
class Decision:
    """allow (possibly bumping lower-priority queued messages), block(reason) or
    defer(until, reason). `reason` is a stable code (see `describe` for its text)."""

    action: Action
    reason: str | None = None
    until: datetime | None = None
    # outbox ids of queued lower-priority messages to set `deferred` (reason lower_priority)
    bump: tuple[int, ...] = ()

    @classmethod
    def allow(cls, bump: Iterable[int] = ()) -> Decision:
        return cls("allow", bump=tuple(bump))

    @classmethod
    def block(cls, reason: str) -> Decision:
        return cls("block", reason)

    @classmethod
    def defer(cls, until: datetime, reason: str) -> Decision:
        return cls("defer", reason, as_utc(until))

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def text(self) -> str:
        """One line for logs and the outbox's `reason` column's readers."""
        if self.action == "allow":
            return f"allowed, bumping {len(self.bump)}" if self.bump else "allowed"
        text = describe(self.reason or "")
        if self.until is not None:
            return f"deferred to {self.until.isoformat()}: {text}"
        return f"blocked: {text}"


@dataclass(frozen=True)
class SendRequest:
    """One message the engine wants to send to one contact.

    `when` is the instant it would go; `message_id` the outbox row when the request claims
    an existing row (it is not counted against itself); `last_order_at` the caller's
    knowledge of the latest order, combined with what the scores say (the later wins).
    """

    contact_id: int
    channel: str
    purpose: Purpose
    priority: int
    when: datetime
    message_id: int | None = None
    last_order_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r} (known: {', '.join(CHANNELS)})")
        if self.purpose not in PURPOSES:
            raise ValueError(f"purpose must be marketing or transactional, not {self.purpose!r}")


@dataclass(frozen=True)
class PolicyFacts:
    """What the policy knows about one contact.

    `consents` maps (channel, purpose) to the current grant (absent: not granted);
    `email` and `phone` are the addresses (the phone in E.164); `suppressed` maps a channel
    to the suppression reason of the contact's address on it; `timezone` is the contact's
    IANA zone (None or unknown: the shop's); `messages` are the counted marketing messages
    (sent, sending, queued) around the decision; `customer`: the contact is a customer of
    the shop (has a customer id), whose own orders are the basis of service email;
    `paused_until`: promotions are paused until then after a negative survey answer
    (`reengage.surveys`).
    """

    consents: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    email: str | None = None
    phone: str | None = None
    suppressed: Mapping[str, str] = field(default_factory=dict)
    timezone: str | None = None
    last_order_at: datetime | None = None
    messages: tuple[Counted, ...] = ()
    customer: bool = False
    paused_until: datetime | None = None

    def granted(self, channel: str, purpose: str) -> bool:
        """The current consent; for service email to a customer with no row either way,
        granted: the thank-you for an order follows from the order itself (the contract,
        not an opt-in, is its basis). An explicit refusal still blocks it."""
        found = self.consents.get((channel, purpose))
        if found is None and purpose == "transactional" and channel == "email":
            return self.customer
        return bool(found)


EMPTY = PolicyFacts()


def max_defer_of(settings: Settings, override: timedelta | None = None) -> timedelta:
    """The cap deferral limit: the argument, else the `policy_max_defer_days` setting."""
    if override is not None:
        return override
    return timedelta(days=settings.policy_max_defer_days)


class _Policy:
    """The settings as the rules use them, worked out once per batch."""

    def __init__(self, settings: Settings, max_defer: timedelta | None) -> None:
        self.zone = settings.zone
        self.quiet = quiet_hours(settings.quiet_hours)
        self.max_defer = max_defer_of(settings, max_defer)
        days = settings.purchase_cooldown_days
        self.cooldown = timedelta(days=days) if days > 0 else None
        self._caps = settings.frequency_caps
        self._by_channel: dict[str, list[Cap]] = {}

    def caps(self, channel: str) -> list[Cap]:
        if channel not in self._by_channel:
            self._by_channel[channel] = caps_for(channel, self._caps)
        return self._by_channel[channel]


def decide(
    facts: PolicyFacts,
    request: SendRequest,
    settings: Settings,
    *,
    max_defer: timedelta | None = None,
) -> Decision:
    """Whether `request` may go at its `when`, later, or never, given `facts`."""
    return _decide(facts, request, _Policy(settings, max_defer))


def _decide(facts: PolicyFacts, request: SendRequest, policy: _Policy) -> Decision:
    blocked = _blocked(facts, request)
    if blocked is not None:
        return Decision.block(blocked)
    zone = zone_named(facts.timezone) or policy.zone
    when = as_utc(request.when)
    marketing = request.purpose == "marketing"
    cooldown_end = _cooldown_end(facts, request, policy.cooldown) if marketing else None
    caps = policy.caps(request.channel) if marketing else []
    counted = effective(facts.messages, when, request.message_id) if caps else []
    quiet = policy.quiet
    # a cap may hold a send back this long after it could otherwise go
    latest = max(when, cooldown_end or when) + policy.max_defer

    def failure(at: datetime) -> tuple[str, datetime | None] | None:
        """The first rule that objects at `at`, and the first instant it would not."""
        if cooldown_end is not None and at < cooldown_end:
            return PURCHASE_COOLDOWN, cooldown_end
        for cap in caps:
            if is_full(cap, counted, at, zone):
                return cap.code, frees_at(cap, counted, at, zone, latest)
        if quiet is not None and quiet.inside(at, zone):
            return QUIET_HOURS, quiet.end_after(at, zone)
        return None

    step = failure(when)
    if step is None:
        return Decision.allow()
    reason = step[0]
    if reason.startswith("cap:") and (quiet is None or not quiet.inside(when, zone)):
        taken = bumps(caps, counted, when, zone, request.priority)
        if taken:
            return Decision.allow(taken)
    for _ in range(MAX_STEPS):
        code, later = step
        if later is None:
            return Decision.block(code)
        step = failure(later)
        if step is None:
            return Decision.defer(later, reason)
    return Decision.block(reason)


def decide_many(
    facts: Mapping[int, PolicyFacts],
    requests: Sequence[SendRequest],
    settings: Settings,
    *,
    max_defer: timedelta | None = None,
) -> list[Decision]:
    """`decide` for many requests, facts by contact id; the decisions in request order.

    Requests are decided by priority (highest first), then time, then position, and each
    decision is taken as carried out before the next for the same contact: an allowed send
    counts (queued at its time, or sending when it claims a row), a claimed row that is not
    allowed stops counting, and bumped rows stop counting. So a batch decides exactly as
    `decide` would, one request at a time in that order, with the engine writing each result.
    """
    policy = _Policy(settings, max_defer)
    order = sorted(
        range(len(requests)),
        key=lambda i: (-requests[i].priority, as_utc(requests[i].when), i),
    )
    left = Counter(r.contact_id for r in requests)
    live: dict[int, PolicyFacts] = {}
    out: list[Decision] = [Decision.block(NO_CONSENT)] * len(requests)
    for i in order:
        request = requests[i]
        current = live.get(request.contact_id) or facts.get(request.contact_id, EMPTY)
        decision = _decide(current, request, policy)
        out[i] = decision
        left[request.contact_id] -= 1
        if left[request.contact_id]:  # more to decide for this contact: carry this one out
            live[request.contact_id] = carried_out(current, request, decision)
    return out


def carried_out(facts: PolicyFacts, request: SendRequest, decision: Decision) -> PolicyFacts:
    """The facts after the engine acted on `decision` for `request`."""
    gone = set(decision.bump)
    if request.message_id is not None:
        gone.add(request.message_id)
    messages = [m for m in facts.messages if m.id is None or m.id not in gone]
    if decision.allowed and request.purpose == "marketing":
        status = "queued" if request.message_id is None else "sending"
        messages.append(
            Counted(
                request.message_id, request.channel, as_utc(request.when), request.priority, status
            )
        )
    if len(messages) == len(facts.messages) and not decision.allowed:
        return facts
    return replace(facts, messages=tuple(messages))


def _blocked(facts: PolicyFacts, request: SendRequest) -> str | None:
    if not facts.granted(request.channel, request.purpose):
        return NO_CONSENT
    address_field = ADDRESS_FIELD.get(request.channel)
    if address_field is not None and not getattr(facts, address_field):
        return NO_ADDRESS
    why = facts.suppressed.get(request.channel)
    if why:
        return suppressed(why)
    paused = facts.paused_until
    if request.purpose == "marketing" and paused is not None and as_utc(request.when) < paused:
        return PAUSED_AFTER_FEEDBACK
    return None


def _cooldown_end(
    facts: PolicyFacts, request: SendRequest, cooldown: timedelta | None
) -> datetime | None:
    if cooldown is None:
        return None
    known = [as_utc(t) for t in (facts.last_order_at, request.last_order_at) if t is not None]
    return max(known) + cooldown if known else None
