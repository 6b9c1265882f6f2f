"""`reengage campaigns`: create, list, show, schedule, pause, resume, cancel, deliver and
send-test campaigns."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reengage.campaigns import lifecycle
from reengage.campaigns.definition import DEFAULT_PRIORITY, dump_campaign
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
from reengage.clock import SystemClock
from reengage.errors import InputError
from reengage.journeys.printing import literal_errors as _literal_errors

campaigns_app = typer.Typer(
    help="Campaigns: one-off and scheduled sends to a segment, with tests and a holdout.",
    no_args_is_help=True,
)
app.add_typer(campaigns_app, name="campaigns")

Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _row_dict(row: lifecycle.Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "status": row.status,
        "phase": row.phase,
        "start_at": _iso(row.start_at),
        "started_at": _iso(row.started_at),
        "decide_at": _iso(row.decide_at),
        "decided_at": _iso(row.decided_at),
        "finished_at": _iso(row.finished_at),
        "audience": row.audience,
        "excluded": row.excluded,
        "holdout": row.holdout,
        "winner": row.winner,
    }


@campaigns_app.command("create")
@handles_errors
@_literal_errors
def campaigns_create(
    name: Annotated[str, typer.Argument(help="The campaign's name (its file name).")],
    file: Annotated[
        Path | None, typer.Option("--file", help="A campaign YAML file to copy in.")
    ] = None,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Audience segment (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Segment to leave out (repeatable).")
    ] = None,
    intent: Annotated[str, typer.Option(help="The message intent.")] = "newsletter",
    channel: Annotated[str, typer.Option(help="email, sms or push.")] = "email",
    at: Annotated[
        str | None, typer.Option(help="When to start (ISO 8601); else when scheduled.")
    ] = None,
    best_time: Annotated[
        str | None, typer.Option(help="Send each contact at their best hour within, e.g. 24h.")
    ] = None,
    holdout: Annotated[str | None, typer.Option(help="Share kept out, e.g. 10%.")] = None,
    subject: Annotated[
        list[str] | None,
        typer.Option("--subject", help="The subject; two or more: a subject test (a, b, ...)."),
    ] = None,
    test_share: Annotated[str, typer.Option(help="Share of the audience tested.")] = "20%",
    test_window: Annotated[str, typer.Option(help="How long the test runs.")] = "4h",
    metric: Annotated[str, typer.Option(help="clicks or revenue.")] = "clicks",
    description: Annotated[str | None, typer.Option(help="What the campaign is for.")] = None,
    json_: Json = False,
) -> None:
    """Write a campaign file (campaigns/NAME.yaml) from a file or from options, checked,
    as a draft: `campaigns schedule NAME` starts it."""
    with opened_state() as (home, engine):
        if file is not None:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: cannot be read ({exc})") from None
        else:
            if not segment:
                raise InputError("give --segment (one or more), or --file")
            text = dump_campaign(
                _values(
                    segment,
                    exclude,
                    intent,
                    channel,
                    at,
                    best_time,
                    holdout,
                    subject,
                    test_share,
                    test_window,
                    metric,
                    description,
                )
            )
        campaign = lifecycle.write(home, engine, state.clock, name, text)
    shown = f"campaigns/{name}.yaml"
    if json_:
        emit_json({"name": name, "file": shown, "status": "draft", "digest": campaign.digest})
        return
    out.print(
        f"wrote {shown} (draft): `reengage campaigns schedule {name}` starts it", highlight=False
    )


def _values(
    segment: list[str],
    exclude: list[str] | None,
    intent: str,
    channel: str,
    at: str | None,
    best_time: str | None,
    holdout: str | None,
    subject: list[str] | None,
    test_share: str,
    test_window: str,
    metric: str,
    description: str | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if description:
        values["description"] = description
    values["audience"] = {"segments": list(segment)}
    if exclude:
        values["audience"]["exclude"] = list(exclude)
    message: dict[str, Any] = {"intent": intent, "channel": channel}
    subjects = list(subject or [])
    if len(subjects) == 1:
        message["copy"] = {"subject": subjects[0]}
    values["message"] = message
    schedule: dict[str, Any] = {}
    if at:
        schedule["at"] = at
    if best_time:
        schedule["best_time"] = best_time
    if schedule:
        values["schedule"] = schedule
    if holdout:
        values["holdout"] = holdout
    values["priority"] = DEFAULT_PRIORITY
    if len(subjects) > 1:
        values["test"] = {
            "share": test_share,
            "window": test_window,
            "metric": metric,
            "variants": [
                {"name": chr(ord("a") + i), "copy": {"subject": s}} for i, s in enumerate(subjects)
            ],
        }
    return values


@campaigns_app.command("list")
@handles_errors
def campaigns_list(json_: Json = False) -> None:
    """Every campaign: its file, status and progress."""
    from reengage.campaigns.results import progress

    with opened_state() as (home, engine):
        by_name = {r.name: r for r in lifecycle.rows(engine)}
        names = sorted(set(by_name) | set(lifecycle.files(home)))
        listed = []
        for name in names:
            row = by_name.get(name)
            item: dict[str, Any] = {"name": name, "status": row.status if row else "file only"}
            if row is not None:
                item |= _row_dict(row) | {"messages": progress(engine, name)}
            listed.append(item)
    if json_:
        emit_json(listed)
        return
    table = Table("campaign", "status", "start", "audience", "holdout", "sent", "pending")
    for item in listed:
        counts: dict[str, int] = item.get("messages", {})
        table.add_row(
            escape(item["name"]),
            item["status"],
            (item.get("start_at") or "")[:16],
            _n(item.get("audience")),
            _n(item.get("holdout")),
            _n(counts.get("sent")),
            _n(counts.get("pending")),
        )
    out.print(table)


def _n(value: Any) -> str:
    return "" if value is None else f"{value:,}"


@campaigns_app.command("show")
@handles_errors
def campaigns_show(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    json_: Json = False,
) -> None:
    """A campaign's definition, progress and results: sent, blocked, opens, clicks,
    unsubscribes and complaints per thousand, conversions and lift against the holdout, and
    the test's decision."""
    from reengage.campaigns.results import results

    with opened_state() as (home, engine):
        found = results(home, engine, name, state.clock.now())
    if json_:
        emit_json(found)
        return
    from reengage.campaigns.report import print_results

    print_results(out, found)


