"""How `campaigns show` and the demo print a campaign's results for a person to read."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _interval(low: float | None, high: float | None, percent: bool = True) -> str:
    if low is None or high is None:
        return ""
    if percent:
        return f"[{100 * low:.1f}%, {100 * high:.1f}%]"
    return f"[{low:,.2f}, {high:,.2f}]"


def print_results(console: Console, found: dict[str, Any]) -> None:
    say = console.print
    say(
        f"[bold]{escape(found['name'])}[/] ({found['status']}): {found['intent']} by "
        f"{found['channel']} to {', '.join(found['segments'])}"
        + (f", excluding {', '.join(found['exclude'])}" if found["exclude"] else ""),
        highlight=False,
    )
    if found.get("audience") is not None:
        say(
            f"audience {found['audience']:,} (excluded {found['excluded']:,}), "
            f"holdout {found['holdout']:,}",
            highlight=False,
        )
    counts = found["messages"]
    say(
        "messages: "
        + ", ".join(
            f"{k} {counts[k]:,}"
            for k in ("sent", "blocked", "failed", "pending", "cancelled")
            if counts.get(k)
        )
        or "messages: none yet",
        highlight=False,
    )
    for reason, n in (found.get("blocked_reasons") or {}).items():
        say(f"  blocked {n:,}: {escape(reason)}", highlight=False)
    engagement = found.get("engagement")
    if engagement and engagement["sent"]:
        say(
            f"opened {engagement['opened']:,} ({_pct(engagement['open_rate'])}; machine opens "
            f"{engagement['machine_opens']:,} apart), clicked {engagement['clicked']:,} "
            f"({_pct(engagement['click_rate'])}), unsubscribed "
            f"{engagement['unsubscribes_per_1000']}/1000, complaints "
            f"{engagement['complaints_per_1000']}/1000",
            highlight=False,
        )
    decision = found.get("decision")
    if decision:
        table = Table("variant", "recipients", "converted", "rate", "95% interval", title="test")
        for arm in decision.get("arms", []):
            table.add_row(
                escape(str(arm["variant"])),
                f"{arm['n']:,}",
                f"{arm['conversions']:,}",
                _pct(arm.get("conversion_rate")),
                _interval(arm.get("ci_low"), arm.get("ci_high")),
            )
        console.print(table)
        p = decision.get("p_value")
        say(
            f"winner: {escape(str(decision['winner']))} "
            f"({escape(str(decision.get('reason', '')))}"
            + (f"; p = {p:.3g}" if p is not None else "")
            + ")",
            highlight=False,
        )
    lift = found.get("lift")
    if lift:
        treated, held = lift["treated"], lift["control"]
        say(
            f"conversion: received {_pct(treated['conversion_rate'])} "
            f"{_interval(treated['ci_low'], treated['ci_high'])} against holdout "
            f"{_pct(held['conversion_rate'])} {_interval(held['ci_low'], held['ci_high'])}; "
            f"lift {_pct(lift['lift_abs'])} "
            f"{_interval(lift['lift_abs_ci_low'], lift['lift_abs_ci_high'])}, "
            f"p = {lift['p_value']:.3g}" + ("" if lift.get("complete") else " (still measuring)"),
            highlight=False,
        )
        if lift.get("incremental_revenue") is not None:
            say(f"incremental revenue: {lift['incremental_revenue']:,.2f}", highlight=False)
