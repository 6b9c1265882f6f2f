"""The hand-over mark, on SQLite and PostgreSQL: a dispatcher process killed with SIGKILL
around the moment it gives a message to a real SMTP server (aiosmtpd), then a later run
after the lease. Killed before the mark, the message is sent once by the later run; killed
after the mark — in the window before the final dot, or after the server accepted it — it
is never sent again: the row ends `sent`, unconfirmed."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from test_dispatch import PUBLIC, SHOP, T0, Shop, smtp_server

from reengage.channels.delivery import Outgoing, Receipt
from reengage.channels.mail import MailBuilder
from reengage.channels.smtp import SmtpChannel, parse_smtp_url
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.messages.dispatch import LEASE, UNCONFIRMED, claim

# A dispatcher that kills itself (SIGKILL: no cleanup, the kernel closes its sockets) at
# `when`: "before" the hand-over mark is written, "window" after it is committed and before
# the final dot goes out, "accepted" after the server accepted the message and before the
# row is marked sent.
DYING = """
import dataclasses, json, os, signal, sys
from datetime import datetime

from reengage.channels.mail import MailBuilder
from reengage.channels.smtp import SmtpChannel, parse_smtp_url
from reengage.channels.delivery import Outgoing, Receipt
from reengage.channels.mail import MailBuilder
from reengage.channels.smtp import SmtpChannel, parse_smtp_url
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.messages.dispatch import deliver_due
from reengage.state.db import engine_for

given = json.loads(sys.argv[1])
settings = load_settings().model_copy(update=given["settings"])
clock = FixedClock(datetime.fromisoformat(given["now"]))
real = SmtpChannel(
    parse_smtp_url(settings.smtp_url), MailBuilder(settings), clock, sleep=lambda s: None
)
when = given["when"]


def die():
    print("dying", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class Dying:
    name = "email"

    def send(self, message):
        mark = message.handing

        def handing():
            if when == "before":
                die()
            mark()
            if when == "window":
                die()

        receipt = real.send(dataclasses.replace(message, handing=handing))
        if when == "accepted":
            die()
        return receipt

    def close(self):
        real.close()


deliver_due(Home(settings), engine_for(settings.state_url), clock, threads=1,
            channels={"email": Dying()})
print("survived", flush=True)
"""


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str]) -> Shop:
    settings = load_settings(env).model_copy(
        update={
            "public_url": PUBLIC,
            "shop_url": SHOP,
            "shop_name": "Bottega",
            "mail_from": "Bottega <news@shop.example.com>",
        }
    )
    return Shop(Home(settings), engine, FixedClock(T0))


def _dispatcher_dies(shop: Shop, port: int, when: str) -> None:
    given = {
        "when": when,
        "now": shop.clock.now().isoformat(),
        "settings": {
            "public_url": PUBLIC,
            "shop_url": SHOP,
            "shop_name": "Bottega",
            "mail_from": "Bottega <news@shop.example.com>",
            "smtp_url": f"smtp://127.0.0.1:{port}",
        },
    }
    done = subprocess.run(
        [sys.executable, "-c", DYING, json.dumps(given)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stdout + done.stderr
    assert done.stdout.strip() == "dying"


@pytest.mark.parametrize("when", ["window", "accepted"])
def test_a_dispatcher_killed_after_the_hand_over_never_sends_again(shop: Shop, when: str) -> None:
    held = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        _dispatcher_dies(shop, port, when)
        row = shop.row(held)
        assert (row.status, row.attempts) == ("sending", 1)
        assert row.handed_at is not None and row.sent_at is None
        # the window: the body went out, not the dot, so the server dropped it; after it:
        # the server took the message
        assert len(inbox.parsed()) == (when == "accepted")

        shop = shop.with_settings(smtp_url=f"smtp://127.0.0.1:{port}")
        assert shop.deliver().as_dict()["unconfirmed"] == 0  # the lease still holds
        shop.clock.advance(LEASE + timedelta(seconds=1))
        summary = shop.deliver()
        assert (summary.claimed, summary.sent, summary.unconfirmed) == (0, 0, 1)
        shop.clock.advance(LEASE * 2)
        again = shop.deliver()
        assert (again.claimed, again.unconfirmed) == (0, 0)
        assert len(inbox.parsed()) == (when == "accepted")
    row = shop.row(held)
    assert (row.status, row.reason, row.attempts) == ("sent", UNCONFIRMED, 1)
    assert row.sent_at == row.handed_at
    [event] = shop.events()
    assert (event["type"], event["message_id"]) == ("sent", str(held))


def test_a_dispatcher_killed_before_the_hand_over_sends_once_later(shop: Shop) -> None:
    held = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        _dispatcher_dies(shop, port, "before")
        row = shop.row(held)
        assert (row.status, row.handed_at) == ("sending", None)
        assert inbox.parsed() == []  # it had the body, never the dot: it dropped it

        shop = shop.with_settings(smtp_url=f"smtp://127.0.0.1:{port}")
        shop.clock.advance(LEASE + timedelta(seconds=1))
        summary = shop.deliver()
        assert (summary.claimed, summary.reclaimed, summary.sent) == (1, 1, 1)
        assert summary.unconfirmed == 0
        shop.clock.advance(LEASE * 2)
        assert shop.deliver().claimed == 0
        assert list(inbox.ids().values()) == [1]
    row = shop.row(held)
    assert (row.status, row.reason, row.attempts) == ("sent", None, 2)
    assert row.handed_at is not None and row.provider_id == "Q1"


def test_a_worker_that_lost_its_claim_does_not_hand_the_message_over(shop: Shop) -> None:
    """Its lease ran out while it was busy and another dispatcher took the row: the
    hand-over mark is fenced by the claim, so it fails, and nothing reaches the server."""
    held = shop.queue(shop.person())
    with smtp_server() as (inbox, port):
        real = SmtpChannel(
            parse_smtp_url(f"smtp://127.0.0.1:{port}"),
            MailBuilder(shop.settings),
            shop.clock,
            sleep=lambda _s: None,
        )
        taken: list[int] = []

        class Slow:
            name = "email"

            def send(self, message: Outgoing) -> Receipt:
                shop.clock.advance(LEASE + timedelta(seconds=1))
                taken.extend(r.id for r in claim(shop.engine, shop.clock, limit=10))
                return real.send(message)

            def close(self) -> None:
                real.close()

        # limit=1: the run itself must not take the row back as stale once the clock moved
        summary = shop.deliver(channels={"email": Slow()}, limit=1)
        assert (summary.sent, summary.lost) == (0, 1)
        assert taken == [held]
        assert inbox.parsed() == []
    row = shop.row(held)
    assert (row.status, row.attempts, row.handed_at) == ("sending", 2, None)
