"""Erasure removes one person from state, facts, rejects files and audiences, leaves
everyone else as they were, and logs counts only; export finds the same places."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.facts import reader
from reengage.facts.kinds import EVENTS, MESSAGE_EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.privacy import erase_person, export_person
from reengage.state.schema import (
    audience_members,
    consents,
    contacts,
    enrollment_steps,
    enrollments,
    erasures,
    identities,
    messages,
    segment_members,
    suppressions,
)


def _person(conn: Any, n: int, now: Any) -> int:
    key = conn.execute(
        contacts.insert().values(
            customer_id=f"C{n}",
            email=f"p{n}@example.com",
            phone=f"+3933300000{n}",
            first_name=f"Name{n}",
            created_at=now,
            updated_at=now,
            origin="customers",
            attributes={},
        )
    ).inserted_primary_key
    contact_id = int(key[0])
    conn.execute(
        identities.insert(),
        [
            {"contact_id": contact_id, "kind": k, "value": v, "first_seen": now}
            for k, v in (
                ("customer_id", f"C{n}"),
                ("email", f"p{n}@example.com"),
                ("anonymous_id", f"anon{n}"),
            )
        ],
    )
    conn.execute(
        consents.insert().values(
            contact_id=contact_id,
            channel="email",
            purpose="marketing",
            granted=True,
            source="import",
            recorded_at=now,
        )
    )
    message = conn.execute(
        messages.insert().values(
            message_key=f"m{n}",
            contact_id=contact_id,
            channel="email",
            intent="newsletter",
            style="neutral",
            language="en",
            status="sent",
            priority=0,
            due_at=now,
            created_at=now,
            attempts=1,
            payload={},
        )
    ).inserted_primary_key[0]
    enrollment = conn.execute(
        enrollments.insert().values(
            journey="win_back",
            contact_id=contact_id,
            trigger_key="t",
            entered_at=now,
            status="active",
            digest="d",
            variants="",
            steps_run=1,
            payload={},
        )
    ).inserted_primary_key[0]
    conn.execute(
        enrollment_steps.insert().values(
            enrollment_id=enrollment,
            journey="win_back",
            step="s",
            kind="send",
            at=now,
            outcome="queued",
            message_id=message,
        )
    )
    conn.execute(
        audience_members.insert().values(audience="lapsed", contact_id=contact_id, joined_at=now)
    )
    conn.execute(
        segment_members.insert().values(segment="vip", contact_id=contact_id, entered_at=now)
    )
    return contact_id


def _facts(root: Path, now: Any) -> None:
    day = now - timedelta(days=3)
    events = [
        {
            "event_id": f"e{n}{k}",
            "customer_id": c,
            "anonymous_id": a,
            "type": "page_view",
            "occurred_at": day,
            "product_id": None,
            "session_id": None,
            "source": None,
            "device": None,
            "duration_s": None,
            "properties": None,
        }
        for n in (1, 2)
        for k, (c, a) in enumerate(((f"C{n}", None), (None, f"anon{n}")))
    ]
    append(root, EVENTS, pa.Table.from_pylist(events), ingested_at=now)
    orders = [
        {
            "line_id": f"l{n}",
            "order_id": f"o{n}",
            "customer_id": f"C{n}",
            "ordered_at": day,
            "product_id": "P",
            "quantity": 1,
            "unit_price": 5.0,
            "currency": "EUR",
            "discount": 0.0,
            "coupon_code": None,
            "status": "paid",
        }
        for n in (1, 2)
    ]
    append(root, ORDERS, pa.Table.from_pylist(orders), ingested_at=now)
    message_events = [
        {
            "event_id": f"me{n}",
            "message_id": str(n),
            "customer_id": f"C{n}",
            "channel": "email",
            "type": "sent",
            "occurred_at": day,
            "properties": "{}",
        }
        for n in (1, 2)
    ]
    append(root, MESSAGE_EVENTS, pa.Table.from_pylist(message_events), ingested_at=now)


def _rejects(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customers-20261101T000000-file.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "reason", "customer_id", "email", "phone"])
        writer.writerow([2, "birthday: not a date", "C1", "P1@example.com", ""])
        writer.writerow([3, "birthday: not a date", "X9", "", "+39 333 000 001"])
        writer.writerow([4, "birthday: not a date", "C2", "p2@example.com", ""])
    return path


def _count(engine: Engine, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _facts_of(root: Path) -> dict[str, set[str]]:
    con = reader.connect(root)
    try:
        return {
            "events": {r[0] for r in con.sql("SELECT event_id FROM events").fetchall()},
            "orders": {r[0] for r in con.sql("SELECT line_id FROM orders").fetchall()},
            "message_events": {
                r[0] for r in con.sql("SELECT event_id FROM message_events").fetchall()
            },
        }
    finally:
        con.close()


def test_erase_removes_one_person_everywhere(home: Home, engine: Engine, clock: FixedClock) -> None:
    settings, now = home.settings, clock.now()
    with engine.begin() as conn:
        first, second = _person(conn, 1, now), _person(conn, 2, now)
    _facts(settings.facts_path, now)
    rejects = _rejects(settings.rejects_path)

    exported = export_person(settings, engine, first)
    assert exported is not None
    assert {e["event_id"] for e in exported["facts"]["events"]} == {"e10", "e11"}
    assert len(exported["rejects"]) == 2 and len(exported["enrollment_steps"]) == 1

    removed = erase_person(settings, engine, clock, first, requested_by="cli")
    assert removed is not None
    assert removed["contacts"] == 1 and removed["facts.events"] == 2
    assert removed["facts.orders"] == 1 and removed["facts.message_events"] == 1
    assert removed["rejects_rows"] == 2 and removed["audience_members"] == 1
    assert removed["enrollment_steps"] == 1 and removed["segment_members"] == 1

    for table in (contacts, identities, consents, messages, enrollments, audience_members):
        key = "id" if table is contacts else "contact_id"
        assert _count(engine, table, **{key: first}) == 0
        assert _count(engine, table, **{key: second}) >= 1
    assert _facts_of(settings.facts_path) == {
        "events": {"e20", "e21"},
        "orders": {"l2"},
        "message_events": {"me2"},
    }
    text = rejects.read_text(encoding="utf-8")
    assert "C1" not in text and "000 001" not in text and "p2@example.com" in text
    # the address stays unreachable, attached to nobody
    with engine.connect() as conn:
        kept = conn.execute(select(suppressions)).all()
        [logged] = conn.execute(select(erasures)).all()
    assert {(s.address, s.reason, s.contact_id) for s in kept} >= {
        ("p1@example.com", "erased", None)
    }
    assert logged.contact_id == first and logged.requested_by == "cli"
    log_text = json.dumps(logged.removed)
    assert "p1@example.com" not in log_text and "Name1" not in log_text and "C1" not in log_text
    # again: nothing to do
    assert erase_person(settings, engine, clock, first, requested_by="cli") is None
    assert _count(engine, erasures) == 1


def test_erase_without_suppression(home: Home, engine: Engine, clock: FixedClock) -> None:
    with engine.begin() as conn:
        first = _person(conn, 1, clock.now())
    removed = erase_person(
        home.settings, engine, clock, first, requested_by="cli", suppress_addresses=False
    )
    assert removed is not None and removed["suppressions_kept"] == 0
    assert _count(engine, suppressions) == 0


def test_the_cli_exports_and_erases(
    cli: CliRunner, home: Home, engine: Engine, clock: FixedClock
) -> None:
    with engine.begin() as conn:
        first = _person(conn, 1, clock.now())
    exported = cli.invoke(app, ["privacy", "export", str(first), "--json"])
    assert exported.exit_code == 0 and json.loads(exported.stdout)["contact"]["customer_id"] == "C1"
    refused = cli.invoke(app, ["privacy", "erase", str(first)], input="n\n")
    assert refused.exit_code == 1 and _count(engine, contacts) == 1
    erased = cli.invoke(app, ["privacy", "erase", str(first), "--yes", "--json"])
    assert erased.exit_code == 0 and json.loads(erased.stdout)["removed"]["contacts"] == 1
    again = cli.invoke(app, ["privacy", "erase", str(first), "--yes"])
    assert again.exit_code == 2
