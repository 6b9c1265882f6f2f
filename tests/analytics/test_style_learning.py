"""Learning styles from responses, on contacts worked out by hand (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.analytics.style_learning import learn_from_responses
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.facts.kinds import MESSAGE_EVENTS
from reengage.facts.writer import append
from reengage.ingest.importer import import_file
from reengage.state.schema import contacts, messages, offers, scores

DAY0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
FLAT = {"p_go_getter": 0.25, "p_promoter": 0.25, "p_nurturer": 0.25, "p_examiner": 0.25}
# by hand, with strength 1 and base rate 0.05: an answer doubles the odds of the style, and
# silence multiplies them by (1 - 0.1) / (1 - 0.05)
TWO_ANSWERS = (0.25 * 4) / (0.25 * 4 + 0.75)  # 4/7
SILENCE = (0.25 * 0.9 / 0.95) / (0.25 * 0.9 / 0.95 + 0.75)
# C1 also ignored an examiner message (a link scanner's click is no answer)
C1_PROMOTER = (0.25 * 4) / (0.25 * 4 + 0.25 * 0.9 / 0.95 + 0.5)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price,coupon_code,status
O0,C1,{d0},P1,1,10.00,,paid
O1,C2,{d0},P1,1,10.00,,paid
O2,C3,{d0},P1,1,10.00,,paid
O3,C4,{d0},P1,1,10.00,,paid
O4,C5,{d0},P1,1,10.00,,paid
O5,C3,{d4},P1,1,40.00,NUR10,paid
"""


class Shop:
    def __init__(self, home: Home, engine: Engine, tmp_path: Path) -> None:
        self.home, self.engine = home, engine
        path = tmp_path / "orders.csv"
        path.write_text(
            ORDERS.format(d0=day(-30).isoformat(), d4=day(4).isoformat()), encoding="utf-8"
        )
        assert import_file(home, engine, "orders", path, clock=FixedClock(day(20))).rejected == 0
        self.events: list[dict[str, Any]] = []

    def contact(self, customer_id: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(contacts.c.id).where(contacts.c.customer_id == customer_id)
                ).scalar_one()
            )

    def scores(self, customer_id: str, source: str = "behaviour", style: str = "unknown") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                scores.insert().values(
                    contact_id=self.contact(customer_id),
                    as_of=day(0),
                    computed_at=day(0),
                    orders=1,
                    total_spent=10.0,
                    lifecycle="repeat",
                    threshold_days=60.0,
                    style=style,
                    style_confidence=0.25,
                    style_source=source,
                    details={"sessions": 3},
                    **FLAT,
                )
            )

    def message(self, customer_id: str, sent: datetime, variant: str) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(
                messages.insert().values(
                    message_key=f"k{customer_id}{sent.isoformat()}",
                    contact_id=self.contact(customer_id),
                    channel="email",
                    intent="winback_reminder",
                    style="unknown",
                    language="en",
                    variant=variant,
                    journey="win_back",
                    step="reminder",
                    status="sent",
                    due_at=sent,
                    created_at=sent,
                    sent_at=sent,
                    attempts=1,
                    priority=0,
                    payload={},
                )
            ).inserted_primary_key
        assert key is not None
        return int(key[0])

    def click(self, message_id: int, at: datetime, machine: bool = False) -> None:
        self.events.append(
            {
                "event_id": f"e{len(self.events)}",
                "message_id": str(message_id),
                "customer_id": None,
                "channel": "email",
                "type": "click",
                "occurred_at": at,
                "properties": json.dumps({"machine": machine}),
            }
        )

    def store(self) -> None:
        schema = pa.schema([f for f in MESSAGE_EVENTS.schema if f.name != "ingested_at"])
        table = pa.Table.from_pylist(self.events, schema=schema)
        append(self.home.settings.facts_path, MESSAGE_EVENTS, table, ingested_at=day(20))

    def latest(self, customer_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                select(scores).where(scores.c.contact_id == self.contact(customer_id))
            ).one()


