"""`reengage styles learn`: refine contacts' styles from their answers to style variants."""

from __future__ import annotations

from typing import Annotated

import typer

from reengage.cli import app, emit_json, handles_errors, instant, opened_state, out

styles_app = typer.Typer(
    help="Behavioural styles: learn them from responses.", no_args_is_help=True
)
app.add_typer(styles_app, name="styles")


@styles_app.command("learn")
@handles_errors
def learn(
    since: Annotated[
        str | None,
        typer.Option(help="Messages sent after this (YYYY-MM-DD or instant); default: all."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Messages sent and answers given until this; default now."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Update each contact's style from their answers to style-adapted messages.

    A human click, an attributed order or a survey answer to a message written for a style
    makes that style more likely, silence slightly less; the latest scores row is updated
    (style_source "responses"). CRM and survey styles are never changed. Safe to run again.
    """
    from reengage.analytics.style_learning import learn_from_responses

    low = None if since is None else instant(since, "--since")
    high = instant(until, "--until")
    with opened_state() as (home, engine):
        summary = learn_from_responses(home.settings, engine, low, high)
    if json_:
        emit_json(summary.as_dict())
        return
    out.print(
        f"{summary.messages:,} style-variant messages to {summary.contacts:,} contacts, "
        f"{summary.responses:,} answered; {summary.updated:,} styles updated "
        f"({summary.changed:,} changed, {summary.styled_before:,} → {summary.styled_after:,} "
        f"with a style); {summary.explicit_kept:,} CRM or survey styles kept, "
        f"{summary.unscored:,} contacts not scored yet."
    )