def _changed(row: lifecycle.Row, json_: bool, said: str, **extra: Any) -> None:
    if json_:
        emit_json(_row_dict(row) | extra)
    else:
        out.print(escape(said), highlight=False)


@campaigns_app.command("schedule")
@handles_errors
@_literal_errors
def campaigns_schedule(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    at: Annotated[
        str | None, typer.Option(help="When to start (ISO 8601); default: the file's, else now.")
    ] = None,
    json_: Json = False,
) -> None:
    """Schedule a campaign: its file as it is now is what will run."""
    moment = instant(at, "--at") if at else None
    with opened_state() as (home, engine):
        row = lifecycle.schedule(home, engine, state.clock, name, moment)
    when = row.start_at.isoformat() if row.start_at else "now"
    _changed(row, json_, f"{name} scheduled to start at {when}")


@campaigns_app.command("pause")
@handles_errors
def campaigns_pause(name: Annotated[str, typer.Argument()], json_: Json = False) -> None:
    """Pause a campaign: its unsent messages wait until it is resumed."""
    with opened_state() as (_, engine):
        row = lifecycle.pause(engine, state.clock, name)
    _changed(row, json_, f"{name} paused")


@campaigns_app.command("resume")
@handles_errors
def campaigns_resume(name: Annotated[str, typer.Argument()], json_: Json = False) -> None:
    """Resume a paused campaign where it was."""
    with opened_state() as (_, engine):
        row = lifecycle.resume(engine, state.clock, name)
    _changed(row, json_, f"{name} resumed ({row.status})")


@campaigns_app.command("cancel")
@handles_errors
def campaigns_cancel(name: Annotated[str, typer.Argument()], json_: Json = False) -> None:
    """Cancel a campaign: its unsent messages are not sent (what went, went)."""
    with opened_state() as (_, engine):
        row, dropped = lifecycle.cancel(engine, state.clock, name)
    _changed(row, json_, f"{name} cancelled: {dropped:,} unsent messages dropped", dropped=dropped)


