"""Commands of messages: `messages intents`, `messages preview`, `messages check`."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from reengage.cli import app, emit_json, err, handles_errors, opened_state, out, state
from reengage.config import load_settings

messages_app = typer.Typer(
    help="What reengage says: intents, copy in every style and language, previews.",
    no_args_is_help=True,
)
app.add_typer(messages_app, name="messages")


class PreviewChannel(StrEnum):
    email = "email"
    sms = "sms"
    push = "push"


@messages_app.command("intents")
@handles_errors
def intents(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every intent: its consent purpose, the blocks its email shows, its channels."""
    from reengage.messages.intents import INTENTS

    if json_:
        emit_json([i.as_dict() for i in INTENTS.values()])
        return
    table = Table(
        Column("intent", no_wrap=True),
        Column("purpose", no_wrap=True),
        "blocks",
        "channels",
        "button",
    )
    for i in INTENTS.values():
        table.add_row(i.id, i.purpose, ", ".join(i.blocks) or "-", ", ".join(i.channels), i.cta)
    out.print(table)


@messages_app.command("preview")
@handles_errors
def preview(
    intent: Annotated[str, typer.Argument(help="The intent, e.g. cart_reminder.")],
    style: Annotated[
        str | None,
        typer.Option(
            help="go_getter, promoter, nurturer, examiner or neutral; "
            "default the contact's style, else neutral."
        ),
    ] = None,
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang", help="en, it or fr; default the contact's language, else the setting."
        ),
    ] = None,
    contact: Annotated[
        str | None,
        typer.Option(help="A customer id, email or phone: their real context (default a sample)."),
    ] = None,
    channel: Annotated[PreviewChannel, typer.Option(help="What to print.")] = PreviewChannel.email,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the email's HTML to this file.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print every part as JSON.")] = False,
) -> None:
    """Render a message as a contact would get it: subject, preheader and text of the email,
    or the SMS, or the push notification; the HTML goes to a file.

    Without --contact the message is filled with a sample cart, products, order and offer,
    so every block shows. The home's copy overrides (messages/copy/LANG.yaml) apply.
    """
    from reengage.messages.copy import Catalogue
    from reengage.messages.intents import intent as intent_spec
    from reengage.messages.intents import variant_for
    from reengage.messages.render import Links, Renderer
    from reengage.messages.samples import sample_context

    spec = intent_spec(intent)
    settings = load_settings()
    if contact is None:
        language = lang or settings.language
        scored_style = style or "neutral"
        context = replace(sample_context(language, settings.currency), shop_name=settings.shop_name)
    else:
        from reengage.messages.context import for_contact

        with opened_state() as (home, engine):
            recipient = for_contact(
                home, engine, contact, spec.id, clock=state.clock, language=lang
            )
        language = lang or recipient.language
        scored_style = style or recipient.style
        context = recipient.context
    variant = variant_for(scored_style)
    renderer = Renderer(Catalogue.for_settings(settings))
    base = settings.public_url
    links = Links(unsubscribe=f"{base}/u/PREVIEW", preferences=f"{base}/p/PREVIEW")
    rendered = renderer.render(spec.id, variant, language, context, links)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(rendered.html, encoding="utf-8")
    data: dict[str, Any] = {
        "intent": spec.id,
        "purpose": spec.purpose,
        "variant": variant,
        "language": language,
        "channel": channel.value,
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "text": rendered.text,
        "sms": rendered.sms,
        "push_title": rendered.push_title,
        "push_body": rendered.push_body,
        "url": rendered.url,
        "html_file": str(html) if html is not None else None,
    }
    if json_:
        emit_json(data)
        return
    out.print(f"{spec.id} · {variant} · {language} · {channel.value}")
    if channel is PreviewChannel.email:
        _say(f"Subject:   {rendered.subject}")
        _say(f"Preheader: {rendered.preheader}")
        _say("")
        _say(rendered.text)
    elif channel is PreviewChannel.sms:
        _say(f"SMS ({len(rendered.sms)} characters, then the link and the opt-out line):")
        out.print(rendered.sms_with_link)
    else:
        _say(f"Title: {rendered.push_title}")
        _say(f"Body:  {rendered.push_body}")
        _say(f"Opens: {rendered.url}")
    if html is not None:
        _say(f"HTML written to {html}")


@messages_app.command("check")
@handles_errors
def check(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the copy in force, the home's overrides included: every intent, style and field
    present, every template valid and renderable, SMS and push within their limits."""
    from reengage.config import LANGUAGES
    from reengage.messages.copy import Catalogue

    catalogue = Catalogue.for_settings(load_settings())
    too_long = catalogue.check()
    files = [shown for language in LANGUAGES for _, shown in catalogue.files(language)]
    if json_:
        emit_json({"ok": not too_long, "files": files, "too_long": too_long})
    else:
        for shown in files:
            _say(f"read {shown}")
        for problem in too_long:
            err.print(f"[bold red]error:[/] {problem}", highlight=False, markup=True)
        if not too_long:
            _say("ok: every intent, style and field is present and renders within its limits")
    if too_long:
        raise typer.Exit(2)


def _say(text: str) -> None:
    """Print as is: copy may hold brackets that Rich would read as markup."""
    out.print(text, markup=False, highlight=False)
