"""The live product feeds: content types, the skipped count, and the API key a segment's
product set needs."""

from __future__ import annotations

import base64
import csv
import io
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from xml.etree import ElementTree as ET

import pyarrow as pa
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, load_settings
from reengage.facts.kinds import ORDERS
from reengage.facts.writer import append
from reengage.keys import create_key, revoke_key
from reengage.retarget.referrals import code_for
from reengage.state.schema import contacts, products, segments
from reengage.web.app import create_app

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def client(
    home: Home, engine: Engine, env: dict[str, str], clock: FixedClock
) -> Iterator[TestClient]:
    now = clock.now()
    common = {"category": "Mugs", "currency": "EUR", "created_at": now, "updated_at": now}
    with engine.begin() as conn:
        conn.execute(
            products.insert(),
            [
                {
                    "product_id": "P1",
                    "title": "Mug",
                    "price": Decimal("8"),
                    "url": "https://shop.example.com/p/P1",
                    "image_url": "https://shop.example.com/P1.jpg",
                    "in_stock": True,
                    "origin": "test",
                    **common,
                },
                {
                    "product_id": "P2",
                    "title": "Cup",
                    "price": Decimal("5"),
                    "url": "https://shop.example.com/p/P2",
                    "image_url": None,
                    "in_stock": True,
                    "origin": "test",
                    **common,
                },
            ],
        )
        conn.execute(
            segments.insert().values(
                name="vip", rule="true", refreshed_at=now, size=0, entered=0, exited=0
            )
        )
    settings = load_settings({**env, "REENGAGE_SHOP_URL": "https://shop.example.com"})
    yield TestClient(create_app(settings, engine, clock), follow_redirects=False)


def test_meta_csv(client: TestClient) -> None:
    answer = client.get("/feeds/meta.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["x-reengage-skipped"] == "1"
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["id"] for r in rows] == ["P1"]
    assert rows[0]["price"] == "8.00 EUR" and "utm_medium=ads" in rows[0]["link"]


def test_google_xml(client: TestClient) -> None:
    answer = client.get("/feeds/google.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/xml; charset=utf-8"
    assert answer.headers["x-reengage-skipped"] == "1"
    root = ET.fromstring(answer.content)
    ids = [e.text for e in root.iter("{http://base.google.com/ns/1.0}id")]
    assert ids == ["P1"]


def test_skipped_json(client: TestClient) -> None:
    answer = client.get("/feeds/skipped.json?format=google")
    assert answer.status_code == 200
    assert answer.json() == {"written": 1, "skipped": [{"product_id": "P2", "reason": "no image"}]}
    assert client.get("/feeds/skipped.json?format=x").status_code == 400


def test_a_segments_set_needs_a_read_key(
    client: TestClient, engine: Engine, clock: FixedClock
) -> None:
    assert client.get("/feeds/meta.csv?segment=vip").status_code == 401
    key = create_key(engine, clock, "read").key
    bearer = {"Authorization": f"Bearer {key}"}
    answer = client.get("/feeds/meta.csv?segment=vip", headers=bearer)
    assert answer.status_code == 200 and answer.text.strip() == (
        "id,title,description,availability,condition,price,link,image_link,brand,product_type"
    )
    basic = base64.b64encode(f"meta:{key}".encode()).decode()
    answer = client.get(
        "/feeds/google.xml?segment=vip", headers={"Authorization": f"Basic {basic}"}
    )
    assert answer.status_code == 200
    assert client.get("/feeds/meta.csv?segment=nope", headers=bearer).status_code == 404
    revoke_key(engine, clock, key)
    assert client.get("/feeds/meta.csv?segment=vip", headers=bearer).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/feeds/meta.csv?segment=vip", headers=wrong).status_code == 401


def test_the_contact_page_shows_the_referrals(
    client: TestClient, engine: Engine, env: dict[str, str], clock: FixedClock, cli: CliRunner
) -> None:
    email, password = "owner@example.com", "a long enough passphrase 42"
    made = cli.invoke(app, ["users", "create", email], input=password + "\n")
    assert made.exit_code == 0, made.output
    now = clock.now()
    with engine.begin() as conn:
        key = conn.execute(
            contacts.insert().values(
                customer_id="C1", first_name="Ada", created_at=now, updated_at=now, origin="t"
            )
        ).inserted_primary_key
    assert key is not None
    ada = int(key[0])
    code = code_for(engine, ada, clock)
    line = {
        "line_id": "l1",
        "order_id": "O-FRIEND",
        "customer_id": "F1",
        "ordered_at": now - timedelta(days=1),
        "product_id": "P1",
        "quantity": 1,
        "unit_price": 42.0,
        "currency": "EUR",
        "discount": 0.0,
        "coupon_code": code,
        "status": "paid",
    }
    facts = load_settings(env).facts_path
    append(facts, ORDERS, pa.Table.from_pylist([line]), ingested_at=now)
    login = client.get("/dashboard/login")
    found = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert found
    data = {"csrf": found.group(1), "email": email, "password": password, "next": "/dashboard/"}
    assert client.post("/dashboard/login", data=data).status_code == 303
    page = client.get(f"/dashboard/contacts/{ada}")
    assert page.status_code == 200
    assert "Referrals" in page.text and code in page.text
    assert f"https://shop.example.com/?ref={code}" in page.text
    assert "O-FRIEND" in page.text and "42.00" in page.text
