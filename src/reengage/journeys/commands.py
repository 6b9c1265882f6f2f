"""`reengage journeys`: list, show, validate, enable and disable journeys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, emit_json, err, handles_errors, out
from reengage.config import Home, load_settings
from reengage.errors import HomeError
from reengage.journeys import (
    Audience,
    Branch,
    DateTrigger,
    EventTrigger,
    Holdout,
    InactivityTrigger,
    Journey,
    JourneyError,
    JourneyFile,
    Send,
    Split,
    Step,
    Trigger,
    Update,
    Wait,
    Webhook,
    catalogue,
    disable_journey,
    enable_journey,
    find_journey,
    read,
)
from reengage.journeys.printing import literal_errors, print_errors, problems

P = ParamSpec("P")
R = TypeVar("R")

_problems, _print_errors, _literal_errors = problems, print_errors, literal_errors

journeys_app = typer.Typer(
    help="Journeys: what happens to a contact after a trigger; the built-in library.",
    no_args_is_help=True,
)
app.add_typer(journeys_app, name="journeys")


def _home() -> Home:
    from reengage.config import open_home

    return open_home(load_settings())


# --- words for people ---------------------------------------------------------------------


def describe_trigger(trigger: Trigger) -> str:
    """The trigger in a few words: `add_to_cart abandoned within 1h`."""
    if isinstance(trigger, EventTrigger):
        if trigger.abandoned is None:
            return trigger.type
        return f"{trigger.type} abandoned within {trigger.abandoned.within}"
    if isinstance(trigger, InactivityTrigger):
        if trigger.threshold is not None:
            return "inactive past their own threshold"
        return f"inactive for {trigger.days} days"
    if isinstance(trigger, DateTrigger):
        if trigger.offset.seconds == 0:
            return f"on {trigger.of}"
        if trigger.offset.seconds < 0:
            return f"{-trigger.offset} before {trigger.of}"
        return f"{trigger.offset} after {trigger.of}"
    return f"entered segment {trigger.segment}"


def describe_step(step: Step) -> str:
    """A step in a few words: `send cart_reminder on the best channel`."""
    if isinstance(step, Wait):
        until = f"until {step.until:%H:%M}" if step.until is not None else ""
        if step.duration is None:
            return f"wait {until}"
        return f"wait {step.duration}" + (f", then {until}" if until else "")
    if isinstance(step, Send):
        how = "on the best channel" if step.channel == "best" else f"by {step.channel}"
        offer = f", offer level {step.offer}" if step.offer is not None else ""
        return f"send {step.intent} {how}{offer}"
    if isinstance(step, Branch):
        return f"if {' '.join(step.condition.text.split())}"
    if isinstance(step, Split):
        total = sum(v.weight for v in step.variants)
        return "split: " + ", ".join(f"{v.name} {v.weight / total:.0%}" for v in step.variants)
    if isinstance(step, Audience):
        return f"{step.action} {'to' if step.action == 'add' else 'from'} audience {step.audience}"
    if isinstance(step, Update):
        parts = [f"{name} = {json.dumps(value)}" for name, value in step.attributes]
        text = ("set " + ", ".join(parts)) if parts else ""
        if step.suppress:
            text += ("; " if text else "") + f"suppress every address ({step.suppress})"
        return text
    if isinstance(step, Webhook):
        return f"call webhook {step.endpoint}"
    if isinstance(step, Holdout):
        return f"hold out {step.share:.0%}: they get nothing more"
    return "end"


def _step_lines(steps: Sequence[Step], depth: int = 1) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    for step in steps:
        lines.append(f"{pad}{step.id}: {describe_step(step)}")
        if isinstance(step, Branch):
            lines.append(f"{pad}  then:")
            lines += _step_lines(step.then, depth + 2) or [f"{pad}    (nothing)"]
            if step.otherwise:
                lines.append(f"{pad}  else:")
                lines += _step_lines(step.otherwise, depth + 2)
        elif isinstance(step, Split):
            for variant in step.variants:
                lines.append(f"{pad}  variant {variant.name}:")
                lines += _step_lines(variant.steps, depth + 2) or [f"{pad}    (nothing)"]
    return lines


def _summary(entry: JourneyFile) -> dict[str, Any]:
    journey = entry.journey
    return {
        "name": entry.name,
        "enabled": entry.enabled,
        "source": entry.source,
        "file": entry.shown,
        "trigger": describe_trigger(journey.trigger) if journey else None,
        "steps": sum(1 for _ in journey.walk()) if journey else None,
        "priority": journey.priority if journey else None,
        "holdout": journey.holdout if journey else None,
        "description": journey.description if journey else None,
        "error": None if entry.error is None else _problems(entry.error),
    }


# --- commands -----------------------------------------------------------------------------


@journeys_app.command("list")
@handles_errors
def journeys_list(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every journey: the home's (enabled or disabled) and the built-ins."""
    entries = [_summary(e) for e in catalogue(_home())]
    if json_:
        emit_json(entries)
        return
    table = Table("name", "enabled", "source", "trigger", "steps", "priority")
    for e in entries:
        trigger = e["trigger"] if e["error"] is None else "[red]error: see journeys show[/]"
        table.add_row(
            e["name"],
            "yes" if e["enabled"] else "no",
            e["source"],
            trigger,
            "" if e["steps"] is None else str(e["steps"]),
            "" if e["priority"] is None else str(e["priority"]),
        )
    out.print(table)


