"""The seam between deciding to send and a channel that sends: one message in, a receipt or
one of two failures out. A channel never decides whether to send (the contact policy does)
and never retries on its own beyond what its provider's protocol asks for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reengage.errors import ReengageError


@dataclass(frozen=True)
class Outgoing:
    """A rendered message for one address on one channel.

    `message_id` is the outbox row's id: the channel derives the Message-ID header or the
    provider's idempotency key from it, so a retry after a crash is recognisable.

    `handing`, when set, is called by the channel right before the write that hands the
    message over for good (SMTP's final dot, the provider's HTTP request; see `hand_over`).
    It records the hand-over, so a row found half-sent after a crash is not sent again; it
    may raise, and then nothing must be written. A channel that ignores it keeps the
    at-least-once behaviour.
    """

    message_id: int
    channel: str
    to: str
    subject: str | None = None
    text: str = ""
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    handing: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Receipt:
    """What the provider answered: its id for the message, when it gives one."""

    provider_id: str | None = None


class DeliveryError(ReengageError):
    """A send that did not go through."""


class TemporaryFailure(DeliveryError):
    """Try again later (a 4xx SMTP reply, an HTTP 429 or 5xx, a dropped connection)."""


class PermanentFailure(DeliveryError):
    """Do not try again (a 5xx SMTP reply, an invalid number, a revoked subscription); the
    caller suppresses the address when the provider says it does not exist."""

    def __init__(self, message: str, *, suppress: bool = False) -> None:
        super().__init__(message)
        self.suppress = suppress


def hand_over(message: Outgoing) -> None:
    """Call `message.handing`, if any. After it returned, a failure of the send must not be
    retried inside the channel: raise it, so the caller puts the row back (and clears the
    mark) before anyone waits."""
    if message.handing is not None:
        message.handing()


class Channel(Protocol):
    name: str

    def send(self, message: Outgoing) -> Receipt: ...

    def close(self) -> None: ...
