"""The dashboard's door, in process: users made by the CLI log in, sessions are signed
cookies, every form needs its CSRF token, the security headers are on the dashboard's
responses (and only there), and every page sends a stranger to the login form."""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home, Settings, load_settings
from reengage.web.app import create_app

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"
COOKIE = "reengage_dashboard"
PAGES = (
    "/dashboard/",
    "/dashboard/customers",
    "/dashboard/segments",
    "/dashboard/journeys",
    "/dashboard/messages",
    "/dashboard/reports",
    "/dashboard/reports?since=2026-01-01&by=week",
    "/dashboard/contacts",
    "/dashboard/contacts?q=ada",
    "/dashboard/contacts/1",
    "/dashboard/preview",
    "/dashboard/preview?intent=cart_reminder&style=examiner&language=fr",
    "/dashboard/preview/email",
)


@dataclass
class Door:
    settings: Settings
    engine: Engine
    client: TestClient

    def fresh(self) -> TestClient:
        """Another browser: no cookies."""
        return TestClient(self.client.app, follow_redirects=False)

    def csrf(self, client: TestClient | None = None, path: str = "/dashboard/login") -> str:
        page = (client or self.client).get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        return found.group(1)

    def log_in(self, password: str = PASSWORD, client: TestClient | None = None) -> httpx.Response:
        client = client or self.client
        token = self.csrf(client)
        return client.post(
            "/dashboard/login",
            data={"csrf": token, "email": EMAIL, "password": password, "next": "/dashboard/"},
        )


@pytest.fixture
def door(
    home: Home, engine: Engine, env: dict[str, str], cli: CliRunner, clock: FixedClock
) -> Iterator[Door]:
    made = cli.invoke(app, ["users", "create", EMAIL], input=PASSWORD + "\n")
    assert made.exit_code == 0, made.output
    settings = load_settings(env)  # with the secret init wrote
    client = TestClient(create_app(settings, engine, clock), follow_redirects=False)
    yield Door(settings, engine, client)
    client.close()


def test_every_page_sends_a_stranger_to_the_login_form(door: Door) -> None:
    for path in PAGES:
        answer = door.client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["location"].startswith("/dashboard/login?next=%2Fdashboard"), path
    assert door.client.get("/").headers["location"] == "/dashboard/"
    assert door.client.post("/dashboard/logout").status_code == 403


def test_a_user_logs_in_with_their_password_only(door: Door) -> None:
    wrong = door.log_in("not the password")
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    assert door.client.get("/dashboard/").status_code == 302

    right = door.log_in()
    assert right.status_code == 303 and right.headers["location"] == "/dashboard/"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "path=/dashboard" in cookie.lower() and "secure" not in cookie.lower()
    assert PASSWORD not in cookie and EMAIL not in cookie
    for path in PAGES:
        answer = door.client.get(path)
        assert answer.status_code in (200, 404), path  # contact 1 does not exist here
        if answer.status_code == 200 and path != "/dashboard/preview/email":
            assert EMAIL in answer.text, path
    # a logged-in user asking for the login form goes to the dashboard
    assert door.client.get("/dashboard/login").status_code == 302


def test_the_page_asked_for_comes_after_login_but_never_another_site(door: Door) -> None:
    for target, expected in (
        ("/dashboard/segments", "/dashboard/segments"),
        ("//evil.example/", "/dashboard/"),
        ("https://evil.example/dashboard", "/dashboard/"),
        ("/dashboard/..//evil.example", "/dashboard/"),
    ):
        client = door.fresh()
        token = door.csrf(client)
        answer = client.post(
            "/dashboard/login",
            data={"csrf": token, "email": EMAIL, "password": PASSWORD, "next": target},
        )
        assert answer.headers["location"] == expected, target


def test_a_tampered_or_foreign_cookie_is_no_session(door: Door) -> None:
    assert door.log_in().status_code == 303
    value = door.client.cookies[COOKIE]
    payload, stamp, mac = value.split(".")
    data = json.loads(base64.b64decode(payload + "=="))
    assert set(data) == {"uid", "at", "csrf"}
    forged = base64.b64encode(json.dumps({**data, "uid": 2}).encode()).decode()
    for cookie in (
        f"{forged}.{stamp}.{mac}",  # payload changed
        f"{payload}.{stamp}.{mac[:-2]}AA",  # signature changed
        value.replace(payload, payload[::-1]),
    ):
        other = door.fresh()
        answer = other.get("/dashboard/", headers={"cookie": f"{COOKIE}={cookie}"})
        assert answer.status_code == 302
    same = door.fresh()
    assert same.get("/dashboard/", headers={"cookie": f"{COOKIE}={value}"}).status_code == 200


def test_every_form_needs_its_csrf_token(door: Door) -> None:
    client = door.client
    door.csrf()  # a session with a token
    login = {"email": EMAIL, "password": PASSWORD}
    assert client.post("/dashboard/login", data=login).status_code == 403
    assert client.post("/dashboard/login", data={**login, "csrf": "forged"}).status_code == 403
    assert client.get("/dashboard/").status_code == 302  # still not logged in

    assert door.log_in().status_code == 303
    assert client.post("/dashboard/logout").status_code == 403
    assert client.post("/dashboard/logout", data={"csrf": "forged"}).status_code == 403
    # the token from before the login is not the session's any more
    stranger = door.fresh()
    old = door.csrf(stranger)
    assert client.post("/dashboard/logout", data={"csrf": old}).status_code == 403
    assert client.get("/dashboard/").status_code == 200

    token = door.csrf(path="/dashboard/")
    out = client.post("/dashboard/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard/").status_code == 302


def test_security_headers_on_the_dashboard_only(door: Door) -> None:
    door.log_in()
    for path in ("/dashboard/login", "/dashboard/", "/dashboard/preview"):
        headers = door.client.get(path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    # the email shown in the preview's frame: its own policy, no script, framed by us only
    email = door.client.get("/dashboard/preview/email?style=nurturer&language=it").headers
    assert "frame-ancestors 'self'" in email["content-security-policy"]
    assert "sandbox" in email["content-security-policy"]
    assert "script-src" not in email["content-security-policy"]
    assert email["x-content-type-options"] == "nosniff"
    assert door.client.get("/dashboard/preview/email?style=nobody").status_code == 400
    static = door.client.get("/dashboard/static/vendor/chart.umd.min.js")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
    # what other sites call keeps its own headers
    health = door.client.get("/healthz")
    assert "content-security-policy" not in health.headers
    assert "set-cookie" not in health.headers


def test_a_disabled_user_is_logged_out(door: Door, cli: CliRunner) -> None:
    assert door.log_in().status_code == 303
    assert door.client.get("/dashboard/").status_code == 200
    off = cli.invoke(app, ["users", "disable", EMAIL])
    assert off.exit_code == 0, off.output
    assert door.client.get("/dashboard/").status_code == 302
    assert door.log_in().status_code == 401


def test_failed_logins_are_limited_per_address(door: Door) -> None:
    for _ in range(10):
        assert door.log_in("wrong password!").status_code == 401
    refused = door.log_in()
    assert refused.status_code == 429


def test_the_cookie_is_secure_behind_https(
    home: Home, engine: Engine, env: dict[str, str], clock: FixedClock
) -> None:
    settings = load_settings({**env, "REENGAGE_PUBLIC_URL": "https://shop.example.com"})
    with TestClient(create_app(settings, engine, clock), follow_redirects=False) as client:
        cookie = client.get("/dashboard/login").headers["set-cookie"]
    assert "secure" in cookie.lower()