@pytest.fixture
def shop(home: Home, engine: Engine, tmp_path: Path) -> Shop:
    s = Shop(home, engine, tmp_path)
    for customer in ("C1", "C2", "C3", "C4"):
        s.scores(customer)
    s.scores("C5", source="survey", style="examiner")
    # C1 clicks the promoter variant twice (and a link scanner clicks a third: not counted)
    s.click(s.message("C1", day(1), "promoter"), day(1.1))
    s.click(s.message("C1", day(5), "promoter"), day(5.2))
    s.click(s.message("C1", day(6), "examiner"), day(6.0), machine=True)
    # C2 ignores a go-getter message, and gets a neutral one (which teaches nothing)
    s.message("C2", day(1), "go_getter")
    s.message("C2", day(2), "neutral")
    # C3 redeems the code of a nurturer message without clicking it: an attributed order
    with engine.begin() as conn:
        conn.execute(
            offers.insert().values(
                code="NUR10",
                contact_id=s.contact("C3"),
                intent="winback",
                level=1,
                kind="percent",
                value=10,
                currency="EUR",
                issued_at=day(1),
                expires_at=day(30),
                message_id=s.message("C3", day(1), "nurturer"),
                status="issued",
            )
        )
    # C5 answered the style survey: clicking another style's variant changes nothing
    s.click(s.message("C5", day(1), "promoter"), day(1.5))
    s.store()
    return s


def test_answers_and_silence_update_the_styles_by_hand(
    home: Home, engine: Engine, shop: Shop
) -> None:
    summary = learn_from_responses(home.settings, engine, None, day(10))
    assert summary.messages == 6 and summary.responses == 4  # the neutral one is no test
    assert summary.updated == 3 and summary.explicit_kept == 1
    c1 = shop.latest("C1")
    assert c1.p_promoter == pytest.approx(C1_PROMOTER) and C1_PROMOTER > TWO_ANSWERS
    # the machine click on the examiner variant counts as silence
    examiner = (0.25 * 0.9 / 0.95) / (0.25 * 4 + 0.25 * 0.9 / 0.95 + 0.5)
    assert c1.p_examiner == pytest.approx(examiner)
    assert c1.style == "promoter" and c1.style_source == "responses"
    assert c1.style_confidence == pytest.approx(c1.p_promoter)
    assert c1.details["behaviour_probs"] == [0.25] * 4 and c1.details["sessions"] == 3
    c2 = shop.latest("C2")
    assert c2.p_go_getter == pytest.approx(SILENCE) and c2.p_go_getter < 0.25
    assert c2.style == "unknown"
    assert c2.p_promoter == pytest.approx((1 - SILENCE) / 3)
    c3 = shop.latest("C3")  # one answer, from flat: odds 2/3, below the threshold
    assert c3.p_nurturer == pytest.approx(0.4) and c3.style == "unknown"
    c5 = shop.latest("C5")
    assert (c5.style, c5.style_source, c5.p_promoter) == ("examiner", "survey", 0.25)


def test_learning_again_over_the_same_window_changes_nothing(
    home: Home, engine: Engine, shop: Shop
) -> None:
    learn_from_responses(home.settings, engine, day(0), day(10))
    first = {c: shop.latest(c)._mapping["p_promoter"] for c in ("C1", "C2", "C3")}
    again = learn_from_responses(home.settings, engine, day(0), day(10))
    assert again.updated == 3 and again.changed == 0
    assert {c: shop.latest(c).p_promoter for c in first} == pytest.approx(first)


def test_a_window_sees_only_its_messages_and_a_later_one_adds_to_it(
    home: Home, engine: Engine, shop: Shop
) -> None:
    learn_from_responses(home.settings, engine, None, day(3))  # C1's first click only
    c1 = shop.latest("C1")
    assert c1.p_promoter == pytest.approx(0.4) and c1.style == "unknown"
    learn_from_responses(home.settings, engine, day(3), day(10))
    assert shop.latest("C1").p_promoter == pytest.approx(C1_PROMOTER)


def test_the_command_prints_the_summary(cli: CliRunner, env: dict[str, str], shop: Shop) -> None:
    result = cli.invoke(app, ["styles", "learn", "--until", day(10).isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["updated"] == 3 and found["explicit_kept"] == 1
    text = cli.invoke(app, ["styles", "learn", "--until", day(10).isoformat()])
    assert text.exit_code == 0 and "styles updated" in text.output
