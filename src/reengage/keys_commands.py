"""`reengage keys`: create, list and revoke the API's keys."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, emit_json, handles_errors, opened_state, out, state

keys_app = typer.Typer(
    help="API keys: each is shown once when created and stored hashed.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


@keys_app.command("create")
@handles_errors
def keys_create(
    scope: Annotated[
        Scope, typer.Option(help="read < write < admin (privacy export and erase need admin).")
    ],
    note: Annotated[str | None, typer.Option(help="What the key is for (shown in lists).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make an API key and print it, once: only its hash is kept."""
    from reengage.keys import create_key

    with opened_state() as (_, engine):
        made = create_key(engine, state.clock, scope.value, note)
    if json_:
        emit_json({"key": made.key, "scope": made.scope, "prefix": made.prefix})
        return
    out.print(made.key, markup=False, highlight=False)
    out.print(
        f"scope {made.scope}, prefix {made.prefix}: store the key now, it is not shown again",
        highlight=False,
    )


@keys_app.command("list")
@handles_errors
def keys_list(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every key by prefix, with its scope, note, creation, last use and revocation."""
    from reengage.keys import list_keys

    with opened_state() as (_, engine):
        found = list_keys(engine)
    if json_:
        emit_json(found)
        return
    table = Table("prefix", "scope", "note", "created", "last used", "revoked")
    for k in found:
        table.add_row(
            k["prefix"],
            k["scope"],
            escape(k["note"] or ""),
            (k["created_at"] or "")[:19],
            (k["last_used_at"] or "")[:19],
            (k["revoked_at"] or "")[:19],
        )
    out.print(table)


@keys_app.command("revoke")
@handles_errors
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (from `keys list`).")],
) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from reengage.keys import revoke_key

    with opened_state() as (_, engine):
        done = revoke_key(engine, state.clock, prefix)
    out.print(f"key {prefix} {'revoked' if done else 'was revoked already'}", highlight=False)
