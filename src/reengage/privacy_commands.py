"""`reengage privacy`: export what is held on a person, or erase them everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

from reengage.cli import app, emit_json, err, handles_errors, opened_state, out, state
from reengage.errors import InputError

privacy_app = typer.Typer(
    help="A person's data: export it, or erase it from state, facts, rejects and audiences.",
    no_args_is_help=True,
)
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("export")
@handles_errors
def privacy_export(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON (the whole export).")] = False,
) -> None:
    """Everything held on a person: state rows, facts rows, rejected import rows."""
    from reengage.privacy import export_person

    with opened_state() as (home, engine):
        found = export_person(home.settings, engine, contact_id)
    if found is None:
        raise InputError(f"no contact with id {contact_id}")
    if json_:
        emit_json(found)
        return
    for place, rows in found.items():
        if place == "contact":
            continue
        if place == "facts":
            for kind, facts in rows.items():
                out.print(f"facts.{kind:<20} {len(facts):>8,}", highlight=False)
            continue
        out.print(f"{place:<26} {len(rows):>8,}", highlight=False)
    out.print("(--json prints every row)")


@privacy_app.command("erase")
@handles_errors
def privacy_erase(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    suppress: Annotated[
        bool,
        typer.Option(
            "--suppress/--no-suppress",
            help="Keep their email and phone as `erased` suppressions, attached to nobody.",
        ),
    ] = True,
    json_: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Erase a person from state, facts, rejects files and ad audiences; log counts only.

    Exit code 2 when there is no such contact (erased already?).
    """
    from reengage.privacy import erase_person

    if not yes and not typer.confirm(
        f"Erase contact {contact_id} everywhere? This cannot be undone", err=True
    ):
        err.print("nothing erased")
        raise typer.Exit(1)
    with opened_state() as (home, engine):
        removed = erase_person(
            home.settings,
            engine,
            state.clock,
            contact_id,
            requested_by="cli",
            suppress_addresses=suppress,
        )
    if removed is None:
        raise InputError(f"no contact with id {contact_id} (erased already?)")
    if json_:
        emit_json({"contact_id": contact_id, "removed": removed})
        return
    out.print(f"erased contact {contact_id}:", highlight=False)
    for place, count in removed.items():
        if count:
            out.print(f"  {place:<24} {count:>8,}", highlight=False)
