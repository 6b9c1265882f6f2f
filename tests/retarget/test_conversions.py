"""Server-side conversion events: queued once per platform from the facts, only for people
who allow ads, sent to a local HTTP server playing Meta's Conversions API and Google Ads'
uploadClickConversions, which checks each request as the platforms document it.

Expected hashes are literal SHA-256 hex digests of the values normalised as
docs/audiences.md documents (the same helpers as the ad audiences)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from channels.local_peer import Reply, Request, local_peer
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, Settings
from reengage.ingest.importer import import_file
from reengage.retarget.conversion_platforms import send_conversions
from reengage.retarget.conversions import google_datetime, purchase_event_id, queue_conversions
from reengage.state.contacts import ConsentChange, record_consents
from reengage.state.schema import contacts, conversion_sends

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
ORDERED = datetime(2026, 10, 30, 10, 0, tzinfo=UTC)

EMAIL = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"  # dana@example.com
META_PHONE = "0efc79e9473975b30516d1873027513a35fb5ed450f0e6c13e368c4e38eceeeb"  # 393331234567
GOOGLE_PHONE = "78f00e1ca317fb2af02c89b17b8b07382ff70336aba0997ad1f3ef3645b4e682"  # +39333...
FN = "2c9e0a2585dc7406589a3724f0027811506e0f133726303a15d6779d532a2573"  # dana
LN = "30cc6dd8ef8458e679e13ae3bf3f634cace9810e2eea03bb6487904595f41056"  # rossi
CT = "813d2fbb481e0a17bc053fcd720c5cca09c30c89fbdde699b73fc0a57737092e"  # milano
COUNTRY = "2ad8a7049d7c5511ac254f5f51fe70a046ebd884729056f0fe57f5160d467153"  # it
EXTERNAL = "ab861dc170dc2e43224e45278d3d31a675b9ebc34c9b0f48c066ca1eeaed8ee6"  # C1

CUSTOMERS = """customer_id,email,phone,first_name,last_name,country,city
C1, Dana@Example.COM ,+39 333 123 4567,Dana,Rossi,IT,Milano
C2,noconsent@example.com,,Noel,Neri,IT,Roma
"""
ORDERS = """order_id,customer_id,ordered_at,product_id,quantity,unit_price,status
1001,C1,2026-10-30T10:00:00Z,P1,2,10.00,paid
1001,C1,2026-10-30T10:00:00Z,P2,1,5.50,paid
1002,C2,2026-10-30T11:00:00Z,P1,1,10.00,paid
1003,C1,2026-10-30T12:00:00Z,P1,1,10.00,cancelled
1004,C1,2026-10-30T13:00:00Z,P1,1,10.00,pending
"""
EVENTS = """event_id,customer_id,type,occurred_at,product_id
ev-cart,C1,add_to_cart,2026-10-30T09:50:00Z,P1
ev-lead,C1,newsletter_signup,2026-10-30T09:40:00Z,
ev-view,C1,product_view,2026-10-30T09:45:00Z,P1
ev-nocon,C2,add_to_cart,2026-10-30T10:50:00Z,P1
"""


def _import(home: Home, engine: Engine, tmp_path: Path, kind: str, text: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text(text, encoding="utf-8")
    summary = import_file(home, engine, kind, path, clock=FixedClock(NOW))
    assert summary.rejected == 0


def _configured(settings: Settings, meta: str, google: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "meta_pixel_id": "1234567890",
        "meta_access_token": "meta-token",
        "meta_graph_url": meta,
        "meta_api_version": "v25.0",
        "google_ads_url": google,
        "google_ads_api_version": "v26",
        "google_ads_customer_id": "123-456-7890",
        "google_ads_login_customer_id": "999-888-7777",
        "google_ads_developer_token": "dev-token",
        "google_ads_access_token": "google-token",
        "google_ads_conversion_action_id": "555",
        "currency": "EUR",
    }
    values.update(extra)
    return settings.model_copy(update=values)


@pytest.fixture
def shop(home: Home, engine: Engine, tmp_path: Path) -> Home:
    _import(home, engine, tmp_path, "customers", CUSTOMERS)
    _import(home, engine, tmp_path, "orders", ORDERS)
    _import(home, engine, tmp_path, "events", EVENTS)
    with engine.begin() as conn:
        ids = dict(conn.execute(select(contacts.c.customer_id, contacts.c.id)).all())
        record_consents(
            conn,
            [
                ConsentChange(ids["C1"], "ads", "marketing", True, "checkout", NOW),
                ConsentChange(ids["C2"], "ads", "marketing", False, "checkout", NOW),
            ],
        )
    return home


def _sends(engine: Engine) -> dict[tuple[str, str], Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(conversion_sends)).all()
    return {(r.platform, r.event_id): r for r in rows}


def _ok(request: Request) -> Reply:
    if request.path.endswith(":uploadClickConversions"):
        return Reply(200, {"results": [{}]})
    return Reply(200, {"events_received": 1, "messages": [], "fbtrace_id": "x"})


META_PURCHASE = {
    "event_name": "Purchase",
    "event_time": int(ORDERED.timestamp()),
    "event_id": "order-1001",
    "action_source": "website",
    "user_data": {
        "em": [EMAIL],
        "ph": [META_PHONE],
        "fn": FN,
        "ln": LN,
        "ct": CT,
        "country": COUNTRY,
        "external_id": [EXTERNAL],
    },
    "custom_data": {
        "currency": "EUR",
        "value": 25.5,
        "content_type": "product",
        "content_ids": ["P1", "P2"],
        "contents": [
            {"id": "P1", "quantity": 2, "item_price": 10.0},
            {"id": "P2", "quantity": 1, "item_price": 5.5},
        ],
        "num_items": 3,
        "order_id": "1001",
    },
}
GOOGLE_PURCHASE = {
    "conversionAction": "customers/1234567890/conversionActions/555",
    "conversionDateTime": "2026-10-30 10:00:00+00:00",
    "orderId": "1001",
    "userIdentifiers": [
        {"hashedEmail": EMAIL, "userIdentifierSource": "FIRST_PARTY"},
        {"hashedPhoneNumber": GOOGLE_PHONE, "userIdentifierSource": "FIRST_PARTY"},
    ],
    "consent": {"adUserData": "GRANTED"},
    "conversionValue": 25.5,
    "currencyCode": "EUR",
}


def test_event_id_and_google_time_format() -> None:
    assert purchase_event_id("1001") == "order-1001"
    assert google_datetime(datetime(2026, 10, 30, 10, 0, 5, tzinfo=UTC)) == (
        "2026-10-30 10:00:05+00:00"
    )


def test_purchase_sent_once_per_platform_as_documented(
    shop: Home, engine: Engine, tmp_path: Path
) -> None:
    clock = FixedClock(NOW)
    with local_peer(_ok) as meta, local_peer(_ok) as google:
        settings = _configured(shop.settings, meta.url, google.url)
        summary = queue_conversions(settings, engine, None, None, clock)
        sends = _sends(engine)
        assert set(sends) == {
            ("meta", "order-1001"),
            ("meta", "order-1002"),
            ("meta", "ev-cart"),
            ("meta", "ev-lead"),
            ("meta", "ev-nocon"),
            ("google", "order-1001"),
            ("google", "order-1002"),
        }
        assert summary.queued == 4 and summary.skipped == 3
        for key in (("meta", "order-1002"), ("google", "order-1002"), ("meta", "ev-nocon")):
            assert sends[key].status == "skipped"
            assert "consent" in sends[key].reason
            assert sends[key].payload == {}

        # the same file imported again, and the queue run again: nothing more
        _import(shop, engine, tmp_path, "orders", ORDERS)
        again = queue_conversions(settings, engine, None, None, clock)
        assert again.queued == 0 and again.skipped == 0 and again.known == 7
        assert len(_sends(engine)) == 7

        done = send_conversions(settings, engine, clock, sleep=lambda _s: None)
        assert (done.sent, done.failed, done.retrying) == (4, 0, 0)

        # Meta: one request, the three events of C1, the documented form
        assert len(meta.requests) == 1
        request = meta.last
        assert request.method == "POST"
        assert request.path == "/v25.0/1234567890/events"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = request.form()
        assert form["access_token"] == ["meta-token"]
        assert "test_event_code" not in form
        data = json.loads(form["data"][0])
        by_id = {e["event_id"]: e for e in data}
        assert set(by_id) == {"order-1001", "ev-cart", "ev-lead"}
        assert by_id["order-1001"] == META_PURCHASE
        assert by_id["ev-cart"]["event_name"] == "AddToCart"
        assert by_id["ev-cart"]["custom_data"]["content_ids"] == ["P1"]
        assert by_id["ev-lead"]["event_name"] == "Lead"
        assert by_id["ev-lead"]["user_data"]["em"] == [EMAIL]
        assert "custom_data" not in by_id["ev-lead"]
        assert "noconsent" not in request.body.decode() and "dana@" not in request.body.decode()

        # Google: one request, the purchase only
        assert len(google.requests) == 1
        request = google.last
        assert request.method == "POST"
        assert request.path == "/v26/customers/1234567890:uploadClickConversions"
        assert request.headers["authorization"] == "Bearer google-token"
        assert request.headers["developer-token"] == "dev-token"
        assert request.headers["login-customer-id"] == "9998887777"
        assert request.json() == {"conversions": [GOOGLE_PURCHASE], "partialFailure": True}

        sends = _sends(engine)
        for key in (("meta", "order-1001"), ("google", "order-1001"), ("meta", "ev-cart")):
            assert sends[key].status == "sent"
            assert sends[key].attempts == 1
            assert sends[key].sent_at is not None

        # sending again sends nothing
        assert send_conversions(settings, engine, clock).sent == 0
        assert len(meta.requests) == 1 and len(google.requests) == 1


def test_retry_after_500_then_sent(shop: Home, engine: Engine) -> None:
    clock = FixedClock(NOW)
    answers = [Reply(500, {"error": {"message": "boom", "code": 2, "is_transient": True}})]
    slept: list[float] = []

    def flaky(request: Request) -> Reply:
        return answers.pop(0) if answers else _ok(request)

    with local_peer(flaky) as meta:
        settings = _configured(
            shop.settings, meta.url, "http://unused", google_ads_conversion_action_id=None
        )
        queue_conversions(settings, engine, None, None, clock)
        done = send_conversions(settings, engine, clock, sleep=slept.append)
    assert len(meta.requests) == 2
    assert meta.requests[0].body == meta.requests[1].body
    assert slept == [1.0]
    assert (done.sent, done.failed, done.requests) == (3, 0, 2)
    sends = _sends(engine)
    assert {k[0] for k in sends} == {"meta"}
    row = sends[("meta", "order-1001")]
    assert (row.status, row.attempts, row.reason) == ("sent", 2, None)


def test_temporary_failures_stay_queued(shop: Home, engine: Engine) -> None:
    clock = FixedClock(NOW)
    with local_peer(lambda _r: Reply(503, b"")) as meta:
        settings = _configured(
            shop.settings, meta.url, "http://unused", google_ads_conversion_action_id=None
        )
        queue_conversions(settings, engine, None, None, clock)
        done = send_conversions(settings, engine, clock, sleep=lambda _s: None, tries=3)
    assert len(meta.requests) == 3
    assert done.retrying == 3 and done.sent == 0
    row = _sends(engine)[("meta", "order-1001")]
    assert (row.status, row.attempts) == ("queued", 3)
    assert row.reason == "meta answered 503"


def test_400_is_recorded_failed_with_the_reason(shop: Home, engine: Engine) -> None:
    clock = FixedClock(NOW)
    refusal = {
        "error": {
            "message": "Invalid parameter",
            "type": "OAuthException",
            "code": 100,
            "error_subcode": 2804003,
            "fbtrace_id": "abc",
        }
    }
    with local_peer(lambda _r: Reply(400, refusal)) as meta:
        settings = _configured(
            shop.settings, meta.url, "http://unused", google_ads_conversion_action_id=None
        )
        queue_conversions(settings, engine, None, None, clock)
        done = send_conversions(settings, engine, clock, sleep=lambda _s: None)
    assert len(meta.requests) == 1
    assert done.failed == 3
    row = _sends(engine)[("meta", "order-1001")]
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.reason == "meta answered 400 (OAuthException 100): Invalid parameter"


def test_google_partial_failure_fails_only_that_conversion(
    shop: Home, engine: Engine, tmp_path: Path
) -> None:
    clock = FixedClock(NOW)
    _import(
        shop,
        engine,
        tmp_path,
        "orders",
        "order_id,customer_id,ordered_at,product_id,quantity,unit_price,status\n"
        "1005,C1,2026-10-31T10:00:00Z,P1,1,10.00,fulfilled\n",
    )
    answer = {
        "partialFailureError": {
            "code": 3,
            "message": "The conversion was already uploaded.",
            "details": [
                {
                    "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                    "errors": [
                        {
                            "errorCode": {
                                "conversionUploadError": "CLICK_CONVERSION_ALREADY_EXISTS"
                            },
                            "message": "The conversion was already uploaded.",
                            "location": {
                                "fieldPathElements": [{"fieldName": "conversions", "index": 1}]
                            },
                        }
                    ],
                }
            ],
        },
        "results": [{"orderId": "1001"}, {}],
    }
    with local_peer(lambda _r: Reply(200, answer)) as google:
        settings = _configured(shop.settings, "http://unused", google.url, meta_pixel_id=None)
        queue_conversions(settings, engine, None, None, clock)
        done = send_conversions(settings, engine, clock)
    body = google.last.json()
    assert [c["orderId"] for c in body["conversions"]] == ["1001", "1005"]
    assert (done.sent, done.failed) == (1, 1)
    sends = _sends(engine)
    assert sends[("google", "order-1001")].status == "sent"
    failed = sends[("google", "order-1005")]
    assert failed.status == "failed"
    assert failed.reason == (
        "google refused (conversionUploadError=CLICK_CONVERSION_ALREADY_EXISTS): "
        "The conversion was already uploaded."
    )


def test_consent_withdrawn_before_sending_is_skipped(shop: Home, engine: Engine) -> None:
    clock = FixedClock(NOW)
    with local_peer(_ok) as meta:
        settings = _configured(
            shop.settings, meta.url, "http://unused", google_ads_conversion_action_id=None
        )
        queue_conversions(settings, engine, None, None, clock)
        with engine.begin() as conn:
            c1 = conn.execute(
                select(contacts.c.id).where(contacts.c.customer_id == "C1")
            ).scalar_one()
            later = datetime(2026, 11, 1, 9, 40, tzinfo=UTC)
            record_consents(conn, [ConsentChange(c1, "ads", "marketing", False, "prefs", later)])
        done = send_conversions(settings, engine, clock)
    assert meta.requests == []
    assert done.skipped == 3
    row = _sends(engine)[("meta", "order-1001")]
    assert row.status == "skipped" and row.payload == {}


def test_nothing_configured_queues_nothing(shop: Home, engine: Engine) -> None:
    summary = queue_conversions(shop.settings, engine, None, None, FixedClock(NOW))
    assert summary.queued == 0 and _sends(engine) == {}


def test_network_error_is_temporary(shop: Home, engine: Engine) -> None:
    clock = FixedClock(NOW)
    settings = _configured(
        shop.settings, "http://127.0.0.1:9", "http://unused", google_ads_conversion_action_id=None
    )
    queue_conversions(settings, engine, None, None, clock)
    with httpx.Client(timeout=2.0) as client:
        done = send_conversions(settings, engine, clock, sleep=lambda _s: None, client=client)
    assert done.retrying == 3
    row = _sends(engine)[("meta", "ev-cart")]
    assert row.status == "queued" and row.reason == "meta unreachable (ConnectError)"


def test_cli_queue_send_list(
    shop: Home, engine: Engine, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_peer(_ok) as meta:
        monkeypatch.setenv("REENGAGE_META_PIXEL_ID", "1234567890")
        monkeypatch.setenv("REENGAGE_META_ACCESS_TOKEN", "meta-token")
        monkeypatch.setenv("REENGAGE_META_GRAPH_URL", meta.url)
        monkeypatch.setenv("REENGAGE_NOW", NOW.isoformat())
        result = cli.invoke(app, ["conversions", "queue", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["queued"] == 3
        result = cli.invoke(app, ["conversions", "send", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["sent"] == 3
        result = cli.invoke(app, ["conversions", "list", "--status", "skipped", "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert {r["event_id"] for r in rows} == {"order-1002", "ev-nocon"}
        assert all("payload" not in r for r in rows)


def test_order_received_through_the_webhook_path_is_queued_once(shop: Home, engine: Engine) -> None:
    # the webhooks import through `import_table`, as shop_hooks does
    from reengage.ingest.csvfile import RawTable, columns_table
    from reengage.ingest.importer import import_table

    header = ["order_id", "customer_id", "ordered_at", "product_id", "quantity", "unit_price"]
    rows = [["2001", "C1", "2026-10-31T08:00:00Z", "P1", "1", "12.00"]]
    clock = FixedClock(NOW)
    for _ in range(2):  # the same delivery twice
        raw = RawTable(header, columns_table(header, rows, [1]), [])
        import_table(shop, engine, "orders", raw, clock=clock, source_name="webhook")
        settings = _configured(shop.settings, "http://unused", "http://unused")
        queue_conversions(settings, engine, None, None, clock)
    sends = _sends(engine)
    assert sends[("meta", "order-2001")].status == "queued"
    assert sends[("google", "order-2001")].payload["orderId"] == "2001"
    assert sum(1 for p, e in sends if e == "order-2001") == 2


def test_the_worker_queues_and_sends_them_without_being_asked(shop: Home, engine: Engine) -> None:
    from dataclasses import replace

    from reengage.journeys.runner import work

    clock = FixedClock(NOW)
    with local_peer(_ok) as meta:
        settings = _configured(
            shop.settings, meta.url, "http://unused", google_ads_conversion_action_id=None
        )
        home = replace(shop, settings=settings)
        with own_signals():
            work(home, engine, clock, once=True)
            work(home, engine, clock, once=True)  # the second pass sends nothing twice
    sent = {k for k, r in _sends(engine).items() if r.status == "sent"}
    assert ("meta", "order-1001") in sent
    assert len(meta.requests) == 1


def test_a_platform_down_never_stops_the_worker(shop: Home, engine: Engine) -> None:
    from dataclasses import replace

    from reengage.journeys.runner import work

    settings = _configured(
        shop.settings,
        "http://127.0.0.1:9",  # nothing listens: every request fails to connect
        "http://unused",
        google_ads_conversion_action_id=None,
    )
    with own_signals():
        work(replace(shop, settings=settings), engine, FixedClock(NOW), once=True)
    assert {r.status for r in _sends(engine).values()} <= {"queued", "skipped"}


@contextmanager
def own_signals() -> Iterator[None]:
    """`work` installs SIGTERM and SIGINT handlers in the main thread: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
