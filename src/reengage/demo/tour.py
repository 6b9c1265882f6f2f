"""`reengage demo`: a synthetic shop, imported and put through every capability built so far.

The shop is pinned on the first run (seed, size, last day of history in `demo-shop/shop.json`),
so running the demo again re-imports the very same files and adds nothing.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select

from reengage.analytics.scoring import score
from reengage.campaigns.report import print_results
from reengage.clock import Clock
from reengage.config import Home, Settings
from reengage.demo.campaigns import SIMULATED_DAYS, run_campaigns
from reengage.facts import reader
from reengage.facts.compact import compact
from reengage.home import init_home, open_state, status
from reengage.ingest.importer import import_file
from reengage.state.schema import enrollments, messages

IMPORT_ORDER = ("products", "customers", "orders", "events")
REPLAY_DAYS = 21


def _pinned_shop(folder: Path, customers: int, seed: int, today: date) -> tuple[date, bool]:
    """The shop's last day, and whether the files on disk already are that shop."""
    pin = folder / "shop.json"
    if pin.is_file():
        saved = json.loads(pin.read_text())
        end = date.fromisoformat(saved["end"])
        same = saved.get("customers") == customers and saved.get("seed") == seed
        return end, same and all((folder / f"{k}.csv").is_file() for k in IMPORT_ORDER)
    return today, False


def run_demo(
    settings: Settings,
    *,
    customers: int,
    seed: int,
    clock: Clock,
    console: Console | None,
    relational: bool = False,
    congruence: float | None = None,
) -> dict[str, Any]:
    """The demo; with `relational`, then the relational simulation (demo.relational) on a
    shop of its own, customers answering with the given congruence effect."""
    from reengage.demo.synth import generate_shop

    say = console.print if console else (lambda *_a, **_k: None)
    settings = init_home(settings).home.settings  # with the secret a new home was given
    home, engine = open_state(settings)
    folder = settings.home / "demo-shop"
    folder.mkdir(parents=True, exist_ok=True)
    end, ready = _pinned_shop(folder, customers, seed, clock.now().date())
    if not ready:
        say(f"Generating a shop of {customers:,} customers (seed {seed}) ...")
        files = generate_shop(folder, customers=customers, seed=seed, end=end)
        (folder / "shop.json").write_text(
            json.dumps({"customers": customers, "seed": seed, "end": end.isoformat()})
        )
        shop_rows = files.counts
    else:
        say(f"Re-using the demo shop in {folder}")
        shop_rows = {}

    imported: dict[str, dict[str, Any]] = {}
    try:
        for kind in IMPORT_ORDER:
            summary = import_file(home, engine, kind, folder / f"{kind}.csv", clock=clock)
            imported[kind] = summary.as_dict()
            say(
                f"  import {kind:<10} read {summary.read:>9,}  new {summary.imported:>9,}  "
                f"already there {summary.duplicates:>9,}  rejected {summary.rejected:>5,}"
            )
        compacted = compact(settings.facts_path)
        if console:
            say(f"Running the built-in journeys over the last {REPLAY_DAYS} days ...")
        replayed = replay_journeys(home, engine, clock.now())
        scored = score(home, engine, as_of=clock.now(), clock=clock)
        if console:
            say(
                f"Running two campaigns over the next {SIMULATED_DAYS} days, on a simulated "
                "clock, with simulated customer responses ..."
            )
        campaigns = run_campaigns(home, engine, clock.now())
        held = status(home, engine)
        journeys = journey_report(engine)
    finally:
        engine.dispose()
    highlights = _highlights(settings.facts_path)

    if console:
        table = Table(title="Your demo shop", show_header=False)
        for key in ("contacts", "consents", "products", "orders", "order_lines", "events"):
            table.add_row(key.replace("_", " "), f"{held[key]:,}")
        for key, value in highlights.items():
            table.add_row(key.replace("_", " "), value if isinstance(value, str) else f"{value:,}")
        console.print(table)
        stages = Table(title=f"Where customers stand ({scored.as_of[:10]})", show_header=False)
        for stage, n in scored.lifecycle.items():
            stages.add_row(stage.replace("_", " "), f"{n:,}")
        console.print(stages)
        _print_journeys(console, journeys, settings.mail_path)
        _print_campaigns(console, campaigns)
        console.print(
            f"Home: {settings.home}. Run the demo again: it adds nothing twice. "
            f"Try `reengage contacts show C0000001` or `reengage contacts export --out c.csv`."
        )
    found: dict[str, Any] = {}
    if relational:
        from reengage.demo.relational import CONGRUENCE_EFFECT, run_relational_demo

        found = run_relational_demo(
            settings,
            now=clock.now(),
            congruence=CONGRUENCE_EFFECT if congruence is None else congruence,
            seed=seed,
            console=console,
        )
    return {
        **({"relational": found} if relational else {}),
        "home": str(settings.home),
        "shop_end": end.isoformat(),
        "generated": shop_rows,
        "imports": imported,
        "facts_files_merged": sum(r.files_before - r.files_after for r in compacted),
        "status": held,
        "scores": scored.__dict__,
        "highlights": highlights,
        "replay": replayed,
        "journeys": journeys,
        "campaigns": campaigns,
    }


