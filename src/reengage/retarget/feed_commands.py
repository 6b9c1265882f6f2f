"""`reengage feeds export` (product feeds for dynamic ads) and `reengage referrals`
(referral codes, their share links and the orders they brought)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, emit_json, err, handles_errors, opened_state, out, state
from reengage.errors import InputError
from reengage.retarget import feeds, referrals

feeds_app = typer.Typer(
    help="Product feeds for dynamic ads (Meta catalogue CSV, Google Merchant XML).",
    no_args_is_help=True,
)
app.add_typer(feeds_app, name="feeds")
referrals_app = typer.Typer(
    help="Referral codes and share links, and the orders they brought.", no_args_is_help=True
)
app.add_typer(referrals_app, name="referrals")

Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@feeds_app.command("export")
@handles_errors
def feeds_export(
    format_: Annotated[
        str, typer.Option("--format", help="meta (catalogue CSV) or google (Merchant XML).")
    ],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the feed here (else to stdout).")
    ] = None,
    segment: Annotated[
        str | None,
        typer.Option(
            "--segment", help="Only what this segment viewed or carted in the last 30 days."
        ),
    ] = None,
    json_: Annotated[
        bool,
        typer.Option("--json", help='Print {"written": N, "skipped": [...]} (needs --out).'),
    ] = False,
) -> None:
    """Write the catalogue as a product feed; products missing a required field are left
    out and listed with the reason."""
    feeds.check_format(format_)
    if json_ and out_file is None:
        raise InputError("--json prints the summary on stdout: give the feed a file with --out")
    with opened_state() as (home, engine):
        feed = feeds.build(home.settings, engine, format_, segment=segment, now=state.clock.now())
    if out_file is None:
        sys.stdout.write(feed.body)
    else:
        out_file.write_text(feed.body, encoding="utf-8")
    if json_:
        emit_json(feed.summary())
        return
    where = f" to {out_file}" if out_file else ""
    err.print(
        f"wrote {feed.written} product(s){escape(where)}; skipped {len(feed.skipped)}",
        highlight=False,
    )
    for skipped in feed.skipped:
        err.print(f"  skipped {escape(skipped.product_id)}: {escape(skipped.reason)}")


@referrals_app.command("code")
@handles_errors
def referrals_code(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
    json_: Json = False,
) -> None:
    """The contact's referral code (made on first use) and share link."""
    with opened_state() as (home, engine):
        code = referrals.code_for(engine, contact_id, state.clock)
    link = referrals.share_link(home.settings, code) if home.settings.shop_url else None
    if json_:
        emit_json({"contact_id": contact_id, "code": code, "share_link": link})
        return
    out.print(code, highlight=False)
    if link:
        out.print(link, highlight=False, soft_wrap=True)
    else:
        err.print("no share link: set shop_url")


@referrals_app.command("list")
@handles_errors
def referrals_list(json_: Json = False) -> None:
    """Every referral code: its contact, the valid orders it brought and their value."""
    with opened_state() as (home, engine):
        found = referrals.all_referrals(home.settings, engine)
    rows: list[dict[str, Any]] = [
        {
            "code": r.code,
            "contact_id": r.contact_id,
            "customer_id": r.customer_id,
            "orders": len(r.orders),
            "revenue": r.revenue,
        }
        for r in found
    ]
    if json_:
        emit_json(rows)
        return
    table = Table("code", "contact", "customer", "orders", "revenue")
    for r in found:
        table.add_row(
            escape(r.code),
            str(r.contact_id),
            escape(r.customer_id or ""),
            f"{len(r.orders):,}",
            f"{r.revenue:,.2f}",
        )
    out.print(table)
