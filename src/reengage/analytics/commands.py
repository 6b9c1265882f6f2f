"""Commands of customer understanding: `score`, `contacts export`, `contacts show`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reengage.cli import (
    app,
    counted_progress,
    emit_json,
    err,
    handles_errors,
    instant,
    opened_state,
    out,
    state,
)
from reengage.config import load_settings

contacts_app = typer.Typer(
    help="Scored contacts: export them all, or show one.", no_args_is_help=True
)
app.add_typer(contacts_app, name="contacts")
models_app = typer.Typer(
    help="Buy-till-you-die models: BG/NBD and Gamma-Gamma.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def _as_of(text: str | None) -> datetime:
    return instant(text, "--as-of")


@app.command()
@handles_errors
def score(
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Score as the shop stood then (YYYY-MM-DD = its start, UTC); default now."
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Compute every contact's features, RFM, lifecycle stage and scores, and store them."""
    from reengage.analytics.scoring import score as run_score

    moment = _as_of(as_of)
    with opened_state() as (home, engine), counted_progress(quiet=json_) as progress:
        summary = run_score(home, engine, as_of=moment, clock=state.clock, progress=progress)
    if json_:
        emit_json(summary.__dict__)
        return
    out.print(
        f"Scored {summary.contacts:,} contacts as of {summary.as_of} "
        f"({summary.buyers:,} buyers; inactive after {summary.threshold_days:.0f} days)."
    )
    table = Table("lifecycle stage", "contacts")
    for stage, n in summary.lifecycle.items():
        table.add_row(stage, f"{n:,}")
    out.print(table)
    segments = Table("RFM segment", "contacts")
    for name, n in summary.rfm_segments.items():
        segments.add_row(name, f"{n:,}")
    out.print(segments)


