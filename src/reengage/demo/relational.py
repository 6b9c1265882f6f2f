"""The relational demo, a **simulation**: does adapting messages to each customer's style pay,
and does reengage learn styles from how people answer?

A small synthetic shop of its own (in `HOME/relational/`, so the main demo's state is left
alone) whose customers answer messages by `demo.responses.ResponseModel`: a message in the
variant of their hidden style is (1 + congruence) times as persuasive.

1. The win-back and abandoned-cart journeys, each with its holdout, run over the last
   `DAYS` days of the shop's history on a simulated clock. Contacts are split at random in two
   arms: **adaptation on** (each gets the variant of their inferred style; neutral when it is
   unknown) and **off** (everyone gets the neutral copy: the arm's contacts are shown to the
   outbox as style "unknown", which is how reengage writes to a contact whose style it does
   not know). Both arms share the journeys' holdouts, who get nothing.
2. Lift: conversion and revenue per person of each arm's entrants against the holdout, over
   the attribution click window after entry (as `measure.kpis.holdouts` counts it), with 95%
   intervals (`experiments.stats`), and on against off.
3. Learning: `analytics.style_learning.learn_from_responses` on the journeys' messages, then
   `NEWSLETTERS` weekly newsletters to everyone who can be emailed — their style's variant
   when it is known, else a variant drawn from their style probabilities (exploration: a
   neutral message teaches nothing) — each followed by learning. The style macro-F1 against
   the hidden truth is printed before and after.

The result is saved in `HOME/relational/result.json`: running the demo again prints it again
and adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, bindparam, func, select

from reengage.analytics.scoring import score
from reengage.analytics.style_learning import learn_from_responses, learned_styles
from reengage.analytics.styles import STYLES, UNKNOWN, style_report
from reengage.clock import FixedClock, as_utc
from reengage.config import Home, Settings
from reengage.demo.responses import CONGRUENCE_EFFECT, ResponseModel, answer_sent, hidden_styles
from reengage.experiments.stats import ArmCounts, Comparison, arm_stats, compare
from reengage.facts import reader
from reengage.home import init_home, open_state
from reengage.ingest.importer import import_file
from reengage.journeys.entries import valid_orders
from reengage.messages.outbox import OutboxItem, enqueue_many
from reengage.state.contacts import chunks
from reengage.state.schema import contacts, enrollments, scores

JOURNEYS = ("win_back", "abandoned_cart")
CUSTOMERS = 600
DAYS = 28
NEWSLETTERS = 3
SEED_OFFSET = 1  # the relational shop is another shop than the main demo's
IMPORT_ORDER = ("products", "customers", "orders", "events")
RESULT = "result.json"


def arm_of(customer_id: str) -> str:
    """ "on" or "off", at random but fixed by the customer id."""
    digest = hashlib.sha256(f"relational:{customer_id}".encode()).digest()
    return "on" if digest[0] < 128 else "off"


def run_relational_demo(
    settings: Settings,
    *,
    now: datetime,
    congruence: float = CONGRUENCE_EFFECT,
    customers: int = CUSTOMERS,
    seed: int = 7,
    days: int = DAYS,
    newsletters: int = NEWSLETTERS,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the relational simulation once (see the module's docstring); on a later call with
    the same parameters, the saved result. Returns the figures printed."""
    folder = settings.home / "relational"
    params = {
        "customers": customers,
        "seed": seed,
        "congruence": congruence,
        "days": days,
        "newsletters": newsletters,
        "end": as_utc(now).date().isoformat(),
    }
    saved = folder / RESULT
    if saved.is_file():
        result: dict[str, Any] = json.loads(saved.read_text())
        if result.get("parameters") == params:
            if console:
                print_relational(console, result)
            return result
    if folder.exists():
        shutil.rmtree(folder)  # another run's, or one stopped half-way
    if console:
        console.print(
            f"SIMULATION: the relational demo on a shop of its own ({customers:,} customers), "
            f"congruence effect {congruence:.0%} ..."
        )
    result = _simulate(settings, folder, params, console)
    saved.write_text(json.dumps(result, indent=2))
    if console:
        print_relational(console, result)
    return result


