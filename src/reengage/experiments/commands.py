"""`reengage experiments`: analyse an A/B/n test from a CSV, and check the false positive rate
of that analysis by simulating A/A tests."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reengage.cli import app, counted_progress, emit_json, handles_errors, out
from reengage.errors import InputError

if TYPE_CHECKING:
    from reengage.experiments.stats import ArmCounts

COLUMNS = ("variant", "converted", "revenue")

experiments_app = typer.Typer(
    help="Experiments: the statistics of A/B/n tests on your own data.", no_args_is_help=True
)
app.add_typer(experiments_app, name="experiments")


def read_variants(path: Path) -> list[ArmCounts]:
    """Per-variant counts from a CSV of one row per recipient (variant, converted, revenue), in
    the order variants first appear. A bad row stops the read, naming its line and column."""
    from reengage.experiments.stats import ArmCounts

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        sums = _sums(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path.name}: not a UTF-8 CSV file ({exc})") from None
    if not sums:
        raise InputError(f"{path.name}: no rows")
    return [ArmCounts(v, int(s[0]), int(s[1]), s[2], s[3]) for v, s in sums.items()]


def _sums(path: Path) -> dict[str, list[float]]:
    """variant -> [n, conversions, revenue sum, revenue sum of squares], in file order."""
    sums: dict[str, list[float]] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path.name}: line 1: missing column(s) {', '.join(missing)}")
        for row in reader:
            where = f"{path.name}: line {reader.line_num}"
            variant = (row["variant"] or "").strip()
            if not variant:
                raise InputError(f"{where}, column variant: missing variant")
            converted = (row["converted"] or "").strip()
            if converted not in ("0", "1"):
                raise InputError(f"{where}, column converted: {converted!r} is not 0 or 1")
            text = (row["revenue"] or "").strip()
            try:
                revenue = float(text)
            except ValueError:
                revenue = math.nan
            if not math.isfinite(revenue):
                raise InputError(f"{where}, column revenue: {text[:40]!r} is not a number")
            s = sums.setdefault(variant, [0, 0, 0.0, 0.0])
            s[0] += 1
            s[1] += converted == "1"
            s[2] += revenue
            s[3] += revenue * revenue
    return sums


def _span(value: float, low: float | None, high: float | None, fmt: str) -> str:
    text = format(value, fmt)
    return text if low is None or high is None else f"{text} [{low:{fmt}}, {high:{fmt}}]"


def _table(rows: list[dict[str, Any]], control: str) -> Table:
    table = Table(
        "variant",
        "n",
        "conv.",
        "rate [95% CI]",
        "rev/recipient [95% CI]",
        "lift, points [95% CI]",
        "relative",
        "p",
        "sig.",
        caption=f"each variant against {escape(control)}: two-sided, 5% level",
    )
    for r in rows:
        vs = ["(control)", "", "", ""]
        if "lift_abs" in r:
            # absolute lift in percentage points, not to be read as the relative lift
            low, high = 100 * r["lift_abs_ci_low"], 100 * r["lift_abs_ci_high"]
            vs = [
                _span(100 * r["lift_abs"], low, high, "+.1f"),
                "-" if r["lift_rel"] is None else f"{r['lift_rel']:+.1%}",
                f"{r['p_value']:.4f}",
                "[bold green]yes[/]" if r["significant"] else "no",
            ]
        table.add_row(
            escape(r["variant"]),
            f"{r['n']:,}",
            f"{r['conversions']:,}",
            _span(r["conversion_rate"], r["ci_low"], r["ci_high"], ".1%"),
            _span(r["revenue_per_recipient"], r["rpr_ci_low"], r["rpr_ci_high"], ",.2f"),
            *vs,
        )
    return table


@experiments_app.command("analyze")
@handles_errors
def experiments_analyze(
    file: Annotated[
        Path, typer.Argument(help="CSV of one row per recipient: variant, converted, revenue.")
    ],
    control: Annotated[
        str | None,
        typer.Option(help='The control variant: "control" if present, else the first listed.'),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Conversion rate and revenue per recipient of each variant, and each against the control:
    lift with its 95% interval, two-proportion z-test, significance at 5%."""
    from reengage.experiments.stats import analyze

    arms = read_variants(file)
    if control is not None and control not in [a.name for a in arms]:
        raise InputError(f"{file.name}: no variant named {control!r} for --control")
    result = analyze(arms, control=control)
    if json_:
        emit_json(result.rows())
        return
    out.print(_table(result.rows(), result.control))


