"""The API against its own OpenAPI document (schemathesis, on SQLite): whatever a client
sends that the document allows or forbids, no answer is a server error, every status is
documented and every body fits its documented schema."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.home import init_home
from reengage.keys import create_key
from reengage.state.db import engine_for
from reengage.state.schema import contacts, messages
from reengage.web.app import create_app

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp_path = tmp_path_factory.mktemp("api")
    env = {
        "REENGAGE_HOME": str(tmp_path / "home"),
        "REENGAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    init_home(load_settings(env))
    app_settings = load_settings(env)
    engine = engine_for(app_settings.state_url)
    clock = FixedClock(NOW)
    with engine.begin() as conn:
        for n in (1, 2, 3):
            conn.execute(
                contacts.insert().values(
                    customer_id=f"C{n}",
                    email=f"p{n}@example.com",
                    created_at=NOW,
                    updated_at=NOW,
                    origin="customers",
                    attributes={},
                )
            )
        conn.execute(
            messages.insert().values(
                message_key="m1",
                contact_id=1,
                channel="email",
                intent="newsletter",
                style="neutral",
                language="en",
                status="sent",
                priority=0,
                due_at=NOW - timedelta(hours=1),
                created_at=NOW - timedelta(hours=1),
                sent_at=NOW - timedelta(hours=1),
                attempts=1,
                payload={},
            )
        )
    KEY["admin"] = create_key(engine, clock, "admin").key
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield schemathesis.openapi.from_asgi(
                "/openapi.json", create_app(app_settings, engine, clock)
            )
    finally:
        engine.dispose()


schema = schemathesis.pytest.from_fixture("api_schema")

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_keeps_its_document(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY['admin']}"}, checks=CHECKS)
