"""The `reengage` command line: each command is a thin call into a domain module."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from reengage.clock import Clock, FixedClock, SystemClock
from reengage.config import Home, load_settings
from reengage.errors import ReengageError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="reengage",
    help="Pick up the thread with the customers a shop is losing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
facts_app = typer.Typer(help="Look after the facts store (orders, events).", no_args_is_help=True)
app.add_typer(facts_app, name="facts")

out = Console(soft_wrap=True)
err = Console(stderr=True)


class State:
    clock: Clock = SystemClock()


state = State()


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """A user's mistake ends in one line on stderr and the error's exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReengageError as exc:
            # the message is text, not markup: a rule like `tag = "[vip]"` must print as is
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def instant(text: str | None, option: str = "--as-of") -> datetime:
    """The instant an option names (a date is its midnight UTC); the clock's now when not
    given. Exits 2 with the option named when it is neither."""
    if text is None:
        return state.clock.now()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        err.print(f"error: {option} {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 instant")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def opened_state() -> Iterator[tuple[Home, Engine]]:
    """The home the settings point at and its state engine, closed when the command ends."""
    from reengage.home import open_state

    home, engine = open_state(load_settings())
    try:
        yield home, engine
    finally:
        engine.dispose()


@contextmanager
def counted_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A bar for work whose size is known: progress(stage, done, total)."""
    if quiet:
        yield lambda _s, _d, _t: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


@app.callback()
def root(
    now: Annotated[
        str | None,
        typer.Option(
            help="Act as if it were this instant (ISO 8601): for replays, tests and the demo.",
            envvar="REENGAGE_NOW",
        ),
    ] = None,
) -> None:
    if now:
        try:
            state.clock = FixedClock.parse(now)
        except ValueError:
            err.print(f"error: --now {now!r} is not an ISO 8601 instant")
            raise typer.Exit(2) from None
    else:
        state.clock = SystemClock()


@app.command()
@handles_errors
def init() -> None:
    """Create a home (folder, state store, facts store) or bring an existing one up to date."""
    from reengage.home import init_home

    result = init_home(load_settings())
    verb = "Created" if result.created else "Updated"
    out.print(f"{verb} reengage home at {result.home.path} (schema {result.revision}).")


@app.command()
@handles_errors
def status(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """What the home holds: contacts, products, orders, events, files."""
    from reengage.home import status

    with opened_state() as (home, engine):
        data = status(home, engine)
    if json_:
        emit_json(data)
        return
    table = Table(title="reengage status", show_header=False)
    for key, value in data.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    out.print(table)


@app.command()
@handles_errors
def history(
    limit: Annotated[int, typer.Option(min=1, help="How many runs to show.")] = 20,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest imports: when, what, and how many rows were kept or rejected."""
    from reengage.home import import_history

    with opened_state() as (_, engine):
        runs = import_history(engine, limit)
    if json_:
        emit_json(runs)
        return
    table = Table("when", "kind", "format", "file", "read", "imported", "duplicates", "rejected")
    for r in runs:
        table.add_row(
            str(r["started_at"])[:19],
            str(r["kind"]),
            str(r["format"]),
            str(r["file_name"]),
            *(f"{r[k]:,}" for k in ("read", "imported", "duplicates", "rejected")),
        )
    out.print(table)


class ImportKind(StrEnum):
    customers = "customers"
    products = "products"
    orders = "orders"
    events = "events"