def _simulate(
    settings: Settings, folder: Path, params: dict[str, Any], console: Console | None
) -> dict[str, Any]:
    from reengage.demo.synth import generate_shop
    from reengage.journeys import enable_journey
    from reengage.journeys.runner import run_until

    end = datetime.fromisoformat(params["end"] + "T00:00:00+00:00")
    start = end - timedelta(days=params["days"])
    shop = folder / "shop"
    generate_shop(
        shop, customers=params["customers"], seed=params["seed"] + SEED_OFFSET, end=end.date()
    )
    own = settings.model_copy(
        update={"home": folder / "home", "database_url": None, "facts_url": None}
    )
    own = init_home(own).home.settings
    home, engine = open_state(own)
    try:
        for kind in IMPORT_ORDER:
            import_file(home, engine, kind, shop / f"{kind}.csv", clock=FixedClock(end))
        score(home, engine, as_of=start, clock=FixedClock(start))
        truth = hidden_styles(shop)
        before = {c: s for c, s in _styles(engine).items()}
        masked = _adaptation_off(engine)
        for name in JOURNEYS:
            enable_journey(home, name)
        model = ResponseModel(congruence_effect=params["congruence"])
        rng = np.random.default_rng(params["seed"])
        answered: set[int] = set()
        for day in range(1, params["days"] + 1):
            run_until(home, engine, start + timedelta(days=day), start=start, score_every=None)
            answer_sent(home, engine, model, rng, truth, answered)
        _restore(engine, masked)
        lift = _lift(home, engine, start, end)
        strength = params["congruence"]
        learning = [_f1(truth, before, "behaviour alone")]
        learn_from_responses(own, engine, start, end, strength=strength)
        learning.append(_f1(truth, _styles(engine), "after the journeys"))
        for k in range(params["newsletters"]):
            at = end + timedelta(days=7 * k, hours=10)
            _newsletter(home, engine, rng, at, k)
            answer_sent(home, engine, model, rng, truth, answered)
            learn_from_responses(own, engine, start, at + timedelta(days=6), strength=strength)
            learning.append(_f1(truth, _styles(engine), f"after newsletter {k + 1}"))
    finally:
        engine.dispose()
    return {"parameters": params, "lift": lift, "learning": learning}


def _styles(engine: Engine) -> dict[str, str]:
    table = learned_styles(engine)
    return dict(zip(table["customer_id"].to_pylist(), table["style"].to_pylist(), strict=True))


def _f1(truth: dict[str, str], predicted: dict[str, str], when: str) -> dict[str, Any]:
    report = style_report(truth, predicted)
    return {
        "when": when,
        "macro_f1": round(report["macro_f1"], 4),
        "coverage": round(report["coverage"], 4),
    }