@campaigns_app.command("deliver")
@handles_errors
def campaigns_deliver(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    wait: Annotated[
        bool,
        typer.Option(help="Wait out the channels' rate limits until nothing is due (real clock)."),
    ] = True,
    json_: Json = False,
) -> None:
    """Move a campaign on now (start, queue, decide) and deliver its messages that are due,
    with a progress bar; the worker does the same in the background."""
    from reengage.campaigns.results import progress
    from reengage.campaigns.runner import tick
    from reengage.messages.dispatch import deliver_due

    clock = state.clock
    totals = {"sent": 0, "blocked": 0, "deferred": 0, "failed": 0, "unconfirmed": 0}
    throttled, resume_at = 0, None
    with opened_state() as (home, engine), counted_progress(quiet=json_) as bar:
        ticked = tick(home, engine, clock, only=name, progress=bar)
        while True:
            counts = progress(engine, name)
            done = counts["sent"] + counts["blocked"] + counts["failed"]
            bar("delivering", done, max(counts["total"], 1))

            def settled(
                stage: str, d: int, t: int, base: int = done, total: int = counts["total"]
            ) -> None:
                bar("delivering", base + d, max(total, 1))

            summary = deliver_due(home, engine, clock, campaign=name, progress=settled)
            for key in totals:
                totals[key] += int(getattr(summary, key, 0) or 0)
            resume_at = getattr(summary, "resume_at", None)
            throttled = int(getattr(summary, "throttled", 0) or 0)
            if throttled and resume_at is not None and wait and isinstance(clock, SystemClock):
                time.sleep(max(0.0, (resume_at - clock.now()).total_seconds()))
                continue
            if not (summary.sent or summary.blocked or summary.failed):
                break
        tick(home, engine, clock, only=name)
        final = progress(engine, name)
    if json_:
        emit_json(
            {
                "campaign": name,
                "tick": ticked.as_dict(),
                "delivered": totals | {"throttled": throttled},
                "resume_at": _iso(resume_at),
                "messages": final,
            }
        )
        return
    err.print(
        f"{name}: sent {totals['sent']:,}, blocked {totals['blocked']:,}, "
        f"deferred {totals['deferred']:,}, failed {totals['failed']:,}; "
        f"pending {final['pending']:,}"
    )
    if totals["unconfirmed"]:
        err.print(
            f"{totals['unconfirmed']:,} unconfirmed: a stopped run had handed them to the "
            "provider; marked sent, not sent again."
        )
    if throttled and resume_at is not None:
        err.print(
            f"{throttled:,} wait for the channel's rate limit; the window frees at "
            f"{resume_at:%Y-%m-%d %H:%M:%S} UTC."
        )


@campaigns_app.command("send-test")
@handles_errors
def campaigns_send_test(
    name: Annotated[str, typer.Argument(help="The campaign.")],
    to: Annotated[str, typer.Option("--to", help="The address (or phone, for SMS) to send to.")],
    lang: Annotated[
        str | None, typer.Option("--lang", help="en, it or fr (default the setting).")
    ] = None,
    style: Annotated[
        str | None,
        typer.Option(help="go_getter, promoter, nurturer, examiner or neutral (default)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option("--variant", help="Only this test variant (repeatable; default all)."),
    ] = None,
    json_: Json = False,
) -> None:
    """Render the campaign on a sample contact and send it to ADDRESS as a proof, one per
    test variant, subject marked "[proof]". Nothing is queued or recorded, and no contact
    policy applies: the proof goes to you, not to a customer."""
    from reengage.campaigns.proofs import proofs, send_proofs
    from reengage.config import LANGUAGES

    with opened_state() as (home, engine):
        language = lang or home.settings.language
        if language not in LANGUAGES:
            raise InputError(f"--lang must be one of {', '.join(LANGUAGES)}, not {language!r}")
        campaign = lifecycle.read(home, name)
        made = proofs(
            home.settings,
            campaign,
            to,
            language=language,
            style=style,
            arms=variant,
            clock=state.clock,
        )
        ids = send_proofs(home.settings, engine, state.clock, made)
    sent = [
        proof.as_dict() | {"provider_id": pid} for (proof, _), pid in zip(made, ids, strict=True)
    ]
    if json_:
        emit_json({"campaign": name, "to": to, "sent": sent})
        return
    for proof, _ in made:
        label = f" (variant {proof.arm})" if proof.arm else ""
        out.print(f"proof{label} sent: {escape(proof.subject or proof.text[:60])}")
