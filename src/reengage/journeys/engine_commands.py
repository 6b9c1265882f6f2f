"""The engine's commands: `reengage worker`, `reengage run --until`, `journeys simulate`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from reengage.cli import (
    app,
    counted_progress,
    emit_json,
    err,
    handles_errors,
    instant,
    opened_state,
    out,
    state,
)
from reengage.errors import InputError
from reengage.journeys.commands import journeys_app


def _duration(text: str, option: str) -> timedelta:
    from reengage.journeys.definition import Duration

    try:
        return Duration.parse(text).timedelta
    except ValueError as exc:
        raise InputError(f"{option}: {exc}") from None


def _print_engine(done: dict[str, Any]) -> None:
    table = Table("journey", "entered", "held out")
    for name in sorted(set(done["entered"]) | set(done["held_out"])):
        table.add_row(
            name, f"{done['entered'].get(name, 0):,}", f"{done['held_out'].get(name, 0):,}"
        )
    out.print(table)
    out.print(f"Steps run: {done['steps']:,}; messages queued: {done['queued']:,}.")
    if done["ended"]:
        ended = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(done["ended"].items()))
        out.print(f"Enrollments ended — {ended}.", markup=False, highlight=False)


@app.command("run")
@handles_errors
def run(
    until: Annotated[str, typer.Option("--until", help="Replay up to this date or instant.")],
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", help="Where the replay begins, the first time (later: where it stopped)."
        ),
    ] = None,
    step: Annotated[str, typer.Option(help="The replay's resolution, e.g. 15min or 1h.")] = "1h",
    score_every: Annotated[
        str, typer.Option(help="Score the contacts again this often (0d: never).")
    ] = "7d",
    deliver: Annotated[
        bool, typer.Option(help="Deliver the messages due (--no-deliver: only queue them).")
    ] = True,
    batch: Annotated[int, typer.Option(min=1, help="Enrollments per transaction.")] = 500,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fast-forward the engine on a simulated clock over the imported facts: what a worker
    running all along would have done up to --until (the demo, tests, backfills)."""
    from reengage.journeys.runner import run_until

    end = instant(until, "--until")
    start = instant(from_, "--from") if from_ else None
    resolution = _duration(step, "--step")
    if resolution <= timedelta(0):
        raise InputError("--step: give a positive duration, e.g. 1h")
    every = _duration(score_every, "--score-every")
    with opened_state() as (home, engine), counted_progress(json_) as progress:
        summary = run_until(
            home,
            engine,
            end,
            start=start,
            step=resolution,
            score_every=every if every > timedelta(0) else None,
            deliver=deliver,
            progress=progress,
            batch=batch,
        )
    data = summary.as_dict()
    if json_:
        emit_json(data)
        return
    out.print(f"Replayed {data['start']} → {data['until']} in {data['ticks']:,} ticks.")
    _print_engine(data)
    if data["delivery"]:
        d = data["delivery"]
        out.print(
            f"Delivered: sent {d.get('sent', 0):,}, blocked {d.get('blocked', 0):,}, "
            f"deferred {d.get('deferred', 0):,}, failed {d.get('failed', 0):,}."
        )


@app.command("worker")
@handles_errors
def worker(
    interval: Annotated[str, typer.Option(help="Time between two passes, e.g. 30s.")] = "30s",
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    late: Annotated[
        str, typer.Option(help="Read event triggers again this far back, for late events.")
    ] = "15min",
    batch: Annotated[int, typer.Option(min=1, help="Enrollments per transaction.")] = 500,
    deliver: Annotated[
        bool, typer.Option(help="Deliver the messages due (--no-deliver: only queue them).")
    ] = True,
) -> None:
    """Run the journeys in real time: enroll, advance due steps, deliver due messages, every
    --interval, until stopped (SIGTERM or Ctrl-C finish the pass under way, then exit)."""
    from reengage.journeys.runner import work

    pause = _duration(interval, "--interval")
    behind = _duration(late, "--late")

    def report(done: Any, delivered: Any) -> None:
        sent = delivered.sent if delivered is not None else 0
        if done.steps or sent or sum(done.entered.values()):
            err.print(
                f"entered {sum(done.entered.values()):,}, steps {done.steps:,}, "
                f"queued {done.queued:,}, sent {sent:,}"
            )

    with opened_state() as (home, engine):
        if not once:
            err.print(f"reengage worker: a pass every {interval}; SIGTERM or Ctrl-C to stop.")
        work(
            home,
            engine,
            state.clock,
            interval=pause,
            once=once,
            late=behind,
            report=report,
            batch=batch,
            deliver=deliver,
        )


@journeys_app.command("simulate")
@handles_errors
def simulate(
    name: Annotated[str, typer.Argument(help="The journey (enabled or not).")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Start from this date (default now).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Over this many days.")] = 14,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who the journey would write to, what and when, from --as-of over --days, with what
    the contact policy would say — without sending anything or changing the state."""
    from reengage.journeys import find_journey
    from reengage.journeys.simulate import simulate as run_simulation

    start = instant(as_of, "--as-of")
    with opened_state() as (home, engine):
        entry = find_journey(home, name)
        if entry.journey is None:
            assert entry.error is not None
            raise entry.error
        result = run_simulation(home, engine, entry.journey, start, days)
    data = result.as_dict()
    if json_:
        emit_json(data)
        return
    out.print(f"{name}: from {data['start']} to {data['until']} (nothing sent, nothing stored).")
    _print_engine(data)
    table = Table("due", "customer", "step", "intent", "channel", "variant", "policy")
    for m in data["messages"]:
        verdict = m["decision"] + (f": {m['reason']}" if m["reason"] else "")
        table.add_row(
            re.sub(r"\+00:00$", "Z", m["due_at"][:16] + m["due_at"][19:]),
            m["customer_id"] or str(m["contact_id"]),
            m["step"],
            m["intent"],
            m["channel"],
            m["variant"],
            verdict,
        )
    out.print(table)