@journeys_app.command("show")
@handles_errors
@_literal_errors
def journeys_show(
    name: Annotated[str, typer.Argument(help="The journey's name.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One journey: trigger, goals, re-entry, priority, holdout and every step."""
    entry = find_journey(_home(), name)
    if entry.error is not None:
        raise entry.error
    journey = entry.journey
    assert journey is not None
    if json_:
        emit_json(
            {"enabled": entry.enabled, "source": entry.source, "file": entry.shown}
            | journey.as_dict()
        )
        return
    _print_journey(entry, journey)


def _print_journey(entry: JourneyFile, journey: Journey) -> None:
    state = "enabled" if entry.enabled else "not enabled"
    if entry.source == "builtin":
        state += f" (built in: `reengage journeys enable {entry.name}`)"
    table = Table(title=journey.name, show_header=False, title_justify="left")
    table.add_row("description", escape(" ".join(journey.description.split())))
    table.add_row("state", escape(state))
    table.add_row("file", escape(entry.shown))
    table.add_row("trigger", escape(describe_trigger(journey.trigger)))
    if isinstance(journey.trigger, EventTrigger) and journey.trigger.abandoned:
        table.add_row("", escape("unless " + ", ".join(journey.trigger.abandoned.unless)))
    trigger_rule = getattr(journey.trigger, "rule", None)
    if trigger_rule is not None:
        table.add_row("segment rule", escape(" ".join(trigger_rule.text.split())))
    table.add_row("goals", ", ".join(journey.goals) or "none")
    reentry = journey.reentry
    table.add_row("re-entry", f"after {reentry.after}" if reentry.mode == "after" else reentry.mode)
    table.add_row("priority", str(journey.priority))
    table.add_row("holdout", f"{journey.holdout:.0%}")
    out.print(table)
    out.print("steps:")
    for line in _step_lines(journey.steps):
        out.print(escape(line), highlight=False)


@journeys_app.command("validate")
@handles_errors
def journeys_validate(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Journey files to check; default: the home's and the built-ins."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check journey files and print every problem; exit code 2 when there is any."""
    results: list[dict[str, Any]] = []
    if files:
        try:
            home: Home | None = _home()
        except HomeError:
            home = None  # checking files needs no home; segment names are then not checked
        for path in files:
            try:
                journey = read(path, home)
                results.append({"file": str(path), "name": journey.name, "errors": []})
            except JourneyError as exc:
                results.append({"file": str(path), "name": None, "errors": _problems(exc)})
    else:
        for entry in catalogue(_home()):
            problems = [] if entry.error is None else _problems(entry.error)
            results.append({"file": entry.shown, "name": entry.name, "errors": problems})
    failed = [r for r in results if r["errors"]]
    if json_:
        emit_json({"files": results, "ok": not failed})
    else:
        for r in results:
            if r["errors"]:
                for problem in r["errors"]:
                    err.print(
                        f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True
                    )
            else:
                out.print(f"ok {escape(r['file'])}", highlight=False)
        verdict = f"{len(failed)} with errors" if failed else "all valid"
        out.print(f"{len(results)} journey file(s) checked: {verdict}")
    if failed:
        raise typer.Exit(2)


@journeys_app.command("enable")
@handles_errors
@_literal_errors
def journeys_enable(
    name: Annotated[str, typer.Argument(help="A built-in journey, or a disabled one.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a journey and make it run: copy a built-in into the home's journeys/ (or restore
    a disabled file), and write the segment it defines, if the home has none by that name."""
    home = _home()
    done = enable_journey(home, name)
    shown = str(done.path.relative_to(home.path))
    if json_:
        emit_json({"name": name, "file": shown, "action": done.action, "segments": done.segments})
        return
    said = {
        "copied": f"enabled {name}: copied the built-in to {shown} (edit it there)",
        "restored": f"enabled {name}: restored {shown}",
        "already": f"{name} is already enabled ({shown})",
    }
    out.print(escape(said[done.action]), highlight=False)
    for segment in done.segments:
        out.print(
            f"wrote segments/{segment}.yaml: run `reengage segments refresh {segment}`",
            highlight=False,
        )


@journeys_app.command("disable")
@handles_errors
@_literal_errors
def journeys_disable(
    name: Annotated[str, typer.Argument(help="An enabled journey.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Stop a journey: rename journeys/NAME.yaml to NAME.yaml.disabled (kept, edits and all)."""
    home = _home()
    find_journey(home, name)  # an unknown name is an error
    moved = disable_journey(home, name)
    shown = None if moved is None else str(moved.relative_to(home.path))
    if json_:
        emit_json({"name": name, "disabled": moved is not None, "file": shown})
    elif shown is None:
        out.print(f"{name} is not enabled", highlight=False)
    else:
        out.print(f"disabled {name}: {shown}", highlight=False)