@experiments_app.command("calibrate")
@handles_errors
def experiments_calibrate(
    runs: Annotated[int, typer.Option(min=1, help="How many A/A tests to simulate.")] = 1000,
    seed: Annotated[int | None, typer.Option(help="Seed, to repeat a run exactly.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Recipients per arm.")] = 2000,
    rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="True conversion rate of both arms.")
    ] = 0.05,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Simulate A/A tests (two arms, the same true rate) through the analysis and report how
    often it calls a difference significant at 5%: the false positive rate, about 5%."""
    from reengage.experiments.calibration import simulate_aa

    with counted_progress(quiet=json_) as progress:
        result = simulate_aa(runs, n=n, rate=rate, seed=seed, progress=progress)
    if json_:
        emit_json(result.as_dict())
        return
    table = Table(title="A/A calibration", show_header=False)
    table.add_row("runs", f"{result.runs:,} (2 × {n:,} recipients at {rate:.2%})")
    table.add_row("alpha", f"{result.alpha:.0%}")
    table.add_row("false positive rate", f"{result.false_positive_rate:.2%}")
    out.print(table)


def _rates(text: str) -> dict[str, float]:
    """`a=0.03,b=0.04` as {arm: true rate}; InputError naming the bad part."""
    found: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not name or not 0 <= rate <= 1 or name in found:
            raise InputError(
                f"--rates {part.strip()!r}: write each arm as NAME=RATE with a rate between "
                "0 and 1, names distinct (e.g. nurturer=0.04,examiner=0.03)"
            )
        found[name] = rate
    return found


@experiments_app.command("bandit")
@handles_errors
def experiments_bandit(
    rates: Annotated[
        str,
        typer.Option(help="The arms and their true conversion rates: NAME=RATE,NAME=RATE,..."),
    ] = "go_getter=0.030,promoter=0.034,nurturer=0.040,examiner=0.036",
    rounds: Annotated[int, typer.Option(min=1, help="How many batches are sent.")] = 60,
    batch: Annotated[int, typer.Option(min=1, help="Recipients per batch.")] = 500,
    seed: Annotated[int | None, typer.Option(help="Seed, to repeat a run exactly.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Simulate Thompson sampling among variants with known rates: how fast it sends most
    recipients to the best one, and the conversions gained over an even split."""
    from reengage.experiments.bandit import simulate

    arms = _rates(rates)
    with counted_progress(quiet=json_) as progress:
        result = simulate(arms, rounds=rounds, batch=batch, seed=seed, progress=progress)
    data = result.as_dict()
    if json_:
        emit_json(data)
        return
    table = Table("arm", "true rate", "sent", "P(best)", title="Thompson sampling (simulated)")
    for name, rate in arms.items():
        mark = " (best)" if name == result.best else ""
        table.add_row(
            escape(name) + mark,
            f"{rate:.2%}",
            f"{result.sent[name]:,}",
            f"{result.probability_best[name]:.1%}",
        )
    out.print(table)
    out.print(
        f"best arm's share: {data['share_best_first_round']:.0%} of the first batch, "
        f"{data['share_best_last_round']:.0%} of the last; conversions {result.conversions:,} "
        f"against {data['conversions_even_split_expected']:,.0f} expected from an even split"
    )
