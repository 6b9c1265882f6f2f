"""The shop's order webhooks, through the web app, on both backends: Shopify's order webhooks
(HMAC as Shopify documents it) and the generic signed webhook. They feed the CSV import path:
same rows as Shopify's export, same dedup, an update that changes the status changes what
reengage believes, and bad lines are reported while the good ones are kept."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette

from reengage.analytics.features import orders_as_of
from reengage.channels.webhook import signature_header
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.facts import reader
from reengage.ingest.importer import import_file
from reengage.state.contacts import current_consent
from reengage.state.schema import contacts, identities, imports
from reengage.web import shop_hooks
from reengage.web.app import WebContext

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SHOPIFY_SECRET = "shpss_0123456789abcdef0123456789abcdef"
HOOK_SECRET = "whsec-orders-0123456789"
SHOPIFY_PATH = "/hooks/shopify/orders"
ORDERS_PATH = "/hooks/orders"
LATER = datetime(2027, 1, 1, tzinfo=UTC)

# Modelled on the order in Shopify's Admin REST API reference (the webhooks' payload), cut to
# the fields that matter here plus a few that do not.
ORDER: dict[str, Any] = {
    "id": 450789469,
    "admin_graphql_api_id": "gid://shopify/Order/450789469",
    "app_id": None,
    "browser_ip": "0.0.0.0",
    "buyer_accepts_marketing": False,
    "cancel_reason": None,
    "cancelled_at": None,
    "cart_token": "68778783ad298f1c80c3bafcddeea02f",
    "checkout_id": 901414060,
    "closed_at": None,
    "confirmed": True,
    "contact_email": "bob.norman@mail.example.com",
    "created_at": "2026-10-05T13:05:02-04:00",
    "currency": "EUR",
    "current_total_price": "389.10",
    "customer_locale": "en",
    "discount_codes": [{"code": "TENOFF", "amount": "10.00", "type": "fixed_amount"}],
    "email": "bob.norman@mail.example.com",
    "financial_status": "paid",
    "fulfillment_status": None,
    "landing_site": "http://www.example.com?source=abc",
    "name": "#1001",
    "number": 1,
    "order_number": 1001,
    "presentment_currency": "EUR",
    "processed_at": "2026-10-05T13:05:02-04:00",
    "source_name": "web",
    "subtotal_price": "388.00",
    "tags": "",
    "test": False,
    "total_discounts": "10.00",
    "total_line_items_price": "398.00",
    "total_price": "388.00",
    "total_tax": "0.00",
    "updated_at": "2026-10-05T13:05:02-04:00",
    "customer": {
        "id": 207119551,
        "email": "bob.norman@mail.example.com",
        "created_at": "2026-09-30T10:00:00-04:00",
        "first_name": "Bob",
        "last_name": "Norman",
        "state": "enabled",
        "verified_email": True,
        "currency": "EUR",
        "email_marketing_consent": {
            "state": "subscribed",
            "opt_in_level": "confirmed_opt_in",
            "consent_updated_at": "2026-09-30T10:00:00-04:00",
        },
    },
    "line_items": [
        {
            "id": 466157049,
            "admin_graphql_api_id": "gid://shopify/LineItem/466157049",
            "fulfillable_quantity": 1,
            "fulfillment_status": None,
            "gift_card": False,
            "grams": 200,
            "name": "IPod Nano - 8gb - green",
            "price": "199.00",
            "product_exists": True,
            "product_id": 632910392,
            "properties": [{"name": "Custom Engraving Front", "value": "Happy Birthday"}],
            "quantity": 1,
            "requires_shipping": True,
            "sku": "IPOD2008GREEN",
            "taxable": True,
            "title": "IPod Nano - 8gb",
            "total_discount": "0.00",
            "variant_id": 39072856,
            "variant_title": "green",
            "vendor": None,
            "discount_allocations": [{"amount": "5.00", "discount_application_index": 0}],
        },
        {
            "id": 518995019,
            "admin_graphql_api_id": "gid://shopify/LineItem/518995019",
            "fulfillable_quantity": 1,
            "gift_card": False,
            "grams": 200,
            "name": "IPod Nano - 8gb - red",
            "price": "199.00",
            "product_exists": True,
            "product_id": 632910392,
            "quantity": 1,
            "sku": "",
            "taxable": True,
            "title": "IPod Nano - 8gb",
            "total_discount": "0.00",
            "variant_id": 49148385,
            "variant_title": "red",
            "vendor": None,
            "discount_allocations": [{"amount": "5.00", "discount_application_index": 0}],
        },
    ],
}

# The same order as Shopify's admin exports it (Orders → Export), columns in its order.
EXPORT = """\
Name,Email,Financial Status,Paid at,Fulfillment Status,Accepts Marketing,Currency,Subtotal,\
Discount Code,Discount Amount,Created at,Lineitem quantity,Lineitem name,Lineitem price,\
Lineitem sku,Lineitem discount,Cancelled at,Vendor,Id
#1001,bob.norman@mail.example.com,paid,2026-10-05 13:05:03 -0400,,yes,EUR,388.00,TENOFF,\
10.00,2026-10-05 13:05:02 -0400,1,IPod Nano - 8gb - green,199.00,IPOD2008GREEN,5.00,,,450789469
#1001,,,,,,,,,,,1,IPod Nano - 8gb - red,199.00,,5.00,,,
"""


def shopify_hmac(body: bytes, secret: str = SHOPIFY_SECRET) -> str:
    """As Shopify documents it: base64 of the HMAC-SHA256 of the raw body, keyed with the
    app's client secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Shop:
    home: Home
    settings: Settings
    engine: Engine
    clock: FixedClock
    client: TestClient

    def shopify(
        self,
        order: Any,
        *,
        topic: str = "orders/create",
        secret: str | None = SHOPIFY_SECRET,
        body: bytes | None = None,
    ) -> Any:
        """POST order as Shopify does; the clock moves on a second first, as time does."""
        self.clock.advance(timedelta(seconds=1))
        raw = body if body is not None else json.dumps(order).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": "shop.myshopify.com",
            "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "X-Shopify-API-Version": "2025-07",
        }
        if secret is not None:
            headers["X-Shopify-Hmac-Sha256"] = shopify_hmac(raw, secret)
        return self.client.post(SHOPIFY_PATH, content=raw, headers=headers)

    def generic(self, payload: Any, *, secret: str = HOOK_SECRET, age: int = 0) -> Any:
        self.clock.advance(timedelta(seconds=1))
        body = json.dumps(payload).encode()
        stamp = int(self.clock.now().timestamp()) - age
        return self.client.post(
            ORDERS_PATH,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Reengage-Signature": signature_header(secret, stamp, body),
            },
        )

    def lines(self) -> list[tuple[Any, ...]]:
        con = reader.connect(self.settings.facts_path)
        try:
            return con.sql(
                """SELECT order_id, product_id, quantity, unit_price, discount, coupon_code,
                          status, currency,
                          strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S')
                   FROM orders ORDER BY ingested_at, order_id, product_id"""
            ).fetchall()
        finally:
            con.close()

    def valid_orders(self) -> list[dict[str, Any]]:
        """What reengage believes: the orders that count, with their value and status."""
        con = reader.connect(self.settings.facts_path)
        try:
            orders = ibis.duckdb.from_connection(con).table("orders")
            got = orders_as_of(orders, LATER).order_by("order_id").to_pyarrow().to_pylist()
        finally:
            con.close()
        return [{k: r[k] for k in ("order_id", "value", "status", "lines")} for r in got]

    def history(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    imports.c.kind,
                    imports.c.format,
                    imports.c.file_name,
                    imports.c.read,
                    imports.c.imported,
                    imports.c.duplicates,
                    imports.c.rejected,
                    imports.c.rejects_file,
                ).order_by(imports.c.id)
            ).all()
        return [tuple(r) for r in rows]


