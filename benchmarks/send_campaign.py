"""A campaign end to end: render and send `--count` personalised emails from the outbox into a
local SMTP server, against a bare smtplib loop sending one fixed message over one connection
into the same server, in the same run. Issue 5's goal: at least a third of the bare rate.

    python -m benchmarks.send_campaign [--count 100000] [--threads 4] [--pool 4]
                                       [--batch 500] [--database-url postgresql://...]

Setup (not timed): a fresh home (SQLite by default) with `count` contacts bulk-inserted
(`state.db.bulk_insert`) in three languages and five time zones, email consents (marketing
and transactional), a scores row each with one of the four styles or none, 200 products;
then `count` messages queued with `enqueue_many`: cart reminders and incentives (half with
the cart in the payload, half with the cart read from the contact's scores), win-back,
VIP thanks and order thank-yous, so every style, language and several layouts are rendered.

Timed:
- bare: `smtplib` sending one pre-built message `count` times over one connection (half
  before reengage's run and half after, so both see the same machine on average). The
  message is one of the campaign's kind — a cart reminder rendered with the same layout and
  built by the same `MailBuilder`, about 16 KB — because aiosmtpd's cost grows with the size
  of what it reads; the 1 KB message of benchmarks/send_email.py is sent `count / 4` times
  too, and the ratio to it reported as `ratio_to_small`;
- reengage: `deliver_due` — claim, the contact policy for every message, batch contexts,
  render (HTML, text), signed links (click-tracked links, open pixel, unsubscribe), build the
  MIME message with its headers, send through a pool of `--pool` connections from
  `--threads` threads, mark each row sent, write the `sent` events.

The server is aiosmtpd in a child process whose handler only counts (as in
benchmarks/send_email.py): it is pure Python and bounds both rates, so the sender's own CPU
time per message is reported too.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from benchmarks.common import report, scratch, timed
from benchmarks.send_email import CountingServer, bare
from reengage.channels.delivery import Outgoing
from reengage.channels.mail import MailBuilder
from reengage.clock import FixedClock
from reengage.config import Home, Settings
from reengage.home import init_home
from reengage.messages.context import format_money
from reengage.messages.copy import Catalogue, sample_context
from reengage.messages.dispatch import deliver_due
from reengage.messages.outbox import OutboxItem, enqueue_many
from reengage.messages.render import Links, Renderer
from reengage.state.db import bulk_insert, engine_for
from reengage.state.schema import consents, contacts, messages, products, scores

# Monday 2 November 2026, 15:00 UTC: daytime in every zone below (no quiet hours)
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
SHOP = "https://bottega.example.com"
LANGUAGES = ("en", "it", "fr", "fr-FR", None)
ZONES = ("Europe/Rome", "Europe/London", "America/New_York", "Europe/Helsinki", None)
STYLES = ("go_getter", "promoter", "nurturer", "examiner", None)
NAMES = ("Anna", "Luca", "Chloé", "Jean-Baptiste", "Sam", "Giulia", "Élodie", "Noah", "")
INTENTS = ("cart_reminder", "cart_incentive", "winback_reminder", "vip_thanks", "thank_you")
WORDS = ("linen", "wool", "leather", "canvas", "cashmere", "travel", "city", "classic")
THINGS = ("shirt", "scarf", "bag", "jacket", "belt", "wallet", "sweater", "boots")


def settings_for(home: Any, port: int, pool: int, database_url: str | None) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        secret_key="benchmark-secret-" + "x" * 32,
        public_url="https://links.bottega.example.com",
        shop_url=SHOP,
        shop_name="Bottega",
        mail_from="Bottega <news@bottega.example.com>",
        smtp_url=f"smtp://127.0.0.1:{port}?pool={pool}",
    )


def populate(settings: Settings, count: int, seed: int) -> None:
    """Contacts, consents, scores, products (bulk), then the outbox (enqueue_many)."""
    rng = random.Random(seed)
    engine = engine_for(settings.state_url)
    at = NOW - timedelta(days=200)
    catalogue = [
        {
            "product_id": f"P{i:04d}",
            "title": f"{rng.choice(WORDS).title()} {rng.choice(THINGS)} {i}",
            "category": rng.choice(THINGS),
            "price": round(rng.uniform(9, 400), 2),
            "currency": "EUR",
            "url": f"{SHOP}/products/P{i:04d}",
            "image_url": f"{SHOP}/images/P{i:04d}.jpg",
            "in_stock": True,
            "created_at": at,
            "updated_at": at,
            "origin": "benchmark",
        }
        for i in range(200)
    ]
    people, grants, scored = [], [], []
    for n in range(1, count + 1):
        people.append(
            {
                "id": n,
                "customer_id": f"C{n:07d}",
                "email": f"person{n}@example.org",
                "first_name": NAMES[n % len(NAMES)],
                "language": LANGUAGES[n % len(LANGUAGES)],
                "timezone": ZONES[(n // 5) % len(ZONES)],
                "created_at": at,
                "updated_at": at,
                "origin": "benchmark",
                "attributes": {},
            }
        )
        for purpose in ("marketing", "transactional"):
            grants.append(
                {
                    "contact_id": n,
                    "channel": "email",
                    "purpose": purpose,
                    "granted": True,
                    "source": "signup",
                    "recorded_at": at,
                }
            )
        cart = rng.sample(range(200), rng.randint(1, 3))
        scored.append(
            {
                "contact_id": n,
                "as_of": NOW - timedelta(days=1),
                "computed_at": NOW - timedelta(days=1),
                "orders": 2,
                "recency_days": 40.0,
                "total_spent": 180.0,
                "lifecycle": "active",
                "threshold_days": 120.0,
                "style": STYLES[(n // 25) % len(STYLES)],
                "details": {"cart_products": [f"P{i:04d}" for i in cart]},
            }
        )
    with engine.begin() as conn:
        bulk_insert(conn, products, catalogue)
        bulk_insert(conn, contacts, people)
        bulk_insert(conn, consents, grants)
        bulk_insert(conn, scores, scored)
    if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('contacts', 'id'), "
                "(SELECT max(id) FROM contacts))"
            )
    items = []
    for n in range(1, count + 1):
        intent = INTENTS[n % len(INTENTS)]
        payload: dict[str, Any] = {}
        if intent.startswith("cart_") and n % 2:
            # the decider put the cart in the payload, formatted in the contact's language
            language = (LANGUAGES[n % len(LANGUAGES)] or "en")[:2]
            lines = [catalogue[i] for i in rng.sample(range(200), rng.randint(1, 4))]
            payload = {
                "cart": [
                    {
                        "title": p["title"],
                        "price": format_money(p["price"], "EUR", language),
                        "quantity": 1,
                        "url": p["url"],
                        "image_url": p["image_url"],
                    }
                    for p in lines
                ],
                "cart_total": format_money(sum(p["price"] for p in lines), "EUR", language),
                "cart_count": len(lines),
                "cart_url": f"{SHOP}/cart?restore={n}",
            }
        items.append(
            OutboxItem(
                message_key=f"campaign:autumn:{n}",
                contact_id=n,
                intent=intent,
                channel="email",
                due_at=NOW - timedelta(minutes=5),
                campaign="autumn",
                priority=20,
                payload=payload,
            )
        )
    clock = FixedClock(NOW)
    with engine.begin() as conn:
        for start in range(0, len(items), 10_000):
            enqueue_many(conn, items[start : start + 10_000], clock=clock, settings=settings)
    engine.dispose()


def baseline_messages(settings: Settings) -> tuple[bytes, bytes]:
    """The bare loop's fixed message: a cart reminder of the campaign's kind, rendered with
    the same layout and built by the same `MailBuilder`, so both sides move the same bytes
    per message (aiosmtpd reads DATA line by line: its cost grows with the size). And a
    1 KB message, the baseline of benchmarks/send_email.py, for reference."""
    context = sample_context("it", "EUR")
    base = settings.public_url
    token = "eyJjIjoxMjM0NSwibSI6MTIzNDV9.aWRlbnRpY2FsLWxlbmd0aC10by1hLXJlYWwtc2lnbmF0dXJl"
    links = Links(
        unsubscribe=f"{base}/l/u/{token}",
        preferences=f"{base}/l/p/{token}",
        track=lambda url: f"{base}/l/c/{token}{len(url)}",
    )
    rendered = Renderer(Catalogue.for_settings(settings)).render(
        "cart_reminder", "go_getter", "it", context, links
    )
    pixel = f'<img src="{base}/l/o/{token}.gif" width="1" height="1" alt="" />'
    builder = MailBuilder(settings)
    fixed = builder.render(
        Outgoing(
            12345,
            "email",
            "person@example.org",
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html.replace("</body>", pixel + "</body>"),
            headers={"Feedback-ID": "autumn:cart_reminder:reengage"},
            data={"contact_id": 12345},
        ),
        at=NOW,
    )
    small = builder.render(
        Outgoing(
            0,
            "email",
            "person@example.org",
            subject="Your cart is saved",
            text="Hello,\n\nyour cart is saved.\n",
            html="<p>Hello,</p><p>your cart is saved.</p>",
            data={"contact_id": 0},
        ),
        at=NOW,
    )
    return fixed, small


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    args = parser.parse_args()
    folder = scratch("send_campaign") / "home"
    shutil.rmtree(folder, ignore_errors=True)
    server = CountingServer()
    try:
        settings = settings_for(folder, server.port, args.pool, args.database_url)
        init_home(settings)
        with timed() as setup:
            populate(settings, args.count, args.seed)
        fixed, small = baseline_messages(settings)
        small_count = max(1, args.count // 4)
        small_seconds, _ = bare(server.port, small_count, small)
        after_small = server.accepted()
        first_half = args.count // 2
        bare_a, bare_cpu_a = bare(server.port, first_half, fixed)
        after_bare_a = server.accepted() - after_small

        engine = engine_for(settings.state_url)
        cpu = time.process_time()
        with timed() as elapsed:
            summary = deliver_due(
                Home(settings),
                engine,
                FixedClock(NOW),
                threads=args.threads,
                batch_size=args.batch,
            )
        ours_seconds, ours_cpu = elapsed(), time.process_time() - cpu
        with engine.connect() as conn:
            sent_rows = conn.execute(
                select(func.count()).where(messages.c.status == "sent")
            ).scalar_one()
        engine.dispose()
        after_ours = server.accepted() - after_small - after_bare_a

        bare_b, bare_cpu_b = bare(server.port, args.count - first_half, fixed)
        after_bare_b = server.accepted() - after_small - after_bare_a - after_ours
    finally:
        server.stop()
    if (after_small, after_bare_a + after_bare_b, after_ours, sent_rows) != (
        small_count,
        *(args.count,) * 3,
    ):
        raise SystemExit(
            f"server accepted {after_bare_a + after_bare_b} bare and {after_ours} of ours, "
            f"{sent_rows} rows sent; expected {args.count} each ({summary.as_dict()})"
        )
    bare_seconds, bare_cpu = bare_a + bare_b, bare_cpu_a + bare_cpu_b
    bare_rate, ours_rate = args.count / bare_seconds, args.count / ours_seconds
    report(
        "send_campaign",
        {
            "messages": args.count,
            "database": engine.dialect.name,
            "threads": args.threads,
            "pool": args.pool,
            "batch": args.batch,
            "setup_seconds": round(setup(), 1),
            "message_bytes": len(fixed),
            "bare_seconds": round(bare_seconds, 2),
            "bare_per_second": round(bare_rate),
            "bare_small_bytes": len(small),
            "bare_small_per_second": round(small_count / small_seconds),
            "reengage_seconds": round(ours_seconds, 2),
            "reengage_per_second": round(ours_rate),
            "ratio": round(ours_rate / bare_rate, 3),
            "bare_cpu_us_per_message": round(bare_cpu / args.count * 1e6),
            "reengage_cpu_us_per_message": round(ours_cpu / args.count * 1e6),
            "ratio_to_small": round(ours_rate / (small_count / small_seconds), 3),
            "goal": ">= 0.333",
        },
    )


if __name__ == "__main__":
    main()
