"""`reengage report`: the KPIs of the messages sent in a period, and each holdout's lift."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, emit_json, handles_errors, instant, opened_state, out
from reengage.errors import InputError

CSV_COLUMNS = (
    "group",
    "sent",
    "delivered",
    "opened",
    "machine_opened",
    "clicked",
    "converted",
    "orders",
    "unsubscribed",
    "complained",
    "inactive_recipients",
    "reactivated",
    "open_rate",
    "click_rate",
    "conversion_rate",
    "reactivation_rate",
    "unsubscribes_per_1000",
    "complaints_per_1000",
    "revenue",
    "average_order_value",
    "discounts",
    "message_cost",
    "cost",
    "roi",
    "clv_before",
    "clv_after",
)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise InputError(f"--csv {path}: {exc.strerror}") from None


@app.command()
@handles_errors
def report(
    since: Annotated[
        str | None, typer.Option(help="Start of the period (default: 30 days before --until).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (default: now).")] = None,
    journey: Annotated[
        str | None, typer.Option(help="Only this journey's (or campaign's) messages.")
    ] = None,
    by: Annotated[
        str, typer.Option(help="Group by journey, step, channel, segment, week or all.")
    ] = "journey",
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write the rows to this CSV file.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the messages sent in a period did: sends, opens (machine opens apart), clicks,
    conversions, unsubscribes and complaints, revenue attributed, cost and ROI; and for each
    journey with a holdout, the incremental revenue against it with its 95% interval."""
    from reengage.measure.kpis import GROUPS, Period, global_lift, holdouts, kpis
    from reengage.measure.splits import splits

    if by not in GROUPS:
        raise InputError(f"--by {by!r}: use one of {', '.join(GROUPS)}")
    end = instant(until, "--until")
    start = instant(since, "--since") if since else end - timedelta(days=30)
    if start >= end:
        raise InputError("--since must be before --until")
    period = Period(start, end)
    with opened_state() as (home, engine):
        rows = kpis(home.settings, engine, period, by=by, journey=journey)
        lifts = holdouts(home.settings, engine, period, journey=journey)
        overall = global_lift(home.settings, engine, period) if journey is None else None
        tests = splits(home.settings, engine, period, journey=journey)
        currency = home.settings.currency
    if csv_file is not None:
        _write_csv(csv_file, rows)
    if json_:
        emit_json(
            {
                "since": start.isoformat(),
                "until": end.isoformat(),
                "by": by,
                "currency": currency,
                "rows": rows,
                "holdouts": lifts,
                "global_holdout": overall,
                "experiments": tests,
            }
        )
        return
    table = Table(
        by, "sent", "opened", "clicked", "converted", "unsub/1000", "revenue", "cost", "ROI",
        title=f"Messages sent {start:%Y-%m-%d} – {end:%Y-%m-%d} (revenue attributed)",
    )  # fmt: skip
    for r in rows:
        machine = f" (+{r['machine_opened']:,} machine)" if r["machine_opened"] else ""
        table.add_row(
            escape(str(r["group"])),
            f"{r['sent']:,}",
            _percent(r["open_rate"]) + machine,
            _percent(r["click_rate"]),
            _percent(r["conversion_rate"]),
            "—" if r["unsubscribes_per_1000"] is None else f"{r['unsubscribes_per_1000']:.1f}",
            f"{r['revenue']:,.2f} {currency}",
            f"{r['cost']:,.2f}",
            "—" if r["roi"] is None else f"{r['roi']:,.1f}×",
        )  # fmt: skip
    out.print(table if rows else "No messages were sent in the period.")
    if overall is not None:
        ci = overall["incremental_revenue_ci"]
        span = f" (95% CI {ci[0]:,.2f} to {ci[1]:,.2f})" if ci else ""
        out.print(
            f"reengage as a whole: {overall['holdout']['n']:,} customers in the global holdout; "
            f"incremental revenue {overall['incremental_revenue']:,.2f} {currency}{span}"
        )
    for lift in lifts:
        ci = lift["incremental_revenue_ci"]
        span = f" (95% CI {ci[0]:,.2f} to {ci[1]:,.2f})" if ci else ""
        out.print(
            f"{escape(lift['journey'])}: {lift['treated']['n']:,} entered, "
            f"{lift['holdout']['n']:,} held out; incremental revenue "
            f"{lift['incremental_revenue']:,.2f} {currency}{span}"
        )
    for test in tests:
        parts = []
        for v in test["variants"]:
            text = f"{escape(str(v['variant']))} {v['conversion_rate']:.1%} of {v['n']:,}"
            if "lift_abs" in v:
                text += (
                    f" ({v['lift_abs']:+.1%}, 95% CI {v['lift_abs_ci_low']:+.1%} to "
                    f"{v['lift_abs_ci_high']:+.1%}, p={v['p_value']:.3f})"
                )
            parts.append(text)
        out.print(f"{escape(test['journey'])} split {escape(test['split'])}: " + "; ".join(parts))
