"""The REST API on both backends: keys and scopes, each resource, cursor pages that give
every item once, and 422s that name the field."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.keys import create_key, revoke_key
from reengage.state.schema import messages, segment_members, segments
from reengage.web.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@dataclass
class Api:
    settings: Settings
    engine: Engine
    clock: FixedClock
    client: TestClient
    keys: dict[str, str]

    def get(self, path: str, scope: str = "read", **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.auth(scope))

    def post(self, path: str, body: Any = None, scope: str = "write", **params: Any) -> Any:
        return self.client.post(path, json=body, params=params, headers=self.auth(scope))

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


@pytest.fixture
def api(home: Home, engine: Engine, env: dict[str, str], clock: FixedClock) -> Iterator[Api]:
    settings = load_settings(env)
    keys = {s: create_key(engine, clock, s).key for s in ("read", "write", "admin")}
    client = TestClient(create_app(settings, engine, clock))
    yield Api(settings, engine, clock, client, keys)
    client.close()


def _customers(api: Api, n: int) -> list[int]:
    ids = []
    for i in range(n):
        answer = api.post("/api/v1/contacts", {"customer_id": f"C{i}", "email": f"p{i}@x.com"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def test_keys_and_scopes(api: Api) -> None:
    missing = api.client.get("/api/v1/contacts")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = api.client.get("/api/v1/contacts", headers={"Authorization": "Bearer rk_0000_x"})
    assert wrong.status_code == 401
    assert api.get("/api/v1/contacts").status_code == 200
    refused = api.post("/api/v1/contacts", {"customer_id": "C1"}, scope="read")
    assert refused.status_code == 403 and "write" in refused.json()["detail"]
    assert api.get("/api/v1/privacy/erasures", scope="write").status_code == 403
    assert api.get("/api/v1/privacy/erasures", scope="admin").status_code == 200
    prefix = api.keys["read"].split("_")[1]
    assert revoke_key(api.engine, api.clock, prefix)
    assert api.get("/api/v1/contacts").status_code == 401


def test_the_document_describes_every_route(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/contacts",
        "/api/v1/contacts/{contact_id}",
        "/api/v1/contacts/{contact_id}/consents",
        "/api/v1/contacts/{contact_id}/events",
        "/api/v1/contacts/{contact_id}/orders",
        "/api/v1/contacts/{contact_id}/timeline",
        "/api/v1/events",
        "/api/v1/orders",
        "/api/v1/segments",
        "/api/v1/segments/{name}/members",
        "/api/v1/journeys",
        "/api/v1/messages",
        "/api/v1/reports/summary",
        "/api/v1/privacy/contacts/{contact_id}/export",
        "/api/v1/privacy/contacts/{contact_id}/erase",
    ):
        assert path in paths, path
        for operation in paths[path].values():
            assert {"401", "403"} <= set(operation["responses"])


def test_contact_pages_give_every_contact_once(api: Api) -> None:
    ids = _customers(api, 7)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/contacts", **params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    found = api.get("/api/v1/contacts", email="P3@X.com").json()["items"]
    assert [c["customer_id"] for c in found] == ["C3"]


def test_errors_name_the_field(api: Api) -> None:
    bad = api.get("/api/v1/contacts", cursor="nonsense")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
    bad = api.get("/api/v1/contacts", limit=0)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]
    bad = api.post("/api/v1/contacts", {"customer_id": "C1", "email": "not-an-address"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "email"]
    assert api.get("/api/v1/contacts/999").status_code == 404
    # a cursor of one list is not a cursor of another
    _customers(api, 3)
    other = api.get("/api/v1/contacts", limit=1).json()["next_cursor"]
    assert api.get("/api/v1/messages", cursor=other).status_code == 422


def test_contact_update_and_consents(api: Api) -> None:
    [contact] = _customers(api, 1)
    again = api.post("/api/v1/contacts", {"customer_id": "C0", "first_name": "Ada"})
    assert again.status_code == 200 and again.json()["first_name"] == "Ada"
    assert again.json()["email"] == "p0@x.com"  # fields left out are kept
    taken = api.post("/api/v1/contacts", {"customer_id": "C9", "email": "p0@x.com"})
    assert taken.status_code == 409
    path = f"/api/v1/contacts/{contact}/consents"
    done = api.post(path, {"channel": "email", "granted": True}).json()
    assert done["recorded"] and done["current"][0]["granted"] is True
    api.clock.advance(timedelta(minutes=1))
    assert api.post(path, {"channel": "email", "granted": True}).json()["recorded"] is False
    api.post(path, {"channel": "email", "granted": False})
    history = api.get(path).json()["items"]
    assert [h["granted"] for h in history] == [True, False]
    detail = api.get(f"/api/v1/contacts/{contact}").json()
    assert detail["consents"][0]["granted"] is False
    assert {i["kind"] for i in detail["identities"]} == {"customer_id", "email"}
    bad = api.post(path, {"channel": "pigeon", "granted": True})
    assert bad.json()["detail"][0]["loc"] == ["body", "channel"]


def test_events_and_orders_are_validated_deduplicated_and_paged(api: Api) -> None:
    events = [
        {"customer_id": "C1", "type": "page_view", "occurred_at": f"2026-10-0{d}T10:00:00Z"}
        for d in range(1, 6)
    ]
    events.append({"customer_id": "C1", "type": "teleport", "occurred_at": "2026-10-01"})
    events.append({"type": "page_view", "occurred_at": "2026-10-01T10:00:00Z"})
    sent = api.post("/api/v1/events", {"events": events}).json()
    assert (sent["accepted"], sent["imported"]) == (5, 5)
    assert [r["index"] for r in sent["rejected"]] == [5, 6]
    assert sent["rejected"][0]["reason"].startswith("type:")
    again = api.post("/api/v1/events", {"events": events[:2]}).json()
    assert (again["imported"], again["duplicates"]) == (0, 2)
    [contact] = [c["id"] for c in api.get("/api/v1/contacts").json()["items"]]
    seen, cursor = [], None
    while True:
        page = api.get(
            f"/api/v1/contacts/{contact}/events", limit=2, **({"cursor": cursor} if cursor else {})
        ).json()
        seen += [e["occurred_at"] for e in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 5
    line = {
        "order_id": "O1",
        "customer_id": "C1",
        "ordered_at": "2026-10-02T10:00:00Z",
        "product_id": "P1",
        "quantity": 2,
        "unit_price": 10.5,
    }
    first = api.post("/api/v1/orders", {"orders": [line, line | {"discount": 100}]}).json()
    assert first["imported"] == 1 and first["rejected"][0]["reason"].startswith("discount")
    assert api.post("/api/v1/orders", {"orders": [line]}).json()["duplicates"] == 1
    orders = api.get(f"/api/v1/contacts/{contact}/orders").json()["items"]
    assert [(o["order_id"], o["quantity"]) for o in orders] == [("O1", 2)]
    bad = api.post("/api/v1/orders", {"orders": [line | {"quantity": 0}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "quantity"
    timeline = api.get(f"/api/v1/contacts/{contact}/timeline").json()["items"]
    assert {t["kind"] for t in timeline} == {"event", "order"}


def test_segments_journeys_messages_and_reports(api: Api) -> None:
    ids = _customers(api, 5)
    now = api.clock.now()
    with api.engine.begin() as conn:
        conn.execute(
            segments.insert().values(
                name="vip", rule="orders >= 1", refreshed_at=now, size=5, entered=5, exited=0
            )
        )
        conn.execute(
            segment_members.insert(),
            [{"segment": "vip", "contact_id": c, "entered_at": now} for c in ids],
        )
        conn.execute(
            messages.insert(),
            [
                {
                    "message_key": f"m{c}",
                    "contact_id": c,
                    "channel": "email" if c % 2 else "sms",
                    "intent": "newsletter",
                    "style": "neutral",
                    "language": "en",
                    "status": "sent",
                    "priority": 0,
                    "due_at": now,
                    "created_at": now,
                    "attempts": 1,
                    "payload": {},
                }
                for c in ids
            ],
        )
    [vip] = api.get("/api/v1/segments").json()["items"]
    assert (vip["name"], vip["size"]) == ("vip", 5)
    members, cursor = [], None
    while True:
        page = api.get(
            "/api/v1/segments/vip/members", limit=2, **({"cursor": cursor} if cursor else {})
        ).json()
        members += [m["contact_id"] for m in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert members == ids
    assert api.get("/api/v1/segments/nope/members").status_code == 404
    journeys = api.get("/api/v1/journeys").json()["items"]
    assert journeys and all(j["enrollments"] == {} for j in journeys)
    listed = api.get("/api/v1/messages", channel="email").json()["items"]
    assert {m["channel"] for m in listed} == {"email"} and len(listed) == 3
    one = api.get("/api/v1/messages", contact_id=ids[0]).json()["items"]
    assert [m["contact_id"] for m in one] == [ids[0]]
    report = api.get("/api/v1/reports/summary").json()
    assert report["counts"]["contacts"] == 5
    assert report["messages"]["by_status"] == {"sent": 5}
    assert report["messages"]["by_channel"] == {"email": 3, "sms": 2}


def test_privacy_export_and_erase(api: Api) -> None:
    ids = _customers(api, 2)
    api.post(
        "/api/v1/events",
        {"events": [{"customer_id": "C0", "type": "page_view", "occurred_at": "2026-10-01"}]},
    )
    path = f"/api/v1/privacy/contacts/{ids[0]}"
    assert api.get(path + "/export", scope="write").status_code == 403
    exported = api.get(path + "/export", scope="admin").json()
    assert exported["contact"]["email"] == "p0@x.com"
    assert len(exported["facts"]["events"]) == 1
    erased = api.post(path + "/erase", scope="admin")
    assert erased.status_code == 200 and erased.json()["removed"]["contacts"] == 1
    assert erased.json()["removed"]["facts.events"] == 1
    assert api.post(path + "/erase", scope="admin").status_code == 404
    assert api.get(f"/api/v1/contacts/{ids[0]}").status_code == 404
    assert api.get(f"/api/v1/contacts/{ids[1]}").status_code == 200
    [logged] = api.get("/api/v1/privacy/erasures", scope="admin").json()["items"]
    assert logged["contact_id"] == ids[0] and logged["requested_by"].startswith("api:")
    assert "p0@x.com" not in str(logged)
