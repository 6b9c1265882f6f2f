"""Offers on both backends: unique codes, a ladder climbed one rung at a time, redemptions
matched from the imported orders."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock, as_utc
from reengage.config import Home
from reengage.facts.kinds import ORDERS
from reengage.facts.writer import append
from reengage.messages import offers as offers_module
from reengage.messages.offers import (
    ALPHABET,
    DEFAULT_LADDER,
    Ladder,
    OfferPolicy,
    highest_level,
    issue_offer,
    list_offers,
    match_redemptions,
    new_code,
    normalise_code,
    shop_prefix,
)
from reengage.state.schema import contacts, messages, offers

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
POLICY = OfferPolicy(prefix="SHOP")
CODE = re.compile(rf"^SHOP-[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")


def add_contact(conn: Connection, customer_id: str) -> int:
    key = conn.execute(
        contacts.insert().values(
            customer_id=customer_id,
            email=f"{customer_id.lower()}@example.com",
            created_at=T0 - timedelta(days=400),
            updated_at=T0 - timedelta(days=400),
            origin="customers",
            attributes={},
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


_keys = iter(range(10**9))


def add_message(
    conn: Connection, contact_id: int, intent: str, sent_at: datetime, status: str = "sent"
) -> int:
    key = conn.execute(
        messages.insert().values(
            message_key=f"test-{next(_keys)}",
            contact_id=contact_id,
            channel="email",
            intent=intent,
            style="neutral",
            language="en",
            status=status,
            priority=0,
            due_at=sent_at,
            created_at=sent_at,
            sent_at=sent_at if status == "sent" else None,
            attempts=1,
            payload={},
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def test_codes_are_readable_prefixed_and_random() -> None:
    codes = {new_code("SHOP") for _ in range(2000)}
    assert len(codes) == 2000
    assert all(CODE.match(c) for c in codes)
    assert not set("".join(c[5:] for c in codes)) & set("0O1I")
    assert shop_prefix("Bottega Rossi") == "BOTTEGA"
    assert shop_prefix("Il Négozio") == "ILNEGOZI"
    assert shop_prefix("!!!") == "RE"
    assert normalise_code(" shop-abcde-fghjk ") == "SHOPABCDEFGHJK"


def test_the_ladder_is_data_and_is_checked() -> None:
    ladder = Ladder.from_rows(
        [{"level": 0}, {"level": 1, "kind": "amount", "value": "5.50", "valid_days": 3}],
        window_days=10,
        families={"a": "fam", "b": "fam"},
    )
    assert ladder.top == 1 and ladder.rung(1).value == Decimal("5.50")
    assert ladder.intents_of("a") == ["a", "b", "fam"]
    assert ladder.intents_of("zzz") == ["zzz"]
    for rows in (
        [{"level": 1, "kind": "percent", "value": 10}],  # no rung 0
        [{"level": 0}, {"level": 2, "kind": "percent", "value": 10}],  # a gap
        [{"level": 0, "kind": "percent", "value": 5}],  # rung 0 with an incentive
        [{"level": 0}, {"level": 1, "kind": "percent", "value": 120}],
        [{"level": 0}, {"level": 1, "kind": "gift", "value": 1}],
    ):
        with pytest.raises(ValueError):
            Ladder.from_rows(rows)
    with pytest.raises(ValueError):
        DEFAULT_LADDER.rung(9)


def test_a_contact_climbs_one_rung_at_a_time(engine: Engine) -> None:
    clock = FixedClock(T0)
    with engine.begin() as conn:
        anna = add_contact(conn, "C1")
        # nothing sent in the family yet: no incentive at all
        assert issue_offer(conn, anna, "cart_incentive", 1, clock, policy=POLICY) is None
        assert issue_offer(conn, anna, "cart_incentive", 0, clock, policy=POLICY) is None
        add_message(conn, anna, "cart_reminder", T0 - timedelta(hours=2))  # rung 0
        assert highest_level(conn, anna, "cart_incentive", clock, policy=POLICY) == 1
        # no skipping to rung 2
        assert issue_offer(conn, anna, "cart_incentive", 2, clock, policy=POLICY) is None
        message = add_message(conn, anna, "cart_incentive", T0, status="queued")
        first = issue_offer(conn, anna, "cart_incentive", 1, clock, message, policy=POLICY)
        assert first is not None and CODE.match(first.code)
        assert (first.kind, first.value, first.max_discount) == (
            "percent",
            Decimal(10),
            Decimal(15),
        )
        assert (first.currency, first.status, first.level) == ("EUR", "issued", 1)
        assert first.expires_at == T0 + timedelta(days=7)
        stored_code = conn.execute(select(messages.c.offer_code).where(messages.c.id == message))
        assert stored_code.scalar_one() == first.code
        # one live offer per contact and family
        assert issue_offer(conn, anna, "cart_incentive", 1, clock, policy=POLICY) is None
        assert issue_offer(conn, anna, "cart_incentive", 2, clock, policy=POLICY) is None
        assert highest_level(conn, anna, "cart_incentive", clock, policy=POLICY) == 0
        # another family has its own ladder
        assert issue_offer(conn, anna, "winback_incentive", 1, clock, policy=POLICY) is None

    clock.advance(timedelta(days=8))  # the first offer has expired: the next rung is open
    with engine.begin() as conn:
        assert highest_level(conn, anna, "cart_incentive", clock, policy=POLICY) == 2
        second = issue_offer(conn, anna, "cart_incentive", 2, clock, policy=POLICY)
        assert second is not None and second.level == 2 and second.code != first.code
        assert (second.value, second.max_discount) == (Decimal(15), Decimal(25))

    clock.advance(timedelta(days=40))  # outside the window, the ladder starts again
    with engine.begin() as conn:
        assert issue_offer(conn, anna, "cart_incentive", 2, clock, policy=POLICY) is None
        assert issue_offer(conn, anna, "cart_incentive", 1, clock, policy=POLICY) is None
        assert highest_level(conn, anna, "cart_incentive", clock, policy=POLICY) == 0
    stored = list_offers(engine)
    assert [o.level for o in stored] == [2, 1]
    assert [o.id for o in list_offers(engine, status="issued", limit=1)] == [second.id]


def test_a_code_that_exists_is_drawn_again(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FixedClock(T0)
    with engine.begin() as conn:
        a, b = add_contact(conn, "C1"), add_contact(conn, "C2")
        for who in (a, b):
            add_message(conn, who, "winback_reminder", T0 - timedelta(days=1))
        first = issue_offer(conn, a, "winback_incentive", 1, clock, policy=POLICY)
        assert first is not None
        draws = iter([first.code, first.code, "SHOP-22222-33333"])
        monkeypatch.setattr(offers_module, "new_code", lambda prefix: next(draws))
        second = issue_offer(conn, b, "winback_incentive", 1, clock, policy=POLICY)
        assert second is not None and second.code == "SHOP-22222-33333"


@hsettings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(min_value=10, max_value=50))
def test_codes_are_unique_across_many_issues(engine: Engine, count: int) -> None:
    clock = FixedClock(T0)
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            codes = []
            for i in range(count):
                who = add_contact(conn, f"U{i}")
                add_message(conn, who, "vip_thanks", T0 - timedelta(days=1))
                offer = issue_offer(conn, who, "vip_thanks", 1, clock, policy=POLICY)
                assert offer is not None
                codes.append(offer.code)
            assert len(set(codes)) == count
            assert len({normalise_code(c) for c in codes}) == count
        finally:
            trans.rollback()


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["cart_reminder", "cart_help", "browse"])),
        st.tuples(st.just("ask"), st.integers(min_value=0, max_value=2)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=20)),
    ),
    max_size=30,
)


@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ACTIONS)
def test_the_ladder_never_skips_a_rung(engine: Engine, actions: list[tuple[str, Any]]) -> None:
    clock = FixedClock(T0)
    window = timedelta(days=DEFAULT_LADDER.window_days)
    family = DEFAULT_LADDER.intents_of("cart_incentive")
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            who = add_contact(conn, "P1")
            sends: list[datetime] = []
            for action, arg in actions:
                if action == "send":
                    add_message(conn, who, arg, clock.now())
                    if arg in family:
                        sends.append(clock.now())
                elif action == "ask":
                    issue_offer(conn, who, "cart_incentive", arg, clock, policy=POLICY)
                else:
                    clock.advance(timedelta(days=arg))
            issued = [
                (r.level, as_utc(r.issued_at), as_utc(r.expires_at))
                for r in conn.execute(select(offers).where(offers.c.contact_id == who))
            ]
        finally:
            trans.rollback()
    for level, at, _ in issued:
        if level == 1:
            assert any(at - window <= s <= at for s in sends) or any(
                at - window <= a < at for _, a, _ in issued
            )
        else:
            assert any(lv == level - 1 and at - window <= a < at for lv, a, _ in issued)
    # never two live offers at once
    spans = sorted((a, e) for _, a, e in issued)
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans))


def order_lines(rows: list[dict[str, Any]]) -> pa.Table:
    full = [
        {
            "line_id": f"{r['order_id']}-{i}",
            "customer_id": r["customer_id"],
            "order_id": r["order_id"],
            "ordered_at": r["ordered_at"],
            "product_id": "P1",
            "quantity": 1,
            "unit_price": 50.0,
            "currency": "EUR",
            "discount": 5.0,
            "coupon_code": r.get("coupon_code"),
            "status": r.get("status", "paid"),
        }
        for i, r in enumerate(rows)
    ]
    return pa.Table.from_pylist(full, schema=pa.schema(list(ORDERS.schema)[:-1]))


def test_redemptions_are_matched_from_the_orders(home: Home, engine: Engine) -> None:
    clock = FixedClock(T0)
    with engine.begin() as conn:
        ids = {c: add_contact(conn, c) for c in ("C1", "C2", "C3", "C4", "C5", "C6")}
        for who in ids.values():
            add_message(conn, who, "winback_reminder", T0 - timedelta(days=1))
        got = {
            c: issue_offer(conn, ids[c], "winback_incentive", 1, clock, policy=POLICY)
            for c in ("C1", "C2", "C4", "C5", "C6")
        }
    offer = {c: o for c, o in got.items() if o is not None}
    assert len(offer) == 5
    day = timedelta(days=1)
    facts = home.settings.facts_path
    lines = order_lines(
        [
            # C1 uses their code, typed their own way, and once more later (single use)
            {
                "order_id": "O1",
                "customer_id": "C1",
                "ordered_at": T0 + 2 * day,
                "coupon_code": offer["C1"].code.lower().replace("-", ""),
            },
            {
                "order_id": "O1b",
                "customer_id": "C1",
                "ordered_at": T0 + 3 * day,
                "coupon_code": offer["C1"].code,
            },
            # C2's code used by C3: reported, never redeemed
            {
                "order_id": "O2",
                "customer_id": "C3",
                "ordered_at": T0 + 2 * day,
                "coupon_code": offer["C2"].code,
            },
            # C5 used it after expiry; C6's order was cancelled; C4 never used theirs
            {
                "order_id": "O5",
                "customer_id": "C5",
                "ordered_at": T0 + 9 * day,
                "coupon_code": offer["C5"].code,
            },
            {
                "order_id": "O6",
                "customer_id": "C6",
                "ordered_at": T0 + 2 * day,
                "coupon_code": f"OTHER, {offer['C6'].code}",
                "status": "cancelled",
            },
            {"order_id": "O7", "customer_id": "C4", "ordered_at": T0 + day},
        ]
    )
    append(facts, ORDERS, lines, ingested_at=T0 + 10 * day)
    clock.advance(10 * day)
    result = match_redemptions(home, engine, clock)
    assert (result.checked, result.redeemed, result.expired, result.late) == (5, 1, 4, 1)
    assert [(f.code, f.order_id) for f in result.foreign] == [(offer["C2"].code, "O2")]
    status = {o.code: o for o in list_offers(engine)}
    c1 = status[offer["C1"].code]
    assert (c1.status, c1.order_id, c1.redeemed_at) == ("redeemed", "O1", T0 + 2 * day)
    assert status[offer["C2"].code].status == "expired"
    assert status[offer["C4"].code].status == "expired"

    # an order imported late shows C4 used the code in time: expired becomes redeemed
    late_import = order_lines(
        [
            {
                "order_id": "O8",
                "customer_id": "C4",
                "ordered_at": T0 + 3 * day,
                "coupon_code": offer["C4"].code,
            }
        ]
    )
    append(facts, ORDERS, late_import, ingested_at=T0 + 11 * day)
    again = match_redemptions(home, engine, clock)
    assert (again.redeemed, again.expired, len(again.foreign)) == (1, 0, 1)
    assert {o.code: o.status for o in list_offers(engine)}[offer["C4"].code] == "redeemed"
    third = match_redemptions(home, engine, clock)
    assert (third.redeemed, third.expired) == (0, 0)


def test_match_with_nothing_issued(home: Home, engine: Engine) -> None:
    result = match_redemptions(home, engine, FixedClock(T0))
    assert result.as_dict() == {"checked": 0, "redeemed": 0, "expired": 0, "late": 0, "foreign": []}


def test_offers_commands(cli: CliRunner, home: Home, engine: Engine) -> None:
    clock = FixedClock(T0)
    with engine.begin() as conn:
        who = add_contact(conn, "C1")
        add_message(conn, who, "cart_reminder", T0 - timedelta(days=1))
        offer = issue_offer(conn, who, "cart_incentive", 1, clock, policy=POLICY)
    assert offer is not None
    listed = cli.invoke(app, ["offers", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["code"], row["value"], row["status"]) == (offer.code, "10.00", "issued")
    table = cli.invoke(app, ["offers", "list", "--status", "issued"])
    assert table.exit_code == 0 and offer.code in table.stdout
    assert cli.invoke(app, ["offers", "list", "--status", "gone"]).exit_code == 2
    matched = cli.invoke(app, ["--now", "2026-12-01T00:00:00Z", "offers", "match", "--json"])
    assert matched.exit_code == 0, matched.output
    assert json.loads(matched.stdout)["expired"] == 1
    plain = cli.invoke(app, ["offers", "match"])
    assert plain.exit_code == 0 and "0 redeemed" in plain.stdout
    expired = cli.invoke(app, ["offers", "list", "--status", "expired", "--json"])
    assert [r["code"] for r in json.loads(expired.stdout)] == [offer.code]
