"""Referral codes, share links and the orders they bring; and the `reengage referrals` and
`reengage feeds export` commands."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.cli import app, state
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.errors import ConfigError, InputError
from reengage.facts.kinds import ORDERS
from reengage.facts.writer import append
from reengage.retarget.referrals import (
    all_referrals,
    code_for,
    contact_block,
    referrals_of,
    share_link,
)
from reengage.state.schema import contacts, referral_codes


def _contact(engine: Engine, now: Any, customer: str, first: str | None) -> int:
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id=customer,
                first_name=first,
                created_at=now,
                updated_at=now,
                origin="test",
            )
        ).inserted_primary_key
    assert key is not None
    return int(key[0])


def _line(
    n: int,
    order: str,
    customer: str | None,
    code: str | None,
    status: str,
    at: Any,
    price: float = 20.0,
) -> dict[str, Any]:
    return {
        "line_id": f"l{n}",
        "order_id": order,
        "customer_id": customer,
        "ordered_at": at,
        "product_id": "P1",
        "quantity": 2,
        "unit_price": price,
        "currency": "EUR",
        "discount": 5.0,
        "coupon_code": code,
        "status": status,
    }


def test_codes_are_readable_idempotent_and_unique(
    home: Home, engine: Engine, clock: FixedClock
) -> None:
    now = clock.now()
    anna = _contact(engine, now, "C1", "Ánna-Marie")
    nameless = _contact(engine, now, "C2", None)
    code = code_for(engine, anna, clock)
    assert code.startswith("ANNAMA") and code[6:].isdigit() and len(code) == 10
    assert code_for(engine, anna, clock) == code
    assert code_for(engine, nameless, clock).startswith("FRIEND")
    many = {code_for(engine, _contact(engine, now, f"X{i}", "Bo"), clock) for i in range(40)}
    assert len(many) == 40 and all(c.startswith("BO") for c in many)
    with engine.connect() as conn:
        assert len(conn.execute(select(referral_codes)).all()) == 42
    with pytest.raises(InputError):
        code_for(engine, 999_999, clock)


def test_share_link(settings: Settings, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        share_link(settings, "ANNA1234")
    shop = load_settings({**env, "REENGAGE_SHOP_URL": "https://shop.example.com"})
    link = share_link(shop, "ANNA1234")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "shop.example.com", "/")
    query = parse_qs(parts.query)
    assert query["ref"] == ["ANNA1234"]
    assert query["utm_medium"] == ["referral"] and query["utm_campaign"] == ["advocacy"]


def test_referred_orders_are_counted(home: Home, engine: Engine, clock: FixedClock) -> None:
    settings = home.settings
    now = clock.now()
    anna = _contact(engine, now, "C1", "Anna")
    bob = _contact(engine, now, "C2", "Bob")
    code = code_for(engine, anna, clock)
    assert referrals_of(settings, engine, bob) is None  # no code yet
    day = timedelta(days=1)
    lines = [
        _line(1, "O1", "F1", code.lower(), "paid", now - 3 * day),  # a friend: counts
        _line(2, "O1", "F1", code.lower(), "paid", now - 3 * day, 10.0),
        _line(3, "O2", "C1", code, "paid", now - 2 * day),  # Anna's own: no
        _line(4, "O3", "F2", code, "paid", now - 2 * day),  # cancelled later: no
        _line(5, "O3", "F2", None, "cancelled", now - 2 * day),
        _line(6, "O4", None, code, "paid", now - day),  # a guest: counts
        _line(7, "O5", "F3", "OTHER1", "paid", now - day),  # another code: no
    ]
    append(settings.facts_path, ORDERS, pa.Table.from_pylist(lines[:4]), ingested_at=now - day)
    append(settings.facts_path, ORDERS, pa.Table.from_pylist(lines[4:]), ingested_at=now)
    found = referrals_of(settings, engine, anna)
    assert found is not None and found.code == code
    assert [(o.order_id, o.customer_id, o.value) for o in found.orders] == [
        ("O1", "F1", 50.0),
        ("O4", None, 35.0),
    ]
    assert found.revenue == 85.0
    everyone = {r.contact_id: r for r in all_referrals(settings, engine)}
    assert set(everyone) == {anna}
    assert len(everyone[anna].orders) == 2
    block = contact_block(settings, engine, anna)
    assert block is not None and block["code"] == code and block["share_link"] is None
    assert block["revenue"] == 85.0
    assert contact_block(settings, engine, bob) is None


@pytest.fixture
def fixed(clock: FixedClock) -> Any:
    before = state.clock
    state.clock = clock
    yield clock
    state.clock = before


def test_the_commands(
    home: Home, engine: Engine, fixed: FixedClock, cli: CliRunner, tmp_path: Path
) -> None:
    anna = _contact(engine, fixed.now(), "C1", "Anna")
    result = cli.invoke(app, ["referrals", "code", str(anna), "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["code"].startswith("ANNA") and made["share_link"] is None
    again = cli.invoke(app, ["referrals", "code", str(anna)])
    assert again.exit_code == 0 and made["code"] in again.stdout
    listed = cli.invoke(app, ["referrals", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [
        {
            "code": made["code"],
            "contact_id": anna,
            "customer_id": "C1",
            "orders": 0,
            "revenue": 0,
        }
    ]
    out = tmp_path / "feed.xml"
    command = ["feeds", "export", "--format", "google", "--out", str(out), "--json"]
    exported = cli.invoke(app, command)
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout) == {"written": 0, "skipped": []}
    assert out.read_text().startswith("<?xml")
    bad = cli.invoke(app, ["feeds", "export", "--format", "tiktok"])
    assert bad.exit_code == 2
    assert cli.invoke(app, ["feeds", "export", "--format", "meta", "--json"]).exit_code == 2
    plain = cli.invoke(app, ["feeds", "export", "--format", "meta"])
    assert plain.exit_code == 0 and plain.stdout.startswith("id,title,description")
