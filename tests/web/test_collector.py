"""The event collector over HTTP, in process: good events kept and bad ones named by index,
the 400/413/429 answers, CORS, bots, the pixel that is always a GIF, and an event sent twice
stored once. Leaving the client's block stops the app, whose last flush stores the journal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from reengage.clock import Clock, FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.home import init_home
from reengage.state.db import engine_for
from reengage.state.schema import contacts
from reengage.web import collector
from reengage.web.app import WebContext
from reengage.web.links import PIXEL

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
SHOP = "https://shop.example"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def collector_app(settings: Settings, engine: Engine, clock: Clock) -> Starlette:
    """The collector's section alone, mounted as create_app mounts it."""
    context = WebContext(settings, engine, clock)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> Any:
        async with collector.running(context):
            yield

    app = Starlette(routes=collector.routes(), lifespan=lifespan)
    app.state.web = context
    return app


@contextmanager
def serving(settings: Settings, engine: Engine, clock: Clock | None = None) -> Iterator[TestClient]:
    app = collector_app(settings, engine, clock or FixedClock(NOW))
    with TestClient(app, headers={"user-agent": BROWSER}) as client:
        yield client


def stored_events(settings: Settings) -> list[dict[str, Any]]:
    files = list((settings.facts_path / "events").glob("day=*/part-*.parquet"))
    if not files:
        return []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        table = con.sql(
            "SELECT * FROM read_parquet($files) ORDER BY occurred_at, event_id",
            params={"files": [str(f) for f in files]},
        ).to_arrow_table()
    finally:
        con.close()
    return table.to_pylist()


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    """A home on SQLite, for the tests that are about HTTP rather than the state."""
    settings = load_settings(
        {
            "REENGAGE_HOME": str(tmp_path / "lone"),
            "REENGAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'lone.db'}",
        }
    )
    init_home(settings)
    settings = settings.model_copy(update={"allowed_origins": [SHOP]})
    engine = engine_for(settings.state_url)
    try:
        yield settings, engine
    finally:
        engine.dispose()


def test_good_events_are_kept_and_bad_ones_named_by_index(home: Home, engine: Engine) -> None:
    settings = home.settings
    events: list[Any] = [
        {"type": "page_view", "anonymous_id": "v1", "occurred_at": "2026-11-01T08:00:00Z"},
        {"type": "teleport", "anonymous_id": "v1"},
        {"type": "product_view", "customer_id": "C1", "product_id": "P1", "duration_s": 12},
        {"type": "page_view", "anonymous_id": "v1", "occurred_at": "yesterday"},
        {"type": "page_view"},
        "page_view",
        {"type": "page_view", "anonymous_id": "v1", "url": "/"},
        {"type": "identify", "anonymous_id": "v1", "properties": {"email": "not-an-address"}},
        {"type": "search", "anonymous_id": "v1", "occurred_at": 1793524800000},
        {"type": "page_view", "anonymous_id": "v1", "occurred_at": "2026-11-03T10:00:00Z"},
        {"type": "page_view", "anonymous_id": "v1", "duration_s": -1},
        {"type": "ADD_TO_CART", "customer_id": 42, "source": "Email", "properties": {"q": 1}},
    ]
    with serving(settings, engine) as client:
        answer = client.post("/t/events", json={"events": events})
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 4
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [1, 3, 4, 5, 6, 7, 9, 10]
    assert reasons[1].startswith("type: unknown event type")
    assert reasons[3].startswith("occurred_at: not a date")
    assert reasons[4] == "customer_id or anonymous_id: one of them is required"
    assert reasons[5] == "not an event object"
    assert reasons[6].startswith("url: unknown field")
    assert reasons[7] == "properties.email: not an email address"
    assert reasons[9] == "occurred_at: more than a day in the future"
    assert reasons[10].startswith("duration_s:")

    rows = {r["type"]: r for r in stored_events(settings)}
    assert sorted(rows) == ["add_to_cart", "page_view", "product_view", "search"]
    assert rows["page_view"]["occurred_at"] == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert rows["product_view"]["occurred_at"] == NOW  # no time given: when it arrived
    assert rows["product_view"]["duration_s"] == 12.0
    assert rows["search"]["occurred_at"] == datetime(2026, 11, 1, 9, 20, tzinfo=UTC)
    assert rows["add_to_cart"]["customer_id"] == "42"
    assert rows["add_to_cart"]["source"] == "email"
    assert rows["add_to_cart"]["properties"] == '{"q": 1}'
    assert all(r["event_id"].startswith("w-") for r in rows.values())
    with engine.connect() as conn:
        known = set(conn.execute(select(contacts.c.customer_id)).scalars())
    assert known == {"C1", "42"}


def test_an_event_sent_again_with_its_id_is_stored_once(home: Home, engine: Engine) -> None:
    settings = home.settings
    event = {"event_id": "e-1", "type": "page_view", "anonymous_id": "v1"}
    event["occurred_at"] = "2026-11-01T09:00:00Z"
    with serving(settings, engine) as client:
        for _ in range(2):
            answer = client.post("/t/events", json={"events": [event, event]})
            assert answer.json() == {"accepted": 2, "rejected": []}
    with serving(settings, engine) as client:  # a later run, after the first was stored
        client.post("/t/events", json={"events": [event]})
        client.get("/t/p.gif", params={"e": "page_view", "aid": "v1", "eid": "e-1"})
    assert [r["event_id"] for r in stored_events(settings)] == ["e-1"]


