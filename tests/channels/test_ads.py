"""Ad audiences: identifiers normalised and hashed exactly as Meta and Google document,
their customer-list files, membership and consent, and the two audience APIs.

Expected hashes are literal SHA-256 hex digests. Where a platform's documentation prints a
hash, the test uses that example; elsewhere the docstring names the documented rule the
value follows, and the digest is that of the normalised string. No Meta or Google here: a
local HTTP server plays the Graph API and the Google Ads REST API, checking each request's
method, path, headers and body."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from local_peer import Reply, Request, local_peer
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from reengage.channels.ad_platforms import (
    AudienceSyncError,
    GoogleCustomerMatch,
    MetaCustomAudience,
    refresh_access_token,
)
from reengage.channels.ads import (
    GOOGLE_CSV_HEADER,
    META_CSV_HEADER,
    META_SCHEMA,
    Person,
    google_identifiers,
    google_row,
    matchable,
    meta_row,
    meta_values,
    sha256_hex,
)
from reengage.channels.audiences import (
    current_members,
    export_members,
    mark_synced,
    pending_changes,
    set_members,
    sync,
)
from reengage.cli import app
from reengage.clock import FixedClock
from reengage.config import Home
from reengage.state.contacts import ConsentChange, record_consents
from reengage.state.schema import audience_members, contacts

H = {
    "john.doe@example.com": "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f",
    "12345678901": "254aa248acb47dd654ca3ea53f48c2c26d641d23d7e2e93a1ec56258df7674c4",
    "393331234567": "0efc79e9473975b30516d1873027513a35fb5ed450f0e6c13e368c4e38eceeeb",
    "447911123456": "40b5c38342a9c584ec707e8679b003f8c779c6aaa138c976ef94e049cc05208f",
    "zoë": "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450",
    "oconnor": "7a0fbfdf40cbeb97429bdb88f512cecd27f0d44b7e57986ab578423bb61936ac",
    "deluca": "fa8426e65c5c3ddf179c0e171a9f2f5e0dd568ec8b2221f87c9a6ea342443783",
    "newyork": "350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5",
    "ca": "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126",
    "94043": "1b10e5e0b47cefad5c4f6c1d10b8b6fbbd5af9756eb01ed5c8ee1f588b65947b",
    "sw1a1": "949af780a19e6f6d4b99d7044743348dbbb7ab2245fe146863573b23d02c5890",
    "us": "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
    "dana@example.com": "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3",
    "+393331234567": "78f00e1ca317fb2af02c89b17b8b07382ff70336aba0997ad1f3ef3645b4e682",
    "alex": "4135aa9dc1b842a653dea846903ddb95bfb8c5a10c504a7fa16e10bc31d1fdf0",
    "mary ann": "343b97011010c3549fe7fcd6c226ed9431ea37b0b77ed78f6300a0098925faf1",
    "quinn": "c512ca0c5c1e71be19f3356821e56732b5fb3ac894b0dbc5846d0b6920106fb3",
}


def test_hashes_are_lowercase_sha256_hex() -> None:
    for plain, digest in H.items():
        assert sha256_hex(plain) == digest


# -- Meta -------------------------------------------------------------------------------


def test_meta_phone_matches_metas_documented_example() -> None:
    """Meta's Conversions API example payload sends ph 254aa248…, the SHA-256 of
    12345678901: a number as digits only, country code first, no + (the Custom Audiences
    PHONE rule)."""
    assert meta_row(Person(phone="+1 (234) 567-8901"))[1] == H["12345678901"]
    assert meta_row(Person(phone="(234) 567-8901", country="US"))[1] == H["12345678901"]


def test_meta_normalisation_rules() -> None:
    """EMAIL: trim, lower-case. PHONE: digits with country code, no leading zeros (a national
    number is read in the contact's country; the UK trunk 0 goes). FN/LN: lower-case, no
    punctuation or spaces, UTF-8 letters kept. CT: letters only. ST: the US 2-letter code.
    ZIP: US first 5 digits; UK area, district and sector. COUNTRY: ISO alpha-2 lower-case."""
    us = Person(
        email="  John.Doe@Example.COM ",
        phone="(234) 567-8901",
        first_name="Zoë",
        last_name="O'Connor",
        city="New York",
        state="CA",
        zip="94043-1351",
        country="US",
    )
    assert meta_values(us) == [
        "john.doe@example.com",
        "12345678901",
        "zoë",
        "oconnor",
        "newyork",
        "ca",
        "94043",
        "us",
    ]
    assert meta_row(us) == [
        H["john.doe@example.com"],
        H["12345678901"],
        H["zoë"],
        H["oconnor"],
        H["newyork"],
        H["ca"],
        H["94043"],
        H["us"],
    ]
    uk = Person(phone="07911 123456", last_name="De Luca", zip="SW1A 1AA", country="gb")
    values = meta_values(uk)
    assert values[1] == "447911123456" and meta_row(uk)[1] == H["447911123456"]
    assert values[3] == "deluca" and meta_row(uk)[3] == H["deluca"]
    assert values[6] == "sw1a1" and meta_row(uk)[6] == H["sw1a1"]
    it = Person(phone="333 123 4567", country="IT", state="Lombardia")
    assert meta_values(it)[1] == "393331234567"
    assert meta_row(it)[1] == H["393331234567"]
    assert meta_values(it)[5] == "lombardia"
    # unknown values are empty cells, not the hash of an empty string
    assert meta_row(Person()) == [""] * 8
    assert meta_values(Person(state="California", country="US"))[5] is None
    assert meta_values(Person(phone="12"))[1] is None


# -- Google -----------------------------------------------------------------------------


def test_google_normalisation_rules() -> None:
    """Email: no whitespace, lower-case, hashed; gmail dots kept (Google: removing them is not
    required). Phone: E.164 with +, hashed. First name: lower-case, extra spaces removed,
    hashed. Last name: lower-case, no punctuation, hashed. Country and Zip: not hashed."""
    person = Person(
        email=" Dana@Example.com ",
        phone="333 123 4567",
        first_name="  Mary   Ann ",
        last_name="Quinn.",
        zip="20121",
        country="it",
    )
    ids = google_identifiers(person)
    assert ids.hashed_email == H["dana@example.com"]
    assert ids.hashed_phone_number == H["+393331234567"]
    assert ids.hashed_first_name == H["mary ann"]
    assert ids.hashed_last_name == H["quinn"]
    assert (ids.country_code, ids.postal_code) == ("IT", "20121")
    assert google_row(person) == [
        H["dana@example.com"],
        H["+393331234567"],
        H["mary ann"],
        H["quinn"],
        "IT",
        "20121",
    ]
    gmail = google_identifiers(Person(email="Jane.Doe@GMAIL.com"))
    assert gmail.hashed_email == sha256_hex("jane.doe@gmail.com")


def test_google_user_data_is_the_rest_userdata() -> None:
    """One UserIdentifier per identifier; the address only with first and last name, country
    and postal code (Google's mailing-address match needs all four)."""
    full = Person(
        email="dana@example.com", first_name="Alex", last_name="Quinn", zip="94045", country="US"
    )
    assert google_identifiers(full).user_data() == {
        "userIdentifiers": [
            {"hashedEmail": H["dana@example.com"]},
            {
                "addressInfo": {
                    "hashedFirstName": H["alex"],
                    "hashedLastName": H["quinn"],
                    "countryCode": "US",
                    "postalCode": "94045",
                }
            },
        ]
    }
    partial = Person(first_name="Alex", last_name="Quinn", country="US")
    assert google_identifiers(partial).user_data() == {"userIdentifiers": []}
    assert not matchable("google", partial)
    assert matchable("meta", partial)  # Meta matches on names with other keys


# -- membership, consent and export -----------------------------------------------------


def add_contacts(engine: Engine, clock: FixedClock, n: int, ads: list[bool | None]) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for i in range(n):
            key = conn.execute(
                contacts.insert().values(
                    customer_id=f"C{i}",
                    email=f"person{i}@example.com",
                    phone=f"+3933312345{i:02d}",
                    first_name="Alex",
                    last_name="Quinn",
                    country="IT",
                    created_at=clock.now(),
                    updated_at=clock.now(),
                    origin="customers",
                    attributes={"zip": "20121"},
                )
            ).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        record_consents(
            conn,
            [
                ConsentChange(cid, "ads", "marketing", granted, "import", clock.now())
                for cid, granted in zip(ids, ads, strict=True)
                if granted is not None
            ],
        )
    return ids


def consent(engine: Engine, clock: FixedClock, contact_id: int, granted: bool) -> None:
    with engine.begin() as conn:
        record_consents(
            conn,
            [ConsentChange(contact_id, "ads", "marketing", granted, "preferences", clock.now())],
        )


def test_membership_and_pending_changes(engine: Engine, clock: FixedClock) -> None:
    a, b, c, d = add_contacts(engine, clock, 4, [True, True, False, None])
    with engine.begin() as conn:
        change = set_members(conn, "lapsed", [a, b, c, d], clock)
        assert (change.joined, change.left) == (4, 0)
        # only who allows ads is added; who never did is never sent, not even to be removed
        pending = pending_changes(conn, "lapsed")
        assert (pending.adds, pending.removes) == ([a, b], [])
        mark_synced(conn, "lapsed", pending.adds, clock.now())
        assert pending_changes(conn, "lapsed").adds == []

    clock.advance(timedelta(days=1))
    consent(engine, clock, b, False)  # b withdraws consent while still a member
    with engine.begin() as conn:
        change = set_members(conn, "lapsed", [b, c, d], clock)  # a leaves
        assert (change.joined, change.left) == (0, 1)
        pending = pending_changes(conn, "lapsed")
        assert (pending.adds, pending.removes) == ([], [a, b])
        mark_synced(conn, "lapsed", pending.removes, clock.now())
        assert pending_changes(conn, "lapsed") == type(pending)([], [])
        assert current_members(conn, "lapsed") == [b, c, d]

    clock.advance(timedelta(days=1))
    consent(engine, clock, c, True)  # c allows ads now
    with engine.begin() as conn:
        set_members(conn, "lapsed", [a, b, c, d], clock)  # a comes back
        pending = pending_changes(conn, "lapsed")
        assert (pending.adds, pending.removes) == ([a, c], [])
        rows = conn.execute(
            select(audience_members.c.contact_id, audience_members.c.left_at).order_by(
                audience_members.c.contact_id
            )
        ).all()
        assert [r.left_at for r in rows] == [None] * 4


def test_export_writes_only_consenting_members(
    engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    a, _b, c = add_contacts(engine, clock, 3, [True, False, True])
    with engine.begin() as conn:
        set_members(conn, "vip", [a, _b, c], clock)
        meta = export_members(conn, "vip", "meta", tmp_path / "meta.csv")
        google = export_members(conn, "vip", "google", tmp_path / "google.csv")
    assert (meta.rows, meta.without_consent, meta.unmatchable) == (2, 1, 0)
    assert google.rows == 2
    with (tmp_path / "meta.csv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == META_CSV_HEADER
    assert rows[1][0] == sha256_hex("person0@example.com")
    assert rows[1][7] == sha256_hex("it")
    with (tmp_path / "google.csv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert (
        tuple(rows[0])
        == GOOGLE_CSV_HEADER
        == (
            "Email",
            "Phone",
            "First Name",
            "Last Name",
            "Country",
            "Zip",
        )
    )
    assert rows[2][:2] == [sha256_hex("person2@example.com"), sha256_hex("+393331234502")]
    assert rows[2][4:] == ["IT", "20121"]


def test_audiences_export_command(
    cli: CliRunner, home: Home, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    ids = add_contacts(engine, clock, 2, [True, None])
    with engine.begin() as conn:
        set_members(conn, "cart", ids, clock)
    out = tmp_path / "cart.csv"
    result = cli.invoke(
        app, ["audiences", "export", "cart", "--platform", "google", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 1 and summary["without_consent"] == 1
    assert "person" not in result.stdout  # no personal data on the terminal
    default = cli.invoke(app, ["audiences", "export", "cart", "--platform", "meta"])
    assert default.exit_code == 0
    assert (home.path / "exports" / "cart-meta.csv").is_file()


# -- the audience APIs ------------------------------------------------------------------

META_PATH = "/v25.0/23850000000000001/users"


def meta_ok(request: Request) -> Reply:
    payload = json.loads(request.form()["payload"][0])
    return Reply(
        200,
        {
            "audience_id": "23850000000000001",
            "session_id": json.loads(request.form()["session"][0])["session_id"],
            "num_received": len(payload["data"]),
            "num_invalid_entries": 0,
            "invalid_entry_samples": {},
        },
    )


def meta(url: str) -> MetaCustomAudience:
    return MetaCustomAudience(
        "23850000000000001", "EAAB-token", base_url=url, client=httpx.Client(trust_env=False)
    )


PEOPLE = [
    Person(email="John.Doe@example.com", phone="+1 234 567 8901", country="US"),
    Person(first_name="Zoë", last_name="O'Connor", country="FR"),
    Person(),  # nothing to match on: not sent
]


def test_meta_users_requests(tmp_path: Path) -> None:
    with local_peer(meta_ok) as peer:
        target = meta(peer.url)
        assert target.add(PEOPLE) == 2
        assert target.remove(PEOPLE[:1]) == 1
    added, removed = peer.requests
    assert (added.method, added.path) == ("POST", META_PATH)
    assert (removed.method, removed.path) == ("DELETE", META_PATH)
    for request in peer.requests:
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = request.form()
        assert form["access_token"] == ["EAAB-token"]
        session = json.loads(form["session"][0])
        assert session["batch_seq"] == 1 and session["last_batch_flag"] is True
    payload = json.loads(added.form()["payload"][0])
    assert payload["schema"] == list(META_SCHEMA)
    assert payload["data"][0][:2] == [H["john.doe@example.com"], H["12345678901"]]
    assert payload["data"][1][2:4] == [H["zoë"], H["oconnor"]]
    assert payload["data"][1][7] == sha256_hex("fr")


@pytest.mark.parametrize(
    ("reply", "temporary"),
    [
        (
            Reply(
                400,
                {
                    "error": {
                        "message": "Invalid OAuth access token.",
                        "type": "OAuthException",
                        "code": 190,
                        "fbtrace_id": "A1",
                    }
                },
            ),
            False,
        ),
        (
            Reply(
                400,
                {
                    "error": {
                        "message": "User request limit reached",
                        "type": "OAuthException",
                        "code": 17,
                        "is_transient": True,
                    }
                },
            ),
            True,
        ),
        (Reply(500, {"error": {"message": "An unknown error occurred", "code": 1}}), True),
    ],
)
def test_meta_errors(reply: Reply, temporary: bool) -> None:
    with local_peer(lambda _r: reply) as peer, pytest.raises(AudienceSyncError) as raised:
        meta(peer.url).add(PEOPLE[:1])
    assert raised.value.temporary is temporary
    assert "example.com" not in str(raised.value)


class GoogleAds:
    """The Google Ads REST API's offline-user-data-job methods, as documented."""

    def __init__(self) -> None:
        self.jobs = 0

    def __call__(self, request: Request) -> Reply:
        if request.path.endswith("/offlineUserDataJobs:create"):
            self.jobs += 1
            return Reply(
                200, {"resourceName": f"customers/1234567890/offlineUserDataJobs/{self.jobs}"}
            )
        if request.path.endswith(":addOperations"):
            return Reply(200, {})
        if request.path.endswith(":run"):
            return Reply(200, {"name": f"customers/1234567890/operations/{self.jobs}"})
        return Reply(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "no"}})


def google(url: str) -> GoogleCustomerMatch:
    return GoogleCustomerMatch(
        "123-456-7890",
        "555",
        developer_token="dev-token",
        access_token="ya29.token",
        login_customer_id="999-000-1111",
        base_url=url,
        version="v26",
        client=httpx.Client(trust_env=False),
    )


def test_google_offline_user_data_jobs() -> None:
    with local_peer(GoogleAds()) as peer:
        target = google(peer.url)
        assert target.add(PEOPLE) == 1  # only the first carries an email or a phone
        assert target.remove(PEOPLE[:1]) == 1
    paths = [(r.method, r.path) for r in peer.requests]
    assert paths == [
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs:create"),
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs/1:addOperations"),
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs/1:run"),
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs:create"),
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs/2:addOperations"),
        ("POST", "/v26/customers/1234567890/offlineUserDataJobs/2:run"),
    ]
    for request in peer.requests:
        assert request.headers["authorization"] == "Bearer ya29.token"
        assert request.headers["developer-token"] == "dev-token"
        assert request.headers["login-customer-id"] == "9990001111"
        assert request.headers["content-type"] == "application/json"
    create = peer.requests[0].json()
    assert create == {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {
                "userList": "customers/1234567890/userLists/555",
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
            },
        }
    }
    operations = peer.requests[1].json()
    assert operations["enablePartialFailure"] is True
    assert operations["operations"] == [
        {
            "create": {
                "userIdentifiers": [
                    {"hashedEmail": H["john.doe@example.com"]},
                    {"hashedPhoneNumber": sha256_hex("+12345678901")},
                ]
            }
        }
    ]
    assert "remove" in peer.requests[4].json()["operations"][0]
    assert "consent" not in peer.requests[3].json()["job"]["customerMatchUserListMetadata"]


def test_google_errors_and_oauth() -> None:
    quota = Reply(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}})
    with local_peer(lambda _r: quota) as peer, pytest.raises(AudienceSyncError) as raised:
        google(peer.url).add(PEOPLE[:1])
    assert raised.value.temporary

    def token_endpoint(request: Request) -> Reply:
        form = request.form()
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != ["1//r"]:
            return Reply(400, {"error": "invalid_grant"})
        return Reply(
            200, {"access_token": "ya29.fresh", "expires_in": 3599, "token_type": "Bearer"}
        )

    with local_peer(token_endpoint) as peer, httpx.Client(trust_env=False) as client:
        token = refresh_access_token(client, f"{peer.url}/token", "id", "secret", "1//r")
        assert token == "ya29.fresh"
        with pytest.raises(AudienceSyncError):
            refresh_access_token(client, f"{peer.url}/token", "id", "secret", "1//other")


class Recorder:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.calls: list[tuple[str, list[Any]]] = []

    def add(self, people: Any) -> int:
        if self.fail:
            raise AudienceSyncError("down", temporary=True)
        self.calls.append(("add", [p.email for p in people]))
        return len(people)

    def remove(self, people: Any) -> int:
        self.calls.append(("remove", [p.email for p in people]))
        return len(people)

    def close(self) -> None:
        pass


def test_sync_marks_only_what_every_platform_took(engine: Engine, clock: FixedClock) -> None:
    a, b = add_contacts(engine, clock, 2, [True, True])
    with engine.begin() as conn:
        set_members(conn, "lapsed", [a, b], clock)
    broken = Recorder("google", fail=True)
    with pytest.raises(AudienceSyncError), engine.begin() as conn:
        sync(conn, "lapsed", [Recorder("meta"), broken], clock)
    with engine.connect() as conn:
        assert pending_changes(conn, "lapsed").adds == [a, b]
    first, second = Recorder("meta"), Recorder("google")
    with engine.begin() as conn:
        summary = sync(conn, "lapsed", [first, second], clock)
    assert (summary.added, summary.removed) == (2, 0)
    assert first.calls == second.calls == [("add", ["person0@example.com", "person1@example.com"])]
    with engine.begin() as conn:
        set_members(conn, "lapsed", [b], clock)
        again = sync(conn, "lapsed", [first], clock)
    assert (again.added, again.removed) == (0, 1)
    assert first.calls[-1] == ("remove", ["person0@example.com"])


def test_audiences_sync_command(
    cli: CliRunner,
    home: Home,
    engine: Engine,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = add_contacts(engine, clock, 1, [True])
    with engine.begin() as conn:
        set_members(conn, "cart", ids, clock)
    with local_peer(meta_ok) as peer, monkeypatch.context() as patched:
        patched.setattr(
            "reengage.channels.ad_platforms.platform_from_settings",
            lambda _settings, _platform, _audience: meta(peer.url),
        )
        result = cli.invoke(app, ["audiences", "sync", "cart", "--platform", "meta", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 1
    assert len(peer.requests) == 1
    unconfigured = cli.invoke(app, ["audiences", "sync", "cart", "--platform", "google"])
    assert unconfigured.exit_code == 2
    assert "google_ads_user_list_ids" in unconfigured.stderr