def _shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock, **extra: str) -> Shop:
    settings = load_settings({**env, **extra})
    # the section on its own, as `create_app` mounts it: the other sections are not needed
    app = Starlette(routes=shop_hooks.routes())
    app.state.web = WebContext(settings, engine, clock)
    client = TestClient(app, follow_redirects=False)
    return Shop(home, settings, engine, clock, client)


@pytest.fixture
def shop(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Iterator[Shop]:
    found = _shop(
        home,
        engine,
        env,
        clock,
        REENGAGE_SHOPIFY_WEBHOOK_SECRET=SHOPIFY_SECRET,
        REENGAGE_WEBHOOK_SECRET=HOOK_SECRET,
    )
    yield found
    found.client.close()


def order(**changes: Any) -> dict[str, Any]:
    found = copy.deepcopy(ORDER)
    found.update(changes)
    return found


# ---- Shopify ---------------------------------------------------------------------------


def test_shopify_order_becomes_the_rows_of_the_export(shop: Shop) -> None:
    got = shop.shopify(order())
    assert got.status_code == 200, got.text
    assert got.json() == {"imported": 2, "duplicates": 0, "rejected": []}
    assert got.headers["cache-control"] == "no-store"
    assert shop.lines() == [
        ("#1001", "IPOD2008GREEN", 1, 199.0, 5.0, "TENOFF", "paid", "EUR", "2026-10-05 17:05:02"),
        (
            "#1001",
            "shopify:ipod-nano-8gb-red",
            1,
            199.0,
            5.0,
            "TENOFF",
            "paid",
            "EUR",
            "2026-10-05 17:05:02",
        ),
    ]
    assert shop.valid_orders() == [
        {"order_id": "#1001", "value": 388.0, "status": "paid", "lines": 2}
    ]
    with shop.engine.connect() as conn:
        bob = conn.execute(
            select(identities.c.contact_id).where(
                identities.c.kind == "email", identities.c.value == "bob.norman@mail.example.com"
            )
        ).scalar_one()
        assert current_consent(conn, bob, "email", "marketing") is True
        customer = conn.execute(select(contacts.c.customer_id).where(contacts.c.id == bob))
        assert customer.scalar_one().startswith("email-")  # as the export's import names him
    assert shop.history() == [
        ("orders", "shopify", "webhook:shopify", 2, 2, 0, 0, None),
    ]


def test_the_export_of_the_same_order_adds_nothing(shop: Shop, tmp_path: Path) -> None:
    """Same line ids whichever way the order came: a webhook, then the export, or the other
    way round, store the order once."""
    path = tmp_path / "orders_export.csv"
    path.write_text(EXPORT)
    summary = import_file(
        shop.home, shop.engine, "orders", path, clock=shop.clock, format="shopify"
    )
    assert (summary.imported, summary.rejected) == (2, 0)
    got = shop.shopify(order())
    assert got.json() == {"imported": 0, "duplicates": 2, "rejected": []}
    assert len(shop.lines()) == 2


def test_an_update_that_cancels_changes_what_reengage_believes(shop: Shop) -> None:
    assert shop.shopify(order()).json()["imported"] == 2
    assert shop.shopify(order(), topic="orders/paid").json() == {
        "imported": 0,
        "duplicates": 2,
        "rejected": [],
    }
    fulfilled = order(fulfillment_status="fulfilled", updated_at="2026-10-06T09:00:00-04:00")
    assert shop.shopify(fulfilled, topic="orders/fulfilled").json()["imported"] == 0
    assert shop.valid_orders()[0]["status"] == "paid"

    refunded = order(financial_status="refunded", updated_at="2026-10-08T09:00:00-04:00")
    got = shop.shopify(refunded, topic="orders/updated")
    assert got.json() == {"imported": 2, "duplicates": 0, "rejected": []}
    assert [line[6] for line in shop.lines()] == ["paid", "paid", "refunded", "refunded"]
    assert shop.valid_orders() == []  # a refunded order no longer counts as revenue

    # the same update sent again, or the create delivered late again, stores nothing
    assert shop.shopify(refunded, topic="orders/updated").json()["imported"] == 0
    assert shop.shopify(order()).json()["imported"] == 0
    assert len(shop.lines()) == 4
    assert shop.valid_orders() == []

    cancelled = order(cancelled_at="2026-10-09T10:00:00-04:00", financial_status="voided")
    assert shop.shopify(cancelled, topic="orders/cancelled").json()["imported"] == 2
    assert [line[6] for line in shop.lines()][-2:] == ["cancelled", "cancelled"]
    assert shop.valid_orders() == []


def test_a_pending_order_that_is_paid_later(shop: Shop) -> None:
    assert shop.shopify(order(financial_status="pending")).json()["imported"] == 2
    assert shop.valid_orders()[0]["status"] == "pending"
    assert shop.shopify(order(), topic="orders/paid").json()["imported"] == 2
    assert shop.valid_orders() == [
        {"order_id": "#1001", "value": 388.0, "status": "paid", "lines": 2}
    ]


def test_bad_lines_are_reported_and_good_lines_kept(shop: Shop) -> None:
    bad = order()
    bad["line_items"] += [
        dict(bad["line_items"][0], id=1, sku="CASE-1", name="Case", quantity=0),
        dict(bad["line_items"][0], id=2, sku="CASE-2", name="Case", price="12,5"),
        "not a line item",
        dict(bad["line_items"][0], id=3, sku={"code": "X"}),
    ]
    got = shop.shopify(bad)
    assert got.status_code == 200  # Shopify retries anything else: the order is acknowledged
    answer = got.json()
    assert (answer["imported"], answer["duplicates"]) == (2, 0)
    assert answer["rejected"] == [
        {"line": 3, "reason": "lineitem quantity: must be at least 1"},
        {
            "line": 4,
            "reason": "lineitem price: not a number (like 12.50; for 12,50 use --decimal-comma)",
        },
        {"line": 5, "reason": "not a JSON object"},
        {"line": 6, "reason": "lineitem sku: not a single value"},
    ]
    assert "bob" not in got.text  # no address in the answer
    assert len(shop.lines()) == 2
    [(_, _, name, read, imported, _, rejected, rejects_file)] = shop.history()
    assert (name, read, imported, rejected) == ("webhook:shopify", 6, 2, 4)
    rejects = Path(rejects_file).read_text().splitlines()
    assert Path(rejects_file).name.endswith("-webhook-shopify.csv")
    assert rejects[0].startswith("line,reason,name,email,")
    assert rejects[1].startswith("3,lineitem quantity: must be at least 1,#1001,")


def test_an_order_without_an_email_rejects_every_line(shop: Shop) -> None:
    """A point-of-sale sale: as in the export, no email is no customer."""
    anonymous = order(email=None, contact_email=None, customer=None)
    got = shop.shopify(anonymous)
    assert got.status_code == 200
    assert got.json()["rejected"] == [
        {"line": 1, "reason": "email: missing"},
        {"line": 2, "reason": "email: missing"},
    ]
    assert shop.lines() == []


def test_two_rejecting_deliveries_in_one_second_keep_both_rejects_files(shop: Shop) -> None:
    anonymous = order(email=None, contact_email=None, customer=None)
    shop.shopify(anonymous)
    shop.clock.advance(timedelta(seconds=-1))  # the same second again
    shop.shopify(anonymous, topic="orders/updated")
    files = [row[-1] for row in shop.history()]
    assert len(set(files)) == 2 and all(Path(f).is_file() for f in files)


@pytest.mark.parametrize("case", ["missing", "other secret", "edited body", "not base64"])
def test_a_bad_signature_is_refused_and_writes_nothing(shop: Shop, case: str) -> None:
    body = json.dumps(order()).encode()
    if case == "missing":
        got = shop.shopify(None, body=body, secret=None)
    elif case == "other secret":
        got = shop.shopify(None, body=body, secret="shpss_someone_else")
    elif case == "edited body":
        headers = {
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": shopify_hmac(body),
        }
        edited = body.replace(b'"199.00"', b'"1.00"')
        got = shop.client.post(SHOPIFY_PATH, content=edited, headers=headers)
    else:
        headers = {
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": "é".encode("latin-1") + b"x" * 43,  # type: ignore[dict-item]
        }
        got = shop.client.post(SHOPIFY_PATH, content=body, headers=headers)
    assert got.status_code == 401
    assert got.json() == {"error": "X-Shopify-Hmac-Sha256 does not match"}
    assert shop.lines() == [] and shop.history() == []


def test_a_signed_body_that_is_not_an_order_is_a_400(shop: Shop) -> None:
    got = shop.shopify(None, body=b"<order/>")
    assert (got.status_code, got.json()) == (400, {"error": "shopify: the body is not JSON"})
    got = shop.shopify(order(line_items={"id": 1}))
    assert got.status_code == 400
    assert got.json() == {"error": "shopify: 'line_items' must be a list"}
    got = shop.shopify(order(), topic="products/create")
    assert got.status_code == 400
    assert got.json()["error"].startswith("X-Shopify-Topic: not an order topic")
    assert shop.lines() == [] and shop.history() == []


def test_shopify_test_notifications_are_not_imported(shop: Shop) -> None:
    got = shop.shopify(order(test=True, name="#9999", email="jon@doe.ca"))
    assert got.status_code == 200
    assert got.json() == {"imported": 0, "duplicates": 0, "rejected": [], "test": True}
    assert shop.lines() == []


def test_without_secrets_the_routes_do_not_exist(
    home: Home, engine: Engine, env: dict[str, str], clock: FixedClock
) -> None:
    bare = _shop(home, engine, env, clock)
    try:
        assert bare.shopify(order()).status_code == 404
        assert bare.generic({"orders": []}).status_code == 404
        assert bare.lines() == []
    finally:
        bare.client.close()


# ---- the generic signed webhook --------------------------------------------------------


def generic_line(**changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "order_id": "A-100",
        "customer_id": "C1",
        "ordered_at": "2026-10-20T10:00:00Z",
        "product_id": "SHOE-42",
        "quantity": 2,
        "unit_price": 39.9,
        "discount": "8.98",
        "coupon_code": "SPRING10",
    }
    return line | changes


def test_generic_orders_import_and_update(shop: Shop) -> None:
    lines = [
        generic_line(),
        generic_line(product_id="SOCK-1", quantity=1, unit_price="10.00", discount=0),
    ]
    got = shop.generic({"orders": lines})
    assert got.status_code == 200, got.text
    assert got.json() == {"imported": 2, "duplicates": 0, "rejected": []}
    assert shop.valid_orders() == [
        {"order_id": "A-100", "value": pytest.approx(80.82), "status": "paid", "lines": 2}
    ]
    assert shop.generic({"orders": lines}).json() == {
        "imported": 0,
        "duplicates": 2,
        "rejected": [],
    }
    refunded = [dict(line, status="refunded") for line in lines]
    assert shop.generic({"orders": refunded}).json()["imported"] == 2
    assert shop.valid_orders() == []
    assert [row[2] for row in shop.history()] == ["webhook:generic"] * 3


def test_generic_bad_orders_are_reported_by_position(shop: Shop) -> None:
    lines = [
        generic_line(),
        generic_line(product_id=None),
        generic_line(quantity="two"),
        generic_line(status="lost"),
        ["not", "an", "object"],
        generic_line(product_id="CAP", unit_price=12),
    ]
    got = shop.generic({"orders": lines})
    assert got.status_code == 200
    assert got.json() == {
        "imported": 2,
        "duplicates": 0,
        "rejected": [
            {"line": 2, "reason": "product_id: missing"},
            {"line": 3, "reason": "quantity: not a whole number"},
            {
                "line": 4,
                "reason": "status: unknown value (known: paid, pending, fulfilled, cancelled, "
                "refunded)",
            },
            {"line": 5, "reason": "not a JSON object"},
        ],
    }
    [row] = shop.history()
    assert row[:7] == ("orders", "generic", "webhook:generic", 6, 2, 0, 4)
    assert Path(row[7]).name.endswith("-webhook-generic.csv")


def test_generic_customers_with_consent(shop: Shop) -> None:
    got = shop.generic(
        {
            "customers": [
                {"customer_id": "C9", "email": "Eva@Example.org", "email_marketing": True},
                {"customer_id": "C10", "email": "not an address"},
            ]
        }
    )
    assert got.status_code == 200
    assert got.json() == {
        "imported": 1,
        "duplicates": 0,
        "rejected": [{"line": 2, "reason": "email: not an email address"}],
    }
    with shop.engine.connect() as conn:
        eva = conn.execute(select(contacts.c.id).where(contacts.c.customer_id == "C9"))
        assert current_consent(conn, eva.scalar_one(), "email", "marketing") is True


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"orders": {"order_id": "A"}}, "webhook: 'orders' must be a list of objects"),
        ({"events": []}, "webhook: the body needs exactly one of 'orders', 'customers'"),
        ({"orders": [], "customers": []}, "webhook: the body needs exactly one of"),
        ([generic_line()], "webhook: the body must be a JSON object"),
    ],
)
def test_generic_malformed_bodies_are_a_400(shop: Shop, payload: Any, error: str) -> None:
    got = shop.generic(payload)
    assert got.status_code == 400
    assert got.json()["error"].startswith(error)
    assert shop.history() == []


@pytest.mark.parametrize("case", ["other secret", "stale", "missing"])
def test_generic_bad_signature_is_refused(shop: Shop, case: str) -> None:
    if case == "missing":
        got = shop.client.post(ORDERS_PATH, content=json.dumps({"orders": [generic_line()]}))
    elif case == "stale":
        got = shop.generic({"orders": [generic_line()]}, age=3600)
    else:
        got = shop.generic({"orders": [generic_line()]}, secret="whsec-someone-else")
    assert got.status_code == 401
    assert got.json() == {"error": "Reengage-Signature does not match"}
    assert shop.lines() == [] and shop.history() == []
