"""`reengage conversations`: the WhatsApp, Messenger and Instagram conversations, for support."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, emit_json, handles_errors, instant, opened_state, out, state
from reengage.errors import InputError

conversations_app = typer.Typer(
    help="Messaging-app conversations (WhatsApp, Messenger, Instagram): answer, assign, "
    "solve, and the response-time KPIs.",
    no_args_is_help=True,
)
app.add_typer(conversations_app, name="conversations")


class Status(StrEnum):
    open = "open"
    waiting = "waiting"
    solved = "solved"


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@conversations_app.command("list")
@handles_errors
def conversations_list(
    status: Annotated[
        Status | None, typer.Option(help="Only conversations with this status.")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Every conversation, most recently active first."""
    from reengage.social.support import list_conversations

    with opened_state() as (_, engine):
        found = list_conversations(engine, status.value if status else None)
    if json_:
        emit_json(found)
        return
    table = Table("id", "channel", "contact", "status", "assignee", "last inbound", "messages")
    for c in found:
        table.add_row(
            str(c["id"]),
            c["channel"],
            str(c["contact_id"]),
            c["status"],
            escape(c["assignee"] or ""),
            (c["last_inbound_at"] or "")[:19],
            str(c["messages"]),
        )
    out.print(table)


@conversations_app.command("show")
@handles_errors
def conversations_show(
    conversation_id: Annotated[int, typer.Argument(metavar="ID", help="The conversation's id.")],
    json_: JsonOption = False,
) -> None:
    """A conversation and its messages, oldest first."""
    from reengage.social.support import show

    with opened_state() as (_, engine):
        found = show(engine, conversation_id, state.clock)
    if json_:
        emit_json(found)
        return
    window = "open" if found["window_open"] else "closed"
    out.print(
        f"conversation {found['id']} on {found['channel']}, contact {found['contact_id']}: "
        f"{found['status']}, assignee {found['assignee'] or '-'}, 24-hour window {window}",
        markup=False,
        highlight=False,
    )
    for m in found["messages"]:
        what = m["body"] if m["kind"] == "text" else (m["template"] or f"[{m['kind']}]")
        arrow = "<-" if m["direction"] == "in" else "->"
        out.print(f"{m['at'][:19]} {arrow} {what} ({m['status']})", markup=False, highlight=False)


@conversations_app.command("assign")
@handles_errors
def conversations_assign(
    conversation_id: Annotated[int, typer.Argument(metavar="ID", help="The conversation's id.")],
    email: Annotated[str, typer.Argument(help="Who in support takes it.")],
) -> None:
    """Give a conversation to someone in support."""
    from reengage.social.support import assign

    with opened_state() as (_, engine):
        assign(engine, state.clock, conversation_id, email)
    out.print(f"conversation {conversation_id} assigned", highlight=False)


@conversations_app.command("status")
@handles_errors
def conversations_status(
    conversation_id: Annotated[int, typer.Argument(metavar="ID", help="The conversation's id.")],
    status: Annotated[Status, typer.Argument(help="open, waiting or solved.")],
) -> None:
    """Set a conversation's status."""
    from reengage.social.support import set_status

    with opened_state() as (_, engine):
        set_status(engine, state.clock, conversation_id, status.value)
    out.print(f"conversation {conversation_id} is {status.value}", highlight=False)


@conversations_app.command("reply")
@handles_errors
def conversations_reply(
    conversation_id: Annotated[int, typer.Argument(metavar="ID", help="The conversation's id.")],
    text: Annotated[str, typer.Argument(help="The answer, as sent.")],
) -> None:
    """Answer with free-form text: only within 24 hours of the person's last message."""
    from reengage.social.conversations import reply

    with opened_state() as (home, engine):
        sent = reply(home.settings, engine, state.clock, conversation_id, text)
    out.print(
        f"sent message {sent['message_id']} in conversation {conversation_id}", highlight=False
    )


@conversations_app.command("template")
@handles_errors
def conversations_template(
    contact_id: Annotated[int, typer.Argument(help="The contact to write to.")],
    name: Annotated[str, typer.Argument(help="The approved WhatsApp template's name.")],
    language: Annotated[str, typer.Option(help="The template's language code.")] = "en",
    transactional: Annotated[
        bool,
        typer.Option(help="A service template: WhatsApp transactional consent suffices."),
    ] = False,
) -> None:
    """Send an approved WhatsApp template to a contact who opted in to WhatsApp."""
    from reengage.social.conversations import send_template

    with opened_state() as (home, engine):
        sent = send_template(
            home.settings,
            engine,
            state.clock,
            contact_id,
            name,
            language=language,
            purpose="transactional" if transactional else "marketing",
        )
    out.print(
        f"sent template {name} as message {sent['message_id']} "
        f"in conversation {sent['conversation_id']}",
        markup=False,
        highlight=False,
    )


@conversations_app.command("kpis")
@handles_errors
def conversations_kpis(
    since: Annotated[
        str | None, typer.Option(help="Start of the period (default: 30 days before --until).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (default: now).")] = None,
    json_: JsonOption = False,
) -> None:
    """First-response time: median, 90th percentile, share answered within an hour."""
    from reengage.social.kpis import conversation_kpis

    end = instant(until, "--until")
    start = instant(since, "--since") if since else end - timedelta(days=30)
    if start >= end:
        raise InputError("--since must be before --until")
    with opened_state() as (_, engine):
        found = conversation_kpis(engine, start, end)
    if json_:
        emit_json(found)
        return
    table = Table("kpi", "value")
    for key, value in found.items():
        if isinstance(value, float):
            value = f"{value:.3f}" if key.endswith("share") else f"{value:.0f}"
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)
