"""Commands of the channels: push keys, ad audiences, email bounces."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from reengage.cli import app, emit_json, handles_errors, opened_state, out, state
from reengage.config import load_settings, open_home

push_app = typer.Typer(help="Web push: the home's VAPID keys.", no_args_is_help=True)
app.add_typer(push_app, name="push")
audiences_app = typer.Typer(
    help="Ad audiences: export their members for Meta and Google, or sync them.",
    no_args_is_help=True,
)
app.add_typer(audiences_app, name="audiences")
email_app = typer.Typer(help="Email: what comes back (bounces, complaints).", no_args_is_help=True)
app.add_typer(email_app, name="email")


@push_app.command("keys")
@handles_errors
def push_keys(
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing key (browsers must subscribe again)."),
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Make the home's VAPID key pair; print the applicationServerKey for the site's script."""
    from reengage.channels.push import generate_keys, key_path

    home = open_home(load_settings())
    key = generate_keys(home.path, force=force)
    if json_:
        emit_json({"application_server_key": key, "private_key": str(key_path(home.path))})
        return
    out.print(f"VAPID private key written to {key_path(home.path)} (keep it secret)")
    out.print("applicationServerKey for PushManager.subscribe():")
    out.print(key, highlight=False, soft_wrap=True)


class Platform(StrEnum):
    meta = "meta"
    google = "google"


@audiences_app.command("export")
@handles_errors
def audiences_export(
    name: Annotated[str, typer.Argument(help="The audience.")],
    platform: Annotated[Platform, typer.Option(help="meta or google: the file's format.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="The CSV to write (default: exports/NAME-PLATFORM.csv)."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write the audience's current members who allow ads, hashed as the platform requires."""
    from reengage.channels.audiences import export_members

    with opened_state() as (home, engine):
        target = out_file or home.path / "exports" / f"{name}-{platform.value}.csv"
        with engine.connect() as conn:
            summary = export_members(conn, name, platform.value, target)
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"wrote {summary.rows:,} members of {name!r} to {summary.out} "
        f"({summary.without_consent:,} without ads consent and "
        f"{summary.unmatchable:,} with nothing to match on left out)"
    )


@audiences_app.command("sync")
@handles_errors
def audiences_sync(
    name: Annotated[str, typer.Argument(help="The audience.")],
    platform: Annotated[
        list[Platform], typer.Option(help="meta and/or google (repeat the option for both).")
    ],
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Send the platforms the joins and leaves they have not received yet, then mark them."""
    from reengage.channels.ad_platforms import platform_from_settings
    from reengage.channels.audiences import sync

    with opened_state() as (home, engine):
        targets = [platform_from_settings(home.settings, p.value, name) for p in platform]
        try:
            with engine.begin() as conn:
                summary = sync(conn, name, targets, state.clock)
        finally:
            for target in targets:
                target.close()
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"{name!r}: sent {summary.added:,} additions and {summary.removed:,} removals to "
        f"{', '.join(p.value for p in platform)}"
    )


@email_app.command("bounces")
@handles_errors
def email_bounces(
    path: Annotated[Path, typer.Argument(help="A maildir (with cur/ and new/) or an mbox file.")],
    json_: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Read bounces, complaints and mailed unsubscribes in a mailbox; suppress their addresses.

    A maildir's messages that held a report are marked seen, other mail is left unread; an
    mbox is read whole each time (suppressing twice adds nothing).
    """
    from reengage.channels.bounces import process_folder

    with opened_state() as (home, engine):
        summary = process_folder(engine, path, secret=home.settings.secret(), clock=state.clock)
    kinds: dict[str, int] = {}
    for outcome in summary.outcomes:
        kinds[outcome.report.kind] = kinds.get(outcome.report.kind, 0) + 1
    if json_:
        emit_json(
            {
                "read": summary.read,
                "reports": summary.reports,
                "suppressed": summary.suppressed,
                "kinds": dict(sorted(kinds.items())),
            }
        )
        return
    found = ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items()))
    out.print(
        f"{path}: read {summary.read:,} messages, {summary.reports:,} reports"
        + (f" ({found})" if found else "")
        + f", {summary.suppressed:,} new suppressions"
    )
