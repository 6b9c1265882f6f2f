"""The email channel: `email_channel(settings, clock)` gives the one the settings ask for.

- With `smtp_url` set: `SmtpChannel`, through that server (see `reengage.channels.smtp`).
- Without: `MaildirChannel`, which files every message in the maildir `<home>/mail`: the
  demo's sink, readable by any mail client (mutt -f, Thunderbird's maildir support) or by
  `mailbox.Maildir`.

Both build the same bytes (`reengage.channels.mail`): Message-ID, Date, the one-click
unsubscribe headers, the DKIM signature when a key is set.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from reengage.channels.delivery import Channel, Outgoing, Receipt, TemporaryFailure
from reengage.channels.mail import (
    MailBuilder,
    build_message,
    message_id_for,
    outbox_id_from_message_id,
    unsubscribe_token,
)
from reengage.channels.smtp import SmtpChannel, SmtpConfig, parse_smtp_url
from reengage.clock import Clock
from reengage.config import Settings

__all__ = [
    "MailBuilder",
    "MaildirChannel",
    "SmtpChannel",
    "SmtpConfig",
    "build_message",
    "email_channel",
    "message_id_for",
    "outbox_id_from_message_id",
    "parse_smtp_url",
    "unsubscribe_token",
]


class MaildirChannel:
    """Files each message in a maildir instead of sending it.

    A message's file is named after its outbox id (`reengage.<id>.<tag>`), so filing the same
    outbox row twice (a retry after a crash) leaves one message, not two. The file is written
    in `tmp/`, synced, then renamed into `new/`, as the maildir format asks.
    """

    name = "email"

    def __init__(self, path: Path, builder: MailBuilder, clock: Clock) -> None:
        self.path = Path(path)
        self.builder = builder
        self.clock = clock
        self._lock = threading.Lock()
        self._filed: set[str] | None = None  # the keys in new/ and cur/, read at first send
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> MaildirChannel:
        return cls(settings.mail_path, MailBuilder(settings), clock)

    def send(self, message: Outgoing) -> Receipt:
        data = self.builder.render(message, at=self.clock.now()).replace(b"\r\n", b"\n")
        key = self.builder.message_id(message.message_id).strip("<>").split("@")[0]
        with self._lock:
            if self._filed is None:
                self._filed = self._scan()
            if key in self._filed:
                return Receipt(provider_id=key)
            tmp = self.path / "tmp" / key
            try:
                with open(tmp, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path / "new" / key)
                self._filed.add(key)
            except OSError as exc:
                raise TemporaryFailure(
                    f"outbox {message.message_id}: cannot write to the maildir {self.path} "
                    f"({exc.strerror})"
                ) from None
        return Receipt(provider_id=key)

    def _scan(self) -> set[str]:
        # a mail reader moves read messages to cur/ and appends ":2,<flags>" to the name
        return {
            entry.name.split(":", 1)[0]
            for sub in ("new", "cur")
            for entry in os.scandir(self.path / sub)
        }

    def close(self) -> None:
        pass


def email_channel(settings: Settings, clock: Clock) -> Channel:
    """The email channel the settings configure: SMTP when `smtp_url` is set, the home's
    maildir otherwise. ConfigError for a bad `smtp_url`, `mail_from` or DKIM setting."""
    if settings.smtp_url:
        return SmtpChannel.from_settings(settings, clock)
    return MaildirChannel.from_settings(settings, clock)