@app.command("import")
@handles_errors
def import_(
    kind: Annotated[ImportKind, typer.Argument(help="What the file holds.")],
    file: Annotated[Path, typer.Argument(help="The CSV file.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="generic, shopify or cdnow.")
    ] = "generic",
    delimiter: Annotated[
        str | None, typer.Option(help="Field separator; sniffed when not given.")
    ] = None,
    decimal_comma: Annotated[
        bool, typer.Option("--decimal-comma", help="Numbers are written 1.234,50.")
    ] = False,
    date_format: Annotated[
        str | None, typer.Option(help="strftime pattern of the dates, e.g. %d/%m/%Y.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import customers, products, orders or events; bad rows go to a rejects file.

    Exit code 0: all rows imported; 3: some rows rejected (the good ones are kept);
    2: the file cannot be used (nothing written).
    """
    from reengage.ingest.importer import import_file

    with opened_state() as (home, engine), counted_progress(quiet=json_) as progress:
        summary = import_file(
            home,
            engine,
            kind.value,
            file,
            clock=state.clock,
            format=format,
            delimiter=delimiter.replace("\\t", "\t") if delimiter else None,
            decimal_comma=decimal_comma,
            date_format=date_format,
            progress=progress,
        )
    if json_:
        emit_json(
            {
                k: v
                for k, v in summary.as_dict().items()
                if k in ("read", "imported", "duplicates", "rejected", "rejects_file")
            }
            | {"created_contacts": summary.created_contacts}
            | {"created_products": summary.created_products}
        )
    else:
        out.print(
            f"{file.name}: read {summary.read:,}, imported {summary.imported:,}, "
            f"duplicates {summary.duplicates:,}, rejected {summary.rejected:,}"
        )
        if summary.created_contacts or summary.created_products:
            out.print(
                f"created {summary.created_contacts:,} contacts and "
                f"{summary.created_products:,} products named by the file"
            )
        if summary.rejects_file:
            out.print(f"rejected rows, with line and reason: {summary.rejects_file}")
    raise typer.Exit(summary.exit_code)


@facts_app.command("compact")
@handles_errors
def facts_compact(
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="orders, events or message_events.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Merge each day's small Parquet files into one (safe while imports run)."""
    from reengage.facts.compact import compact
    from reengage.facts.kinds import KINDS
    from reengage.home import open_state

    for name in kind or []:
        if name not in KINDS:
            err.print(f"error: --kind {name!r}: known kinds are {', '.join(KINDS)}")
            raise typer.Exit(2)
    home, engine = open_state(load_settings())
    engine.dispose()
    with counted_progress(quiet=json_) as progress:
        results = compact(home.settings.facts_path, kind, lambda d, t: progress("compacting", d, t))
    rows = [r.__dict__ for r in results]
    if json_:
        emit_json(rows)
        return
    table = Table("kind", "days", "files before", "files after", "rows", "duplicates removed")
    for r in results:
        table.add_row(
            r.kind,
            *(
                f"{v:,}"
                for v in (r.days, r.files_before, r.files_after, r.rows, r.duplicates_removed)
            ),
        )
    out.print(table)


@app.command()
@handles_errors
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the CSV files.")],
    customers: Annotated[int, typer.Option(min=1, help="How many customers.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same shop.")] = 42,
    end: Annotated[
        str | None,
        typer.Option(help="History ends as this day begins (YYYY-MM-DD, UTC); default today."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the file list as JSON.")] = False,
) -> None:
    """Write a synthetic shop (customers, products, orders, events) in the generic formats.

    Each customer's hidden behavioural style is written to styles.csv, which is never imported.
    """
    from reengage.demo.synth import generate_shop

    last = _parse_day(end, "--end") if end else state.clock.now().date()
    with counted_progress(quiet=json_) as progress:
        files = generate_shop(out_dir, customers=customers, seed=seed, end=last, progress=progress)
    if json_:
        emit_json({"out": str(out_dir), "rows": files.counts})
        return
    for name, count in files.counts.items():
        out.print(f"{name + '.csv':<14} {count:>12,} rows")
    out.print(f"written to {out_dir}")


@app.command()
@handles_errors
def demo(
    customers: Annotated[int, typer.Option(min=10, help="Size of the demo shop.")] = 2000,
    seed: Annotated[int, typer.Option(help="Same seed, same shop.")] = 7,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    relational: Annotated[
        bool,
        typer.Option(
            "--relational",
            help="Then the relational simulation: style adaptation on vs off, and learning.",
        ),
    ] = False,
    congruence: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="With --relational: how much more a message in their own style persuades "
            "the simulated customers (0.4: +40%, after Matz et al. 2017).",
        ),
    ] = 0.4,
) -> None:
    """Generate a small shop, import it and run every capability; safe to run again."""
    from reengage.demo.tour import run_demo

    summary = run_demo(
        load_settings(),
        customers=customers,
        seed=seed,
        clock=state.clock,
        console=None if json_ else out,
        relational=relational,
        congruence=congruence,
    )
    if json_:
        emit_json(summary)


def _parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        err.print(f"error: {option} {text!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()


def _register_domain_commands() -> None:
    # the domain modules add their commands to `app`; imported last, as they import this module
    import reengage.analytics.commands
    import reengage.analytics.learning_commands
    import reengage.audience.commands
    import reengage.campaigns.commands
    import reengage.channels.commands
    import reengage.experiments.commands
    import reengage.journeys.commands
    import reengage.journeys.engine_commands
    import reengage.keys_commands
    import reengage.measure.commands
    import reengage.messages.commands
    import reengage.messages.offer_commands
    import reengage.messages.outbox_commands
    import reengage.privacy_commands
    import reengage.retarget.conversion_commands
    import reengage.retarget.feed_commands
    import reengage.social.commands
    import reengage.web.commands
    import reengage.web.users_commands  # noqa: F401


_register_domain_commands()
