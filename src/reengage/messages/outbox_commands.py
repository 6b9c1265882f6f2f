"""Commands of the outbox: `messages send`, `messages deliver`, `messages list`."""

from __future__ import annotations

import secrets
from datetime import UTC
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Column, Table
from rich.text import Text

from reengage.cli import counted_progress, emit_json, handles_errors, opened_state, out, state
from reengage.messages.commands import messages_app


class SendChannel(StrEnum):
    email = "email"
    sms = "sms"
    push = "push"


@messages_app.command("send")
@handles_errors
def send(
    intent: Annotated[str, typer.Option("--intent", help="The intent, e.g. cart_reminder.")],
    customer: Annotated[
        str, typer.Option("--customer", help="The contact: a customer id, email or phone.")
    ],
    channel: Annotated[SendChannel, typer.Option(help="The channel.")] = SendChannel.email,
    variant: Annotated[
        str | None,
        typer.Option(help="Copy variant to use instead of the contact's style (e.g. neutral)."),
    ] = None,
    priority: Annotated[int, typer.Option(help="Priority against other messages.")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queue one message to one contact, due now (a proof, a test): `messages deliver` sends
    it, after the contact policy (consent, caps, quiet hours) has had its say."""
    from reengage.messages.outbox import enqueue, find_contact, list_messages

    clock = state.clock
    with opened_state() as (home, engine):
        with engine.begin() as conn:
            contact_id = find_contact(conn, customer)
            message_id = enqueue(
                conn,
                message_key=f"manual:{contact_id}:{intent}:{secrets.token_hex(6)}",
                contact_id=contact_id,
                intent=intent,
                channel=channel.value,
                due_at=clock.now(),
                clock=clock,
                settings=home.settings,
                campaign="manual",
                priority=priority,
                variant=variant,
            )
        assert message_id is not None  # a fresh key
        [row] = [r for r in list_messages(engine, contact=customer, limit=20) if r.id == message_id]
    if json_:
        emit_json(row.as_dict())
        return
    out.print(
        f"Queued message {row.id}: {row.intent} by {row.channel} to {row.customer_id or customer}"
        f" ({row.variant or row.style}, {row.language}), due now. "
        "`reengage messages deliver` sends it.",
        markup=False,
        highlight=False,
    )


@messages_app.command("deliver")
@handles_errors
def deliver(
    limit: Annotated[
        int | None, typer.Option(min=1, help="Deliver at most this many messages.")
    ] = None,
    channel: Annotated[
        SendChannel | None, typer.Option(help="Only this channel (default every one).")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Deliver the messages due now: the contact policy is checked again for each one, then it
    is rendered, sent, and marked sent, blocked, deferred or failed. Safe to run in several
    processes at once; a message left half-done by a stopped run is taken up after 10
    minutes."""
    from reengage.messages.dispatch import deliver_due

    with opened_state() as (home, engine), counted_progress(quiet=json_) as progress:
        summary = deliver_due(
            home,
            engine,
            state.clock,
            limit=limit,
            channel=channel.value if channel else None,
            progress=progress,
        )
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"Delivered {summary.sent:,} of {summary.claimed:,} due: {summary.blocked:,} blocked, "
        f"{summary.deferred:,} deferred, {summary.retrying:,} to retry, {summary.failed:,} failed"
        + (f", {summary.released:,} put back" if summary.released else "")
        + "."
    )
    if summary.throttled:
        frees = (
            f"; the window frees at {summary.resume_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            if summary.resume_at is not None
            else ""
        )
        out.print(
            f"{summary.throttled:,} throttled: left in the queue by the channel's rate limit"
            f"{frees}.",
            markup=False,
            highlight=False,
        )
    if summary.unconfirmed:
        out.print(
            f"{summary.unconfirmed:,} unconfirmed: a stopped run had handed them to the provider;"
            " marked sent, not sent again.",
            markup=False,
            highlight=False,
        )
    if summary.reasons:
        table = Table("reason", "messages")
        for reason, n in sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(Text(reason), f"{n:,}")
        out.print(table)


@messages_app.command("list")
@handles_errors
def list_(
    status: Annotated[
        str | None,
        typer.Option(help="Only queued, sending, sent, failed, blocked or deferred messages."),
    ] = None,
    contact: Annotated[
        str | None, typer.Option(help="Only this contact's: a customer id, email or phone.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many messages to show.")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The outbox, newest first: who, why (journey and step, or campaign), which copy, when,
    and what became of each message (with the reason when it was held back)."""
    from reengage.messages.outbox import list_messages

    with opened_state() as (_, engine):
        rows = list_messages(engine, status=status, contact=contact, limit=limit)
    if json_:
        emit_json([r.as_dict() for r in rows])
        return
    table = Table(
        Column("id", justify="right"),
        Column("contact", no_wrap=True),
        "from",
        Column("channel", no_wrap=True),
        Column("intent", no_wrap=True),
        "copy",
        Column("time (UTC)", no_wrap=True),
        Column("status", no_wrap=True),
        "reason",
    )
    for r in rows:
        origin = f"{r.journey}/{r.step}" if r.journey else (r.campaign or "-")
        copy = f"{r.variant or r.style} {r.language}"
        if r.variant and r.style not in (r.variant, "unknown"):
            copy += f" (style {r.style})"
        table.add_row(
            str(r.id),
            r.customer_id or str(r.contact_id),
            Text(origin),
            r.channel,
            r.intent,
            copy,
            r.at.strftime("%Y-%m-%d %H:%M"),
            r.status,
            Text(r.reason or ""),
        )
    out.print(table)
