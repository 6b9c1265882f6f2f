"""Per-channel rate limits (`rate_limits`, messages per minute, a sliding window of 60 s
counted from the outbox), on SQLite and PostgreSQL: a run takes at most the limit less the
channel's claims of the last minute, says how many rows it left and when the window frees,
concurrent dispatchers share one limit, and other channels go on."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from test_dispatch import PUBLIC, SHOP, T0, Shop
from typer.testing import CliRunner

from reengage.channels.delivery import Outgoing, Receipt
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.state.schema import consents, contacts, messages

MINUTE = timedelta(seconds=60)


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


def _emails(shop: Shop, n: int) -> list[int]:
    return [shop.queue(shop.person()) for _ in range(n)]


def _sent(shop: Shop) -> int:
    with shop.engine.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(messages.c.status == "sent")).scalar_one()
        )


class Texts:
    """An SMS channel that keeps what it is given."""

    name = "sms"

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.lock = threading.Lock()

    def send(self, message: Outgoing) -> Receipt:
        if message.handing is not None:
            message.handing()
        with self.lock:
            self.sent.append(message)
        return Receipt(f"SM{message.message_id}")

    def close(self) -> None:
        pass


def _texts(shop: Shop, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        contact = shop.person()
        with shop.engine.begin() as conn:
            conn.execute(
                contacts.update()
                .where(contacts.c.id == contact)
                .values(phone="333 123 4567", country="IT")
            )
            conn.execute(
                consents.insert().values(
                    contact_id=contact,
                    channel="sms",
                    purpose="marketing",
                    granted=True,
                    source="signup",
                    recorded_at=T0 - timedelta(days=10),
                )
            )
        ids.append(shop.queue(contact, channel="sms"))
    return ids


def test_a_limit_of_five_a_minute_sends_five_then_waits_for_the_window(shop: Shop) -> None:
    _emails(shop, 12)
    shop = shop.with_settings(rate_limits={"email": 5})
    first = shop.deliver()
    assert (first.claimed, first.sent, first.throttled) == (5, 5, 7)
    assert first.resume_at == T0 + MINUTE

    shop.clock.advance(timedelta(seconds=30))
    held = shop.deliver()
    assert (held.claimed, held.sent, held.throttled) == (0, 0, 7)
    assert held.resume_at == T0 + MINUTE  # the first claims leave the window then

    shop.clock.advance(timedelta(seconds=31))  # t + 61 s
    second = shop.deliver()
    assert (second.claimed, second.sent, second.throttled) == (5, 5, 2)
    assert second.resume_at == T0 + timedelta(seconds=61) + MINUTE

    shop.clock.advance(MINUTE + timedelta(seconds=1))
    last = shop.deliver()
    assert (last.sent, last.throttled, last.resume_at) == (2, 0, None)
    assert shop.statuses() == Counter({"sent": 12})


def test_a_run_smaller_than_its_batch_fills_the_window_batch_by_batch(shop: Shop) -> None:
    _emails(shop, 12)
    shop = shop.with_settings(rate_limits={"email": 5})
    summary = shop.deliver(batch_size=2)
    assert (summary.sent, summary.throttled) == (5, 7)


@pytest.mark.parametrize("dispatchers", [3])
def test_concurrent_dispatchers_share_one_limit(shop: Shop, dispatchers: int) -> None:
    _emails(shop, 12)
    shop = shop.with_settings(rate_limits={"email": 5})
    summaries: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(dispatchers)

    def work() -> None:
        try:
            start.wait()
            summaries.append(shop.deliver(batch_size=2, threads=2))
        except BaseException as exc:
            errors.append(exc)

    for window in range(3):  # 5, 5, then the last 2
        workers = [threading.Thread(target=work) for _ in range(dispatchers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert sum(s.sent for s in summaries) == _sent(shop) == min(12, 5 * (window + 1))
        with shop.engine.connect() as conn:
            recent = conn.execute(
                select(func.count()).where(
                    messages.c.channel == "email",
                    messages.c.claimed_at > shop.clock.now() - MINUTE,
                )
            ).scalar_one()
        assert recent == min(5, 12 - 5 * window)
        shop.clock.advance(MINUTE + timedelta(seconds=1))
    assert _sent(shop) == 12
    assert shop.statuses() == Counter({"sent": 12})


def test_channels_without_a_limit_are_not_held_back(shop: Shop) -> None:
    _emails(shop, 6)
    texts = _texts(shop, 4)
    sms = Texts()
    limited = shop.with_settings(rate_limits={"sms": 2})
    summary = limited.deliver(channels={"sms": sms})
    assert (summary.sent, summary.throttled) == (8, 2)
    assert summary.resume_at == T0 + MINUTE
    assert len(sms.sent) == 2
    assert Counter(shop.row(i).status for i in texts) == Counter({"sent": 2, "queued": 2})
    # an email-only run does not see the SMS window at all
    assert limited.deliver(channel="email").throttled == 0


def test_unlimited_channels_send_everything(shop: Shop) -> None:
    _emails(shop, 12)
    summary = shop.with_settings(rate_limits={"sms": 1, "push": 1}).deliver(batch_size=5)
    assert (summary.sent, summary.throttled, summary.resume_at) == (12, 0, None)


def test_the_deliver_command_says_what_the_limit_left_and_what_went_unconfirmed(
    shop: Shop, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "REENGAGE_PUBLIC_URL": PUBLIC,
        "REENGAGE_SHOP_URL": SHOP,
        "REENGAGE_SHOP_NAME": "Bottega",
        "REENGAGE_MAIL_FROM": "Bottega <news@shop.example.com>",
        "REENGAGE_RATE_LIMITS": '{"email": 5}',
    }.items():
        monkeypatch.setenv(name, value)
    _emails(shop, 7)
    [handed] = _emails(shop, 1)
    with shop.engine.begin() as conn:  # a dead worker was handing it over 20 minutes ago
        conn.execute(
            messages.update()
            .where(messages.c.id == handed)
            .values(
                status="sending",
                attempts=1,
                claimed_at=T0 - timedelta(minutes=20),
                handed_at=T0 - timedelta(minutes=20),
            )
        )

    now = ["--now", T0.isoformat()]
    first = cli.invoke(app, [*now, "messages", "deliver"])
    assert first.exit_code == 0, first.output
    assert "Delivered 5 of 5 due" in first.stdout
    assert "2 throttled" in first.stdout
    assert "the window frees at 2026-11-02 10:01:00 UTC" in first.stdout
    assert "1 unconfirmed" in first.stdout
    assert shop.row(handed).status == "sent"

    later = ["--now", (T0 + timedelta(seconds=30)).isoformat()]
    held = cli.invoke(app, [*later, "messages", "deliver", "--json"])
    assert held.exit_code == 0, held.output
    summary = json.loads(held.stdout)
    assert (summary["sent"], summary["throttled"], summary["unconfirmed"]) == (0, 2, 0)
    assert summary["resume_at"].startswith("2026-11-02 10:01:00")

    last = ["--now", (T0 + MINUTE + timedelta(seconds=1)).isoformat()]
    done = cli.invoke(app, [*last, "messages", "deliver"])
    assert done.exit_code == 0, done.output
    assert "Delivered 2 of 2 due" in done.stdout
    assert "throttled" not in done.stdout and "unconfirmed" not in done.stdout
