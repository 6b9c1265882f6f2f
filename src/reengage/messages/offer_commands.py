"""Commands of offers: `offers list`, `offers match`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from reengage.cli import app, emit_json, err, handles_errors, opened_state, out, state

offers_app = typer.Typer(
    help="Discount codes: what was issued, what was redeemed.", no_args_is_help=True
)
app.add_typer(offers_app, name="offers")


@offers_app.command("list")
@handles_errors
def offers_list(
    status: Annotated[
        str | None, typer.Option("--status", help="Only issued, redeemed or expired offers.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many offers to show.")] = 100,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The offers issued, newest first: code, contact, intent, rung, discount, status."""
    from reengage.messages.offers import OFFER_STATUSES, list_offers

    if status is not None and status not in OFFER_STATUSES:
        err.print(f"error: --status {status!r}: use one of {', '.join(OFFER_STATUSES)}")
        raise typer.Exit(2)
    with opened_state() as (_, engine):
        found = list_offers(engine, status=status, limit=limit)
    if json_:
        emit_json([o.as_dict() for o in found])
        return
    table = Table(
        Column("code", no_wrap=True),
        *("contact", "intent", "level", "discount", "status", "issued", "expires"),
    )
    for o in found:
        if o.kind == "percent":
            cap = f" (max {o.max_discount} {o.currency})" if o.max_discount is not None else ""
            discount = f"{o.value.normalize():f}%{cap}"
        elif o.kind == "amount":
            discount = f"{o.value} {o.currency}"
        else:
            discount = "free shipping"
        table.add_row(
            o.code,
            str(o.contact_id),
            o.intent,
            str(o.level),
            discount,
            o.status + (f" ({o.order_id})" if o.order_id else ""),
            o.issued_at.strftime("%Y-%m-%d"),
            o.expires_at.strftime("%Y-%m-%d"),
        )
    out.print(table)


@offers_app.command("match")
@handles_errors
def offers_match(
    json_: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Find the imported orders that used issued codes: mark offers redeemed or expired.

    Codes used by a customer other than the one they were issued to are listed, not redeemed.
    """
    from reengage.messages.offers import match_redemptions

    with opened_state() as (home, engine):
        result = match_redemptions(home, engine, state.clock)
    if json_:
        emit_json(result.as_dict())
        return
    out.print(
        f"checked {result.checked:,} offers: {result.redeemed:,} redeemed, "
        f"{result.expired:,} expired, {result.late:,} used after expiry, "
        f"{len(result.foreign):,} uses by another customer"
    )
    if result.foreign:
        table = Table("code", "order", "ordered at", title="codes used by another customer")
        for f in result.foreign:
            table.add_row(f.code, f.order_id, f.ordered_at.strftime("%Y-%m-%d %H:%M"))
        out.print(table)