@contacts_app.command("export")
@handles_errors
def contacts_export(
    out_file: Annotated[Path, typer.Option("--out", help="The file to write.")],
    format: Annotated[str, typer.Option("--format", help="csv, parquet or json.")] = "csv",
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """One row per contact with the latest scores: RFM, lifecycle, features."""
    from reengage.analytics.profiles import export_contacts

    with opened_state() as (_, engine):
        rows = export_contacts(engine, out_file, format)
    if json_:
        emit_json({"rows": rows, "out": str(out_file), "format": format})
    else:
        out.print(f"wrote {rows:,} contacts to {out_file}")


@contacts_app.command("show")
@handles_errors
def contacts_show(
    contact: Annotated[str, typer.Argument(help="Customer id, email or phone.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One contact's profile: identities, consents, latest scores."""
    from reengage.analytics.profiles import contact_profile

    with opened_state() as (_, engine):
        profile = contact_profile(engine, contact)
    if json_:
        emit_json(profile)
        return
    table = Table(title=f"contact {profile['customer_id']}", show_header=False)
    for key, value in profile.items():
        if key == "scores" and value:
            for k, v in value.items():
                if k != "details" and v is not None:
                    table.add_row(k, str(v))
        elif key != "scores":
            table.add_row(key, str(value))
    out.print(table)


@models_app.command("fit")
@handles_errors
def models_fit(
    as_of: Annotated[
        str | None,
        typer.Option(help="Fit on orders before this instant (YYYY-MM-DD = its start, UTC)."),
    ] = None,
    time_unit: Annotated[str, typer.Option(help="day or week.")] = "week",
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit BG/NBD and Gamma-Gamma by maximum likelihood and print their parameters."""
    import ibis

    from reengage.analytics.models import fit
    from reengage.facts import reader
    from reengage.home import open_state

    moment = _as_of(as_of)
    home, engine = open_state(load_settings())
    engine.dispose()
    con = reader.connect(home.settings.facts_path)
    try:
        fitted = fit(ibis.duckdb.from_connection(con).table("orders"), moment, time_unit)
    finally:
        con.close()
    data = fitted.as_dict()
    if json_:
        emit_json(data)
        return
    b = data["bgnbd"]
    out.print(f"{data['customers']:,} customers, time in {time_unit}s")
    out.print(
        f"BG/NBD       r={b['r']:.4f} alpha={b['alpha']:.4f} a={b['a']:.4f} "
        f"b={b['b']:.4f} log-likelihood={b['log_likelihood']:.1f}"
    )
    g = data["gamma_gamma"]
    if g:
        out.print(f"Gamma-Gamma  p={g['p']:.4f} q={g['q']:.4f} v={g['v']:.4f}")
    else:
        out.print("Gamma-Gamma  not fitted (too few repeat customers with spend)")


@app.command()
@handles_errors
def recommend(
    product: Annotated[str | None, typer.Option(help="Offers around this product.")] = None,
    contact: Annotated[str | None, typer.Option(help="Offers for this customer id.")] = None,
    as_of: Annotated[str | None, typer.Option(help="From orders before this instant.")] = None,
    k: Annotated[int, typer.Option(min=1, max=50, help="How many of each kind.")] = 5,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cross-sell, up-sell and down-sell for a product or a contact."""
    import ibis

    from reengage.analytics import recommend as rec
    from reengage.analytics.scoring import catalogue as product_table
    from reengage.facts import reader

    if (product is None) == (contact is None):
        err.print("error: give exactly one of --product and --contact")
        raise typer.Exit(2)
    moment = _as_of(as_of)
    with opened_state() as (home, engine):
        catalogue = ibis.memtable(product_table(engine))
    con = reader.connect(home.settings.facts_path)
    try:
        orders = ibis.duckdb.from_connection(con).table("orders")
        if product is not None:
            t = rec.for_products(catalogue, orders, moment, k)
            t = t.filter(t.product_id == product).select("kind", "rank", product_id=t.other_id)
        else:
            t = rec.for_contacts(catalogue, orders, moment, k)
            t = t.filter(t.customer_id == contact).select("kind", "rank", "product_id")
        rows = t.order_by(["kind", "rank"]).to_pyarrow().to_pylist()
    finally:
        con.close()
    if json_:
        emit_json(rows)
        return
    table = Table("kind", "rank", "product")
    for r in rows:
        table.add_row(r["kind"].replace("_", "-"), str(r["rank"] + 1), r["product_id"])
    out.print(table)


@models_app.command("report")
@handles_errors
def models_report(
    calibration_end: Annotated[str, typer.Option(help="Fit on orders before this date.")],
    holdout_end: Annotated[str, typer.Option(help="Compare with orders up to this date.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for holdout.csv and .png.")],
    time_unit: Annotated[str, typer.Option(help="day or week.")] = "week",
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Calibration and holdout: predicted against actual repeat purchases, by frequency."""
    import ibis

    from reengage.analytics.holdout import calibration_holdout, write_report
    from reengage.facts import reader
    from reengage.home import open_state

    start, end = _as_of(calibration_end), _as_of(holdout_end)
    home, engine = open_state(load_settings())
    engine.dispose()
    con = reader.connect(home.settings.facts_path)
    try:
        orders = ibis.duckdb.from_connection(con).table("orders")
        report = calibration_holdout(orders, start, end, time_unit)
    finally:
        con.close()
    table_path, chart_path = write_report(report, out_dir)
    if json_:
        emit_json(report.as_dict() | {"table": str(table_path), "chart": str(chart_path)})
        return
    table = Table("repeat purchases (calibration)", "customers", "actual", "predicted")
    for r in report.buckets.to_pylist():
        table.add_row(
            r["frequency"], f"{r['customers']:,}", f"{r['actual']:.3f}", f"{r['predicted']:.3f}"
        )
    out.print(table)
    out.print(
        f"total: {report.total_actual:,.0f} actual, {report.total_predicted:,.0f} predicted;"
        f" {table_path}, {chart_path}"
    )