def test_the_pixel_records_one_event_and_is_always_a_gif(home: Home, engine: Engine) -> None:
    settings = home.settings
    with serving(settings, engine) as client:
        queries = [
            {"e": "email_open", "cid": "C9", "p.campaign": "spring", "_": "123"},
            {"e": "teleport", "aid": "v1"},  # unknown type
            {"aid": "v1"},  # no type
            {"e": "page_view", "d": "many", "aid": "v1"},
            {},
        ]
        for query in queries:
            answer = client.get("/t/p.gif", params=query)
            assert answer.status_code == 200
            assert answer.content == PIXEL
            assert answer.headers["content-type"] == "image/gif"
            assert "no-store" in answer.headers["cache-control"]
    [row] = stored_events(settings)
    assert (row["type"], row["customer_id"], row["occurred_at"]) == ("email_open", "C9", NOW)
    assert row["properties"] == '{"campaign": "spring"}'


def test_a_body_that_is_not_json_is_a_400(lone: tuple[Settings, Engine]) -> None:
    with serving(*lone) as client:
        for body in (b"{not json", b"\xff\xfe", b"[]", b'{"events": {}}', b'{"evts": []}'):
            answer = client.post("/t/events", content=body)
            assert answer.status_code == 400, body
            assert "error" in answer.json()
        # sendBeacon's text/plain is JSON all the same
        beacon = client.post(
            "/t/events",
            content=b'{"events": [{"type": "page_view", "anonymous_id": "v"}]}',
            headers={"content-type": "text/plain;charset=UTF-8"},
        )
        assert beacon.status_code == 202 and beacon.json()["accepted"] == 1


def test_a_body_over_the_limit_is_a_413(lone: tuple[Settings, Engine]) -> None:
    settings, engine = lone
    settings = settings.model_copy(update={"collector_max_bytes": 1000})
    event = {"type": "page_view", "anonymous_id": "v", "properties": {"pad": "x" * 2000}}
    with serving(settings, engine) as client:
        declared = client.post("/t/events", json={"events": [event]})
        assert declared.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
            yield b'{"events": ['
            for _ in range(50):
                yield b'{"type": "page_view", "anonymous_id": "v"},'
            yield b"{}]}"

        streamed = client.post("/t/events", content=chunks())
        assert streamed.status_code == 413
        small = client.post(
            "/t/events", json={"events": [{"type": "page_view", "anonymous_id": "v"}]}
        )
        assert small.status_code == 202
    assert len(stored_events(settings)) == 1


def test_a_client_over_its_rate_gets_429(lone: tuple[Settings, Engine]) -> None:
    settings, engine = lone
    settings = settings.model_copy(update={"collector_rate_per_minute": 3})
    clock = FixedClock(NOW)
    body = {"events": [{"type": "page_view", "anonymous_id": "v"}]}
    with serving(settings, engine, clock) as client:
        codes = [client.post("/t/events", json=body).status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        limited = client.post("/t/events", json=body)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert client.get("/t/p.gif", params={"e": "page_view", "aid": "v"}).content == PIXEL
        clock.advance(timedelta(seconds=20))  # a token back every 20 s
        assert client.post("/t/events", json=body).status_code == 202
    assert len(stored_events(settings)) == 4


def test_cors_answers_only_the_shops_origins(lone: tuple[Settings, Engine]) -> None:
    body = {"events": [{"type": "page_view", "anonymous_id": "v"}]}
    with serving(*lone) as client:
        ours = client.post("/t/events", json=body, headers={"origin": SHOP})
        assert ours.headers["access-control-allow-origin"] == SHOP
        assert "Origin" in ours.headers["vary"]
        other = client.post("/t/events", json=body, headers={"origin": "https://evil.example"})
        assert other.status_code == 202
        assert "access-control-allow-origin" not in other.headers
        assert "Origin" in other.headers["vary"]

        ask = {"access-control-request-method": "POST"}
        ask["access-control-request-headers"] = "content-type"
        allowed = client.options("/t/events", headers={"origin": SHOP, **ask})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == SHOP
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options("/t/events", headers={"origin": "https://evil.example", **ask})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        # errors are readable by the shop's page too
        bad = client.post("/t/events", content=b"nope", headers={"origin": SHOP})
        assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == SHOP


def test_bots_are_answered_but_nothing_is_stored(lone: tuple[Settings, Engine]) -> None:
    settings, engine = lone
    body = {"events": [{"type": "page_view", "anonymous_id": "v"}]}
    agents = [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    ]
    with serving(settings, engine) as client:
        for agent in agents:
            answer = client.post("/t/events", json=body, headers={"user-agent": agent})
            assert answer.status_code == 202
            assert answer.json() == {"accepted": 0, "rejected": [], "ignored": "bot"}
            pixel = client.get("/t/p.gif?e=page_view&aid=v", headers={"user-agent": agent})
            assert pixel.content == PIXEL
    assert stored_events(settings) == []


def test_the_snippet_and_the_hello_baseline(
    lone: tuple[Settings, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(*lone) as client:
        monkeypatch.setattr(collector, "TRACKER", tmp_path / "absent.js")
        assert client.get("/t/tracker.js").status_code == 404
        snippet = tmp_path / "tracker.js"
        snippet.write_text("console.log('hi');\n")
        monkeypatch.setattr(collector, "TRACKER", snippet)
        served = client.get("/t/tracker.js")
        assert served.status_code == 200 and served.text == "console.log('hi');\n"
        assert served.headers["content-type"].startswith("application/javascript")
        assert "max-age" in served.headers["cache-control"]
        hello = client.get("/t/hello")
        assert hello.status_code == 200 and hello.text == "ok"