def _adaptation_off(engine: Engine) -> dict[int, str]:
    """Show the "off" arm's contacts to the outbox with style unknown (neutral copy); returns
    the scores rows changed, with their style, to put back afterwards."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(scores.c.id, scores.c.style, contacts.c.customer_id)
            .join(contacts, contacts.c.id == scores.c.contact_id)
            .where(scores.c.style.is_not(None), scores.c.style != UNKNOWN)
        ).all()
    masked = {r.id: r.style for r in rows if r.customer_id and arm_of(r.customer_id) == "off"}
    _set_styles(engine, {i: UNKNOWN for i in masked})
    return masked


def _restore(engine: Engine, masked: dict[int, str]) -> None:
    _set_styles(engine, masked)


def _set_styles(engine: Engine, styles: dict[int, str]) -> None:
    if not styles:
        return
    statement = (
        scores.update().where(scores.c.id == bindparam("row_id")).values(style=bindparam("s"))
    )
    with engine.begin() as conn:
        for part in chunks(sorted(styles)):
            conn.execute(statement, [{"row_id": i, "s": styles[i]} for i in part])


def _newsletter(home: Home, engine: Engine, rng: np.random.Generator, at: datetime, k: int) -> None:
    """A newsletter to every contact, through the outbox and the contact policy: the style's
    variant when it is known, else one drawn from the style probabilities."""
    from reengage.messages.dispatch import deliver_due

    p = [scores.c[f"p_{s}"] for s in STYLES]
    ranked = (
        select(
            scores.c.contact_id,
            scores.c.style,
            *p,
            func.row_number()
            .over(partition_by=scores.c.contact_id, order_by=scores.c.as_of.desc())
            .label("rank"),
        )
        .where(scores.c.as_of <= at)
        .subquery()
    )
    with engine.connect() as conn:
        rows = conn.execute(select(ranked).where(ranked.c.rank == 1)).all()
    items = []
    for r in rows:
        variant = None
        if (r.style or UNKNOWN) == UNKNOWN:
            probs = np.array([r._mapping[f"p_{s}"] or 0.25 for s in STYLES], dtype=np.float64)
            variant = STYLES[int(rng.choice(len(STYLES), p=probs / probs.sum()))]
        items.append(
            OutboxItem(
                message_key=f"relational:newsletter:{k}:{r.contact_id}",
                contact_id=r.contact_id,
                intent="newsletter",
                channel="email",
                due_at=at,
                campaign=f"relational_newsletter_{k + 1}",
                variant=variant,
            )
        )
    clock = FixedClock(at)
    with engine.begin() as conn:
        enqueue_many(conn, items, clock=clock, settings=home.settings)
    deliver_due(home, engine, clock)


def _lift(home: Home, engine: Engine, start: datetime, end: datetime) -> dict[str, Any]:
    """Per journey and for both together: each arm's entrants and the holdout, their
    conversion and revenue per person over the click window after entry."""
    window = timedelta(days=home.settings.attribution_click_days)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                enrollments.c.journey,
                enrollments.c.status,
                enrollments.c.entered_at,
                contacts.c.customer_id,
            )
            .join(contacts, contacts.c.id == enrollments.c.contact_id)
            .where(
                enrollments.c.journey.in_(JOURNEYS),
                enrollments.c.entered_at > start,
                enrollments.c.entered_at <= end,
                contacts.c.customer_id.is_not(None),
            )
        ).all()
    people = pa.table(
        {
            "i": pa.array(range(len(rows)), pa.int64()),
            "journey": pa.array([r.journey for r in rows], pa.string()),
            "arm": pa.array(
                ["holdout" if r.status == "held_out" else arm_of(r.customer_id) for r in rows],
                pa.string(),
            ),
            "customer_id": pa.array([r.customer_id for r in rows], pa.string()),
            "entered_at": pa.array([as_utc(r.entered_at) for r in rows], pa.timestamp("us", "UTC")),
        }
    )
    root = home.settings.facts_path
    con = reader.connect(root)
    try:
        con.register("__people", people)
        found = con.sql(
            f"""SELECT p.i, any_value(p.journey) AS journey, any_value(p.arm) AS arm,
                       coalesce(sum(o.value), 0) AS v
                FROM __people AS p LEFT JOIN ({valid_orders("true")}) AS o
                  ON o.customer_id = p.customer_id AND o.ordered_at > p.entered_at
                 AND o.ordered_at <= p.entered_at + $window
                GROUP BY p.i ORDER BY p.i""",
            params={"window": window},
        ).fetchall()
    finally:
        con.close()
    out: dict[str, Any] = {}
    for name in (*JOURNEYS, "both"):
        values: dict[str, list[float]] = {"on": [], "off": [], "holdout": []}
        for _, journey, arm, v in found:
            if name in ("both", journey):
                values[arm].append(float(v))
        arms = {
            arm: ArmCounts.from_arrays(arm, np.array(v) > 0, np.array(v, dtype=np.float64))
            for arm, v in values.items()
        }
        out[name] = {
            "arms": {arm: arm_stats(counts).as_dict() for arm, counts in arms.items()},
            "on_vs_holdout": _comparison(compare(arms["holdout"], arms["on"])),
            "off_vs_holdout": _comparison(compare(arms["holdout"], arms["off"])),
            "on_vs_off": _comparison(compare(arms["off"], arms["on"])),
        }
    return out


def _comparison(found: Comparison) -> dict[str, Any]:
    """The difference of rates and of revenue per person, with their 95% intervals."""
    rate, revenue = found.rate, found.revenue
    return {
        "conversion_diff": rate.lift_abs,
        "conversion_diff_ci": [rate.ci.low, rate.ci.high],
        "conversion_p_value": rate.p_value,
        "rpr_diff": revenue.diff,
        "rpr_diff_ci": None if revenue.ci is None else [revenue.ci.low, revenue.ci.high],
        "rpr_p_value": revenue.p_value,
    }


def _ci(found: Any, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    if not found:
        return "n/a"
    return f"[{found[0] * scale:+.{digits}f}{unit}, {found[1] * scale:+.{digits}f}{unit}]"


def print_relational(console: Console, result: dict[str, Any]) -> None:
    params = result["parameters"]
    table = Table(
        title=(
            f"SIMULATION — style adaptation on vs off, congruence effect "
            f"{params['congruence']:.0%} ({params['customers']:,} simulated customers, "
            f"{params['days']} days)"
        )
    )
    for column in (
        "journey",
        "comparison",
        "n",
        "conversion lift (pp)",
        "95% CI",
        "revenue/person lift",
        "95% CI",
    ):
        table.add_column(column, justify="left" if column in ("journey", "comparison") else "right")
    for name, found in result["lift"].items():
        for key, label in (
            ("on_vs_holdout", "on − holdout"),
            ("off_vs_holdout", "off − holdout"),
            ("on_vs_off", "on − off"),
        ):
            c = found[key]
            arm = "on" if key.startswith("on") else "off"
            other = "holdout" if key.endswith("holdout") else "off"
            n = f"{found['arms'][arm]['n']:,} vs {found['arms'][other]['n']:,}"
            table.add_row(
                name,
                label,
                n,
                f"{c['conversion_diff'] * 100:+.2f}",
                _ci(c["conversion_diff_ci"], 100),
                f"{c['rpr_diff']:+.2f}",
                _ci(c["rpr_diff_ci"]),
            )
    console.print(table)
    steps = result["learning"]
    trail = " → ".join(f"{s['macro_f1']:.2f}" for s in steps)
    console.print(
        f"SIMULATION — style macro-F1 against the hidden styles: {trail} "
        f"({steps[0]['when']}, then {', '.join(s['when'] for s in steps[1:])}); "
        f"styled contacts {steps[0]['coverage']:.0%} → {steps[-1]['coverage']:.0%}.",
        highlight=False,
    )
    console.print(
        "These figures measure a simulation whose customers follow an assumed response model "
        "(reengage.demo.responses; congruence effect after Matz et al. 2017, PNAS), not any "
        "real shop.",
        highlight=False,
    )
