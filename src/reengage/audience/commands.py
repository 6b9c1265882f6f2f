"""`reengage segments`: create, refresh, list and show segments."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import (
    app,
    counted_progress,
    emit_json,
    err,
    handles_errors,
    opened_state,
    out,
    state,
)
from reengage.errors import ReengageError

P = ParamSpec("P")
R = TypeVar("R")

segments_app = typer.Typer(
    help="Segments: contacts grouped by a rule, kept up to date.", no_args_is_help=True
)
app.add_typer(segments_app, name="segments")


def _literal_messages(fn: Callable[P, R]) -> Callable[P, R]:
    """An error shows the rule's line with a caret under the problem: printed as written
    (a rule may hold [brackets], which are not Rich markup) and never re-wrapped, so that the
    caret stays under its column."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReengageError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


@segments_app.command("create")
@handles_errors
@_literal_messages
def segments_create(
    name: Annotated[str, typer.Argument(help="The segment's name (letters, digits, - and _).")],
    rule: Annotated[str, typer.Option(help='The rule, e.g. lifecycle = "at_risk" and clv > 200.')],
    description: Annotated[str | None, typer.Option(help="What the segment is for.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an existing file.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a rule and write it as segments/NAME.yaml in the home."""
    from reengage.audience.segments import create_segment

    with opened_state() as (home, _):
        segment = create_segment(home, name, rule, description=description, replace=replace)
    if json_:
        emit_json(
            {
                "name": segment.name,
                "description": segment.description,
                "rule": segment.rule.text,
                "file": str(segment.path),
            }
        )
        return
    out.print(f"wrote {segment.path}; run `reengage segments refresh {segment.name}`")


@segments_app.command("refresh")
@handles_errors
@_literal_messages
def segments_refresh(
    names: Annotated[
        list[str] | None, typer.Argument(help="Segments to refresh; all when none given.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recompute segment members as of now, recording who entered and who left."""
    from reengage.audience.segments import refresh_segments

    with opened_state() as (home, engine), counted_progress(quiet=json_) as progress:
        summaries = refresh_segments(home, engine, state.clock, names or None, progress)
    if json_:
        emit_json([s.__dict__ for s in summaries])
        return
    if not summaries:
        out.print("no segments defined: `reengage segments create NAME --rule ...`")
        return
    table = Table("segment", "members", "entered", "left")
    for s in summaries:
        table.add_row(s.segment, f"{s.size:,}", f"{s.entered:,}", f"{s.exited:,}")
    out.print(table)


@segments_app.command("list")
@handles_errors
@_literal_messages
def segments_list(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every segment: description, size and last refresh."""
    from reengage.audience.segments import list_segments

    with opened_state() as (home, engine):
        rows = list_segments(home, engine)
    if json_:
        emit_json(rows)
        return
    table = Table("segment", "description", "members", "refreshed")
    for r in rows:
        size = "-" if r["size"] is None else f"{r['size']:,}"
        note = escape(r["description"] or "") if "error" not in r else "[red]file has an error[/]"
        table.add_row(escape(r["name"]), note, size, (r["refreshed_at"] or "never")[:19])
    out.print(table)


@segments_app.command("show")
@handles_errors
@_literal_messages
def segments_show(
    name: Annotated[str, typer.Argument(help="The segment's name.")],
    sample: Annotated[int, typer.Option(min=0, max=1000, help="How many members to list.")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One segment: its rule, size, last refresh, some members and recent comings and goings."""
    from reengage.audience.segments import show_segment

    with opened_state() as (home, engine):
        data = show_segment(home, engine, name, state.clock, sample)
    if json_:
        emit_json(data)
        return
    table = Table(title=f"segment {escape(name)}", show_header=False)
    for key in ("description", "rule", "file", "size", "refreshed_at"):
        table.add_row(key, escape(str(data[key])))
    table.add_row("sample", escape(", ".join(map(str, data["sample"])) or "-"))
    for window, moves in data["transitions"].items():
        table.add_row(f"last {window}", f"+{moves['entered']:,} / -{moves['exited']:,}")
    out.print(table)
