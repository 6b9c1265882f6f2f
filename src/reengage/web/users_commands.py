"""`reengage users`: the people who may log in to the dashboard."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from reengage.cli import app, emit_json, handles_errors, opened_state, out, state
from reengage.errors import InputError

users_app = typer.Typer(help="Dashboard users: create, list, disable.", no_args_is_help=True)
app.add_typer(users_app, name="users")


def _read_password(from_stdin: bool) -> str:
    """The password from a hidden prompt (typed twice), or the first line of stdin when asked
    or when stdin is not a terminal. Never from an argument: it would stay in the history."""
    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise InputError("no password on stdin")
        return line.rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
@handles_errors
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email address: their login.")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of stdin (the default when stdin "
            "is not a terminal); otherwise it is asked twice, hidden.",
        ),
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a dashboard user; only an argon2id hash of the password is stored."""
    from reengage.users import check_password, create_user, normalise_email

    normalise_email(email)  # a typo in the address fails before the password is asked
    password = _read_password(password_stdin)
    check_password(password)
    with opened_state() as (_home, engine):
        user = create_user(engine, email, password, state.clock.now())
    if json_:
        emit_json(user.as_dict())
        return
    out.print(f"user {user.email} created: they can log in at /dashboard/", highlight=False)


@users_app.command("list")
@handles_errors
def users_list(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every dashboard user, with their last login and whether they are disabled."""
    from reengage.users import list_users

    with opened_state() as (_home, engine):
        found = list_users(engine)
    if json_:
        emit_json([u.as_dict() for u in found])
        return
    table = Table("email", "created", "last login", "disabled")
    for user in found:
        table.add_row(
            user.email,
            f"{user.created_at:%Y-%m-%d %H:%M}",
            "" if user.last_login_at is None else f"{user.last_login_at:%Y-%m-%d %H:%M}",
            "" if user.disabled_at is None else f"{user.disabled_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


@users_app.command("disable")
@handles_errors
def users_disable(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
) -> None:
    """Disable a user: they can no longer log in, and their open sessions end."""
    from reengage.users import disable_user

    with opened_state() as (_home, engine):
        user = disable_user(engine, email, state.clock.now())
    out.print(f"user {user.email} disabled", highlight=False)
