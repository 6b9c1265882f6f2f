"""KPIs on the hand-made shop: every count, rate, cost and the holdout lift worked out by
hand from measured_shop's story (see the comments in `build`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from measured_shop import build, day
from sqlalchemy import Engine

from reengage.config import Home
from reengage.measure.kpis import Period, holdouts, kpis
from reengage.state.schema import enrollments, scores, suppressions

PERIOD = Period(day(-1), day(15))


def extras(home: Home, engine: Engine, shop: object, m: dict[str, int]) -> None:
    """C2 was inactive before the win-back; C5 complained; C3 unsubscribed."""
    contact = shop.contact  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            scores.insert().values(
                contact_id=contact("C2"),
                as_of=day(-1),
                computed_at=day(-1),
                orders=3,
                total_spent=90.0,
                lifecycle="inactive",
                threshold_days=60.0,
                clv=80.0,
                details={},
            )
        )
        conn.execute(  # scored again after the win-back: worth more now
            scores.insert().values(
                contact_id=contact("C2"),
                as_of=day(10),
                computed_at=day(10),
                orders=4,
                total_spent=120.0,
                lifecycle="reactivated",
                threshold_days=60.0,
                clv=120.0,
                details={},
            )
        )
        conn.execute(
            suppressions.insert().values(
                channel="email",
                address="c5@example.com",
                contact_id=contact("C5"),
                reason="complained",
                source="test",
                recorded_at=day(2.6),
            )
        )
        for customer, held in (("C1", 0), ("C2", 0), ("C6", 0), ("C3", 1), ("C4", 1), ("C5", 1)):
            conn.execute(
                enrollments.insert().values(
                    journey="winback",
                    contact_id=contact(customer),
                    trigger_key=f"t{customer}",
                    entered_at=day(0),
                    status="held_out" if held else "done",
                    digest="d",
                    variants="",
                    steps_run=0,
                    payload={},
                )
            )
    shop.event(m["c3"], "unsubscribe", day(2.1))  # type: ignore[attr-defined]
    shop.store_events()  # type: ignore[attr-defined]


def test_kpis_by_journey_match_the_hand_count(home: Home, engine: Engine, tmp_path: Path) -> None:
    shop, m = build(home, engine, tmp_path)
    shop.events.clear()
    extras(home, engine, shop, m)
    rows = {r["group"]: r for r in kpis(home.settings, engine, PERIOD, by="journey")}
    winback = rows["winback"]
    expected = {
        "sent": 7,
        "delivered": 7,
        "opened": 1,  # C3, a person; C4's open was a proxy's
        "machine_opened": 1,
        "clicked": 3,  # C2, C6 twice; C5's was a scanner's
        "converted": 3,  # O1 by its code, O2 and O7 by their clicks
        "orders": 3,
        "unsubscribed": 1,
        "complained": 1,  # C5, a tenth of a day after the message
        "inactive_recipients": 1,
        "reactivated": 1,  # C2 bought within five days of the win-back
        "revenue": 120.0,
        "discounts": 0.0,
        "message_cost": 0.01,  # 7 emails at 0.001
        "click_rate": round(3 / 7, 4),
        "conversion_rate": round(3 / 7, 4),
        "reactivation_rate": 1.0,
        "average_order_value": 40.0,
        "clv_before": 80.0,  # C2, the one recipient scored before and after a message
        "clv_after": 120.0,
    }
    assert {k: winback[k] for k in expected} == expected
    assert winback["roi"] == pytest.approx((120 - 0.007) / 0.007, rel=1e-3)
    cart = rows["cart"]
    assert (cart["sent"], cart["clicked"], cart["converted"], cart["revenue"]) == (1, 1, 0, 0.0)
    assert cart["message_cost"] == 0.07  # one SMS
    assert cart["clv_before"] is None  # nobody scored on both sides

    by_channel = {r["group"]: r["sent"] for r in kpis(home.settings, engine, PERIOD, by="channel")}
    assert by_channel == {"email": 7, "sms": 1}
    steps = {r["group"] for r in kpis(home.settings, engine, PERIOD, by="step")}
    assert steps == {"winback/first", "winback/second", "cart/first"}
    only = kpis(home.settings, engine, PERIOD, by="all", journey="cart")
    assert [(r["group"], r["sent"]) for r in only] == [("all", 1)]
    assert kpis(home.settings, engine, PERIOD, by="journey", journey="nothing") == []


def test_holdout_lift_and_incremental_revenue(home: Home, engine: Engine, tmp_path: Path) -> None:
    shop, m = build(home, engine, tmp_path)
    shop.events.clear()
    extras(home, engine, shop, m)
    [found] = holdouts(home.settings, engine, PERIOD)
    assert found["journey"] == "winback"
    # treated: C1 40, C2 30 (O3 is past the window), C6 50; held out: C3, C4, C5 20 each
    assert found["treated"]["revenue_per_recipient"] == pytest.approx(40.0)
    assert found["holdout"]["revenue_per_recipient"] == pytest.approx(20.0)
    assert found["rpr_diff"] == pytest.approx(20.0)
    assert found["incremental_revenue"] == pytest.approx(60.0)
    low, high = found["incremental_revenue_ci"]
    assert low < 60 < high


def test_an_unknown_grouping_is_refused(home: Home, engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown grouping 'campaign'"):
        kpis(home.settings, engine, PERIOD, by="campaign")


def test_report_command_prints_json_and_writes_csv(
    home: Home, engine: Engine, tmp_path: Path
) -> None:
    import csv
    import json

    from typer.testing import CliRunner

    from reengage.cli import app

    shop, m = build(home, engine, tmp_path)
    shop.events.clear()
    extras(home, engine, shop, m)
    runner = CliRunner()
    target = tmp_path / "kpis.csv"
    args = ["report", "--since", day(-1).isoformat(), "--until", day(15).isoformat()]
    done = runner.invoke(app, [*args, "--json", "--csv", str(target)])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert [r["group"] for r in data["rows"]] == ["winback", "cart"]
    assert data["holdouts"][0]["incremental_revenue"] == pytest.approx(60.0)
    with open(target, encoding="utf-8") as fh:
        written = list(csv.DictReader(fh))
    assert [(r["group"], r["sent"], r["revenue"]) for r in written] == [
        ("winback", "7", "120.0"),
        ("cart", "1", "0.0"),
    ]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0 and "incremental revenue 60.00" in shown.output
    bad = runner.invoke(app, [*args, "--by", "campaign"])
    assert bad.exit_code == 2 and "--by 'campaign'" in bad.output


def test_the_global_holdout_lift_compares_everyone_with_those_held_out(
    env: dict[str, str], home: Home, engine: Engine, tmp_path: Path
) -> None:
    from reengage.config import load_settings
    from reengage.measure.holdout import global_holdout
    from reengage.measure.kpis import global_lift

    shop, _ = build(home, engine, tmp_path)
    assert global_lift(home.settings, engine, PERIOD) is None  # none without a holdout
    settings = load_settings({**env, "REENGAGE_GLOBAL_HOLDOUT": "0.5"})
    spent = {"C1": 40.0, "C2": 45.0, "C3": 20.0, "C4": 20.0, "C5": 20.0, "C6": 50.0}
    ids = [shop.contact(c) for c in spent]
    held = dict(zip(spent, global_holdout(ids, 0.5), strict=True))
    found = global_lift(settings, engine, PERIOD)
    if all(held.values()) or not any(held.values()):
        assert found is None
        return
    inside = [v for c, v in spent.items() if held[c]]
    outside = [v for c, v in spent.items() if not held[c]]
    assert found is not None
    assert found["holdout"]["n"] == len(inside) and found["treated"]["n"] == len(outside)
    diff = sum(outside) / len(outside) - sum(inside) / len(inside)
    assert found["incremental_revenue"] == pytest.approx(diff * len(outside), abs=0.01)
