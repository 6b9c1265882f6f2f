"""The ad platforms' audience APIs behind one small interface: add people, remove people.

Meta (Marketing API, Customer File Custom Audiences):
    POST   {graph}/{version}/{custom_audience_id}/users   adds
    DELETE {graph}/{version}/{custom_audience_id}/users   removes
  form fields `payload` = {"schema": [...], "data": [[sha256, ...], ...]} (JSON),
  `session` = {"session_id", "batch_seq", "last_batch_flag", "estimated_num_total"} (JSON)
  and `access_token`; at most 10,000 rows a request.

Google Ads (REST, OfflineUserDataJobService), one job for the additions and one for the
removals, each:
    POST {ads}/{version}/customers/{customer_id}/offlineUserDataJobs:create
         {"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata":
                  {"userList": "customers/{id}/userLists/{list}", "consent": {...}}}}
    POST {ads}/{version}/{job resource name}:addOperations
         {"operations": [{"create" | "remove": UserData}], "enablePartialFailure": true}
    POST {ads}/{version}/{job resource name}:run
  with `Authorization: Bearer <OAuth access token>`, `developer-token` and, for a manager
  account, `login-customer-id`. Only people who allow ads are ever added, so an addition job
  declares ad_user_data and ad_personalization consent GRANTED.

Every base URL is configurable, which is how the tests point them at a local server.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from reengage.channels.ads import META_SCHEMA, Person, google_identifiers, matchable, meta_row
from reengage.config import Settings
from reengage.errors import ConfigError, ReengageError
from reengage.state.contacts import chunks

META_GRAPH_URL = "https://graph.facebook.com"
META_API_VERSION = "v25.0"
META_BATCH = 10_000
# Graph API error codes for throttling and passing faults (besides is_transient)
META_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80003})

GOOGLE_ADS_URL = "https://googleads.googleapis.com"
GOOGLE_ADS_API_VERSION = "v26"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_BATCH = 10_000


class AudienceSyncError(ReengageError):
    """A platform refused an audience update; temporary when trying later may work."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class AudiencePlatform(Protocol):
    name: str

    def add(self, people: Sequence[Person]) -> int:
        """Add the people to the platform's audience; how many were sent."""
        ...

    def remove(self, people: Sequence[Person]) -> int:
        """Remove the people from the platform's audience; how many were sent."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PlatformError:
    """What an ad platform's error answer says, read the same way for audiences and for
    conversion events: the status, the platform's label and code, its message, and whether
    trying again later may succeed."""

    status: int
    detail: str  # "INVALID_ARGUMENT 3", "OAuthException 190", or ""
    message: str
    temporary: bool


def read_error(platform: str, response: httpx.Response) -> PlatformError:
    status = response.status_code
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    label = error.get("status") or error.get("type") or ""
    transient = bool(error.get("is_transient")) or code in META_TRANSIENT_CODES
    temporary = status == 429 or status >= 500 or (platform == "meta" and transient)
    detail = " ".join(str(p) for p in (label, code) if p not in (None, ""))
    return PlatformError(status, detail, str(error.get("message") or ""), temporary)


def _error(platform: str, response: httpx.Response) -> AudienceSyncError:
    """An error naming the status and the platform's error code, never the request's data."""
    found = read_error(platform, response)
    return AudienceSyncError(
        f"{platform} answered {found.status}{(' (' + found.detail + ')') if found.detail else ''}"
        + (": try again later" if found.temporary else ""),
        temporary=found.temporary,
    )


def _post(
    client: httpx.Client, platform: str, method: str, url: str, **kwargs: Any
) -> dict[str, Any]:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise AudienceSyncError(
            f"{platform} unreachable ({type(exc).__name__}): try again later", temporary=True
        ) from None
    if not 200 <= response.status_code < 300:
        raise _error(platform, response)
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class MetaCustomAudience:
    """One Meta Customer File Custom Audience."""

    name = "meta"

    def __init__(
        self,
        audience_id: str,
        access_token: str,
        *,
        base_url: str = META_GRAPH_URL,
        version: str = META_API_VERSION,
        client: httpx.Client | None = None,
    ) -> None:
        self.audience_id = audience_id
        self.url = f"{base_url.rstrip('/')}/{version}/{audience_id}/users"
        self._token = access_token
        self._client = client or httpx.Client(timeout=60.0)
        self._owns_client = client is None

    def _send(self, method: str, people: Sequence[Person]) -> int:
        rows = [meta_row(p) for p in people if matchable("meta", p)]
        batches = list(chunks(rows, META_BATCH))
        session_id = secrets.randbits(62)  # the advertiser picks it; it ties the batches
        for seq, batch in enumerate(batches, start=1):
            session = {
                "session_id": session_id,
                "batch_seq": seq,
                "last_batch_flag": seq == len(batches),
                "estimated_num_total": len(rows),
            }
            form = {
                "payload": json.dumps({"schema": list(META_SCHEMA), "data": list(batch)}),
                "session": json.dumps(session),
                "access_token": self._token,
            }
            _post(self._client, self.name, method, self.url, data=form)
        return len(rows)

    def add(self, people: Sequence[Person]) -> int:
        return self._send("POST", people)

    def remove(self, people: Sequence[Person]) -> int:
        return self._send("DELETE", people)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class GoogleCustomerMatch:
    """One Google Ads Customer Match user list."""

    name = "google"

    def __init__(
        self,
        customer_id: str,
        user_list_id: str,
        *,
        developer_token: str,
        access_token: str,
        login_customer_id: str | None = None,
        base_url: str = GOOGLE_ADS_URL,
        version: str = GOOGLE_ADS_API_VERSION,
        client: httpx.Client | None = None,
    ) -> None:
        self.customer_id = customer_id.replace("-", "")
        self.user_list = f"customers/{self.customer_id}/userLists/{user_list_id}"
        self.base = f"{base_url.rstrip('/')}/{version}"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "developer-token": developer_token,
        }
        if login_customer_id:
            self._headers["login-customer-id"] = login_customer_id.replace("-", "")
        self._client = client or httpx.Client(timeout=60.0)
        self._owns_client = client is None

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _post(
            self._client,
            self.name,
            "POST",
            f"{self.base}/{path}",
            json=body,
            headers=self._headers,
        )

    def _job(self, operation: str, people: Sequence[Person]) -> int:
        operations = [
            {operation: google_identifiers(p).user_data()} for p in people if matchable("google", p)
        ]
        if not operations:
            return 0
        metadata: dict[str, Any] = {"userList": self.user_list}
        if operation == "create":
            metadata["consent"] = {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
        created = self._call(
            f"customers/{self.customer_id}/offlineUserDataJobs:create",
            {
                "job": {
                    "type": "CUSTOMER_MATCH_USER_LIST",
                    "customerMatchUserListMetadata": metadata,
                }
            },
        )
        job = created.get("resourceName")
        if not isinstance(job, str):
            raise AudienceSyncError("google answered without a job resource name", temporary=True)
        for batch in chunks(operations, GOOGLE_BATCH):
            self._call(
                f"{job}:addOperations", {"operations": list(batch), "enablePartialFailure": True}
            )
        self._call(f"{job}:run", {})
        return len(operations)

    def add(self, people: Sequence[Person]) -> int:
        return self._job("create", people)

    def remove(self, people: Sequence[Person]) -> int:
        return self._job("remove", people)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def refresh_access_token(
    client: httpx.Client, token_url: str, client_id: str, client_secret: str, refresh_token: str
) -> str:
    """An OAuth 2.0 access token for the Google Ads API from a refresh token (RFC 6749 6)."""
    body = _post(
        client,
        "google oauth",
        "POST",
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        },
    )
    token = body.get("access_token")
    if not isinstance(token, str):
        raise AudienceSyncError("google oauth answered without an access token", temporary=False)
    return token


def _setting(settings: Settings, name: str, default: Any = None) -> Any:
    return getattr(settings, name)


def _required(settings: Settings, name: str) -> str:
    value = _setting(settings, name)
    if not value:
        raise ConfigError(
            f"audience sync needs {name}: set it in reengage.toml or as REENGAGE_{name.upper()}"
        )
    return str(value)


def platform_from_settings(settings: Settings, platform: str, audience: str) -> AudiencePlatform:
    """The platform's audience for a reengage audience, as the settings configure it."""
    if platform == "meta":
        ids = _setting(settings, "meta_audience_ids", {}) or {}
        if audience not in ids:
            raise ConfigError(f"meta_audience_ids has no Meta custom audience for {audience!r}")
        return MetaCustomAudience(
            str(ids[audience]),
            _required(settings, "meta_access_token"),
            base_url=_setting(settings, "meta_graph_url", META_GRAPH_URL),
            version=_setting(settings, "meta_api_version", META_API_VERSION),
        )
    if platform == "google":
        lists = _setting(settings, "google_ads_user_list_ids", {}) or {}
        if audience not in lists:
            raise ConfigError(f"google_ads_user_list_ids has no user list for {audience!r}")
        token = _setting(settings, "google_ads_access_token")
        if not token:
            with httpx.Client(timeout=60.0) as client:
                token = refresh_access_token(
                    client,
                    _setting(settings, "google_oauth_token_url", GOOGLE_TOKEN_URL),
                    _required(settings, "google_ads_client_id"),
                    _required(settings, "google_ads_client_secret"),
                    _required(settings, "google_ads_refresh_token"),
                )
        return GoogleCustomerMatch(
            _required(settings, "google_ads_customer_id"),
            str(lists[audience]),
            developer_token=_required(settings, "google_ads_developer_token"),
            access_token=str(token),
            login_customer_id=_setting(settings, "google_ads_login_customer_id"),
            base_url=_setting(settings, "google_ads_url", GOOGLE_ADS_URL),
            version=_setting(settings, "google_ads_api_version", GOOGLE_ADS_API_VERSION),
        )
    raise ConfigError(f"unknown ad platform {platform!r} (meta or google)")
