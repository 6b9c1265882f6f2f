"""Commands of server-side conversion events: queue them, send them, list what was sent."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from reengage.cli import app, emit_json, handles_errors, instant, opened_state, out, state

conversions_app = typer.Typer(
    help="Server-side conversion events for Meta's Conversions API and Google Ads.",
    no_args_is_help=True,
)
app.add_typer(conversions_app, name="conversions")


class Status(StrEnum):
    queued = "queued"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


@conversions_app.command("queue")
@handles_errors
def conversions_queue(
    since: Annotated[
        str | None, typer.Option(help="From this instant (default: 7 days before --until).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this instant (default: now).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Queue the purchases, add-to-carts and leads of the window, once per platform."""
    from reengage.retarget.conversions import queue_conversions

    high = instant(until, "--until")
    low = instant(since, "--since") if since else None
    with opened_state() as (home, engine):
        summary = queue_conversions(home.settings, engine, low, high, state.clock)
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"queued {summary.queued:,} conversion events, skipped {summary.skipped:,} "
        f"(no consent or nothing to match on), {summary.known:,} already recorded"
    )


@conversions_app.command("send")
@handles_errors
def conversions_send(
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send the queued events to Meta and Google, with retries; record every outcome."""
    from reengage.retarget.conversion_platforms import send_conversions

    with opened_state() as (home, engine):
        summary = send_conversions(home.settings, engine, state.clock)
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"sent {summary.sent:,}, failed {summary.failed:,}, skipped {summary.skipped:,}, "
        f"{summary.retrying:,} left queued to try again"
    )


@conversions_app.command("list")
@handles_errors
def conversions_list(
    status: Annotated[Status | None, typer.Option(help="Only sends in this state.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    json_: Annotated[bool, typer.Option("--json", help="Print the sends as JSON.")] = False,
) -> None:
    """The recorded conversion sends (never their identifiers)."""
    from reengage.retarget.conversion_platforms import list_sends

    with opened_state() as (_home, engine):
        rows = list_sends(engine, status=status.value if status else None, limit=limit)
    if json_:
        emit_json(rows)
        return
    for r in rows:
        out.print(
            f"{r['platform']:<6} {r['event_name']:<9} {r['event_id']:<24} {r['status']:<7} "
            f"attempts={r['attempts']} {r['reason'] or ''}",
            highlight=False,
            markup=False,
        )