def replay_journeys(home: Home, engine: Engine, now: datetime) -> dict[str, Any]:
    """Enable the built-in journeys and run the engine over the last weeks of the shop's
    history on a simulated clock, delivering to the home's mail folder: what a worker
    running all along would have sent. A second demo run resumes where this one stopped."""
    from reengage.journeys import builtin_names, enable_journey
    from reengage.journeys.runner import run_until

    for name in builtin_names():
        enable_journey(home, name)
    summary = run_until(
        home,
        engine,
        now,
        start=now - timedelta(days=REPLAY_DAYS),
        score_every=timedelta(days=7),
    )
    return summary.as_dict()


def journey_report(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per journey: contacts entered and held out, how enrollments ended, and the messages
    sent, blocked (by reason) and still waiting."""
    report: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return report.setdefault(
            name,
            {
                "entered": 0,
                "held_out": 0,
                "active": 0,
                "goal": 0,
                "sent": 0,
                "blocked": {},
                "waiting": 0,
            },
        )

    with engine.connect() as conn:
        for name, status_, n in conn.execute(
            select(enrollments.c.journey, enrollments.c.status, func.count()).group_by(
                enrollments.c.journey, enrollments.c.status
            )
        ):
            row = entry(name)
            row["entered"] += n
            if status_ in ("held_out", "active", "goal"):
                row[status_] += n
        for name, status_, reason, n in conn.execute(
            select(messages.c.journey, messages.c.status, messages.c.reason, func.count())
            .where(messages.c.journey.is_not(None))
            .group_by(messages.c.journey, messages.c.status, messages.c.reason)
        ):
            row = entry(name)
            if status_ == "sent":
                row["sent"] += n
            elif status_ == "blocked":
                why = (reason or "blocked").split(":")[0]
                row["blocked"][why] = row["blocked"].get(why, 0) + n
            elif status_ in ("queued", "deferred", "sending"):
                row["waiting"] += n
    return dict(sorted(report.items()))


def _print_journeys(console: Console, report: dict[str, dict[str, Any]], mail: Path) -> None:
    table = Table(title=f"Journeys over the last {REPLAY_DAYS} days")
    table.add_column("journey", no_wrap=True)
    for column in ("entered", "held out", "goal", "sent", "blocked", "waiting"):
        table.add_column(column, justify="right")
    reasons: dict[str, int] = {}
    for name, row in report.items():
        for why, n in row["blocked"].items():
            reasons[why] = reasons.get(why, 0) + n
        table.add_row(
            name,
            f"{row['entered']:,}",
            f"{row['held_out']:,}",
            f"{row['goal']:,}",
            f"{row['sent']:,}",
            f"{sum(row['blocked'].values()):,}",
            f"{row['waiting']:,}",
        )
    console.print(table)
    if reasons:
        why = ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))
        console.print(
            f"Blocked by the contact policy: {why}. Held-out contacts got nothing: the "
            "baseline each journey's lift is measured against. `reengage messages list` shows "
            f"every message; the emails are in {mail}.",
            markup=False,
            highlight=False,
        )


def _print_campaigns(console: Console, campaigns: dict[str, dict[str, Any]]) -> None:
    console.print(
        "[bold]Campaigns[/] (the customers' answers are simulated: "
        "see reengage.demo.campaigns.Responses for the rates assumed)"
    )
    for found in campaigns.values():
        print_results(console, found)
    console.print("`reengage campaigns show NAME` prints the same, `--json` for all the figures.")


def _highlights(facts: Path) -> dict[str, Any]:
    """A few numbers a marketer reads first: revenue, repeat buyers, carts left behind."""
    con = reader.connect(facts)
    try:
        [(revenue, buyers, repeat)] = con.sql(
            """WITH o AS (
                 SELECT customer_id, order_id, sum(quantity * unit_price - discount) AS value
                 FROM orders WHERE status NOT IN ('cancelled', 'refunded')
                 GROUP BY customer_id, order_id),
               c AS (SELECT customer_id, count(*) AS n FROM o GROUP BY customer_id)
               SELECT coalesce((SELECT sum(value) FROM o), 0), count(*),
                      count(*) FILTER (WHERE n > 1) FROM c"""
        ).fetchall()
        [(carts,)] = con.sql(
            """SELECT count(*) FROM (
                 SELECT session_id FROM events WHERE session_id IS NOT NULL
                 GROUP BY session_id
                 HAVING bool_or(type = 'add_to_cart') AND NOT bool_or(type = 'checkout_start'))"""
        ).fetchall()
    finally:
        con.close()
    share = f"{repeat / buyers:.0%}" if buyers else "n/a"
    return {
        "revenue": f"{revenue:,.2f}",
        "buyers": int(buyers),
        "repeat_buyers": f"{int(repeat):,} ({share})",
        "abandoned_carts": int(carts),
    }
