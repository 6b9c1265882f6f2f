"""Send the queued conversion events to Meta and Google, in batches, with retries, and record
every outcome on its `conversion_sends` row (status, reason, attempts, sent_at).

Meta Conversions API:
    POST {graph}/{version}/{pixel_id}/events
  form fields `data` = JSON list of server events (at most 1,000 a request), `access_token`,
  and `test_event_code` when set. One bad event fails the whole request (Meta's rule).

Google Ads API (REST, ConversionUploadService, enhanced conversions for leads):
    POST {ads}/{version}/customers/{customer_id}:uploadClickConversions
         {"conversions": [ClickConversion, ...], "partialFailure": true}
  at most 2,000 conversions a request, with `Authorization: Bearer <OAuth access token>`,
  `developer-token` and, for a manager account, `login-customer-id`, as the audiences do.
  A conversion refused under partial failure is named by its index in
  `partialFailureError.details[].errors[].location.fieldPathElements`; the others are sent.

A 429, a 5xx, a network error or an error Meta marks transient is tried again at once with
exponential backoff (`tries` times); still failing, the rows stay queued for the next run
until they have been tried MAX_ATTEMPTS times, then fail. Any other error fails its rows with
the platform's error type, code and message (which never carry the identifiers: only hashes
were sent). Before sending, consent is checked again, and events older than the platform
accepts (Meta 7 days, Google 90) are skipped.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine, select

from reengage.channels.ad_platforms import (
    GOOGLE_TOKEN_URL,
    read_error,
    refresh_access_token,
)
from reengage.channels.audiences import ads_consent
from reengage.clock import Clock, as_utc
from reengage.config import Settings
from reengage.errors import ReengageError
from reengage.retarget.conversions import GOOGLE, META, NO_CONSENT, platforms
from reengage.state.contacts import chunks
from reengage.state.schema import conversion_sends

META_BATCH = 1_000
GOOGLE_BATCH = 2_000
MAX_ATTEMPTS = 10
OLDEST = {META: timedelta(days=7), GOOGLE: timedelta(days=90)}
REASON_LIMIT = 500


class SendError(ReengageError):
    """A platform refused a request; temporary when trying again may work."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


def _error(platform: str, response: httpx.Response) -> SendError:
    found = read_error(platform, response)
    text = f"{platform} answered {found.status}"
    if found.detail:
        text += f" ({found.detail})"
    if found.message:
        text += f": {found.message[:300]}"
    return SendError(text[:REASON_LIMIT], temporary=found.temporary)


def _call(client: httpx.Client, platform: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = client.post(url, **kwargs)
    except httpx.TransportError as exc:
        raise SendError(f"{platform} unreachable ({type(exc).__name__})", temporary=True) from None
    if not 200 <= response.status_code < 300:
        raise _error(platform, response)
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class ConversionPlatform(Protocol):
    name: str
    batch: int

    def send(self, events: Sequence[dict[str, Any]]) -> dict[int, str]:
        """Send one batch; the events refused (index: reason). Raises SendError when the
        whole request failed."""
        ...


class MetaConversions:
    name = META
    batch = META_BATCH

    def __init__(
        self,
        pixel_id: str,
        access_token: str,
        *,
        base_url: str,
        version: str,
        test_event_code: str | None,
        client: httpx.Client,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{version}/{pixel_id}/events"
        self._token = access_token
        self._test = test_event_code
        self._client = client

    def send(self, events: Sequence[dict[str, Any]]) -> dict[int, str]:
        form = {"data": json.dumps(list(events)), "access_token": self._token}
        if self._test:
            form["test_event_code"] = self._test
        _call(self._client, self.name, self.url, data=form)
        return {}  # Meta takes a request whole or refuses it whole


class GoogleConversions:
    name = GOOGLE
    batch = GOOGLE_BATCH

    def __init__(
        self,
        customer_id: str,
        *,
        developer_token: str,
        access_token: str,
        login_customer_id: str | None,
        base_url: str,
        version: str,
        client: httpx.Client,
    ) -> None:
        customer = customer_id.replace("-", "")
        self.url = f"{base_url.rstrip('/')}/{version}/customers/{customer}:uploadClickConversions"
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "developer-token": developer_token,
        }
        if login_customer_id:
            self._headers["login-customer-id"] = login_customer_id.replace("-", "")
        self._client = client

    def send(self, events: Sequence[dict[str, Any]]) -> dict[int, str]:
        body = _call(
            self._client,
            self.name,
            self.url,
            json={"conversions": list(events), "partialFailure": True},
            headers=self._headers,
        )
        return partial_failures(body, len(events))


def partial_failures(body: dict[str, Any], count: int) -> dict[int, str]:
    """The conversions a partial-failure answer refused, by index, with Google's error."""
    failure = body.get("partialFailureError")
    if not isinstance(failure, dict) or not failure:
        return {}
    refused: dict[int, str] = {}
    for detail in failure.get("details") or []:
        for error in (detail or {}).get("errors") or []:
            index = None
            for element in ((error.get("location") or {}).get("fieldPathElements")) or []:
                if element.get("fieldName") == "conversions" and "index" in element:
                    index = int(element["index"])
                    break
            if index is None or not 0 <= index < count:
                continue
            codes = error.get("errorCode") or {}
            code = " ".join(f"{k}={v}" for k, v in codes.items()) if isinstance(codes, dict) else ""
            text = f"google refused ({code}): {error.get('message') or ''}".strip()
            refused.setdefault(index, text[:REASON_LIMIT])
    if not refused:  # an answer we cannot place: every conversion of the batch is in doubt
        text = f"google refused ({failure.get('code')}): {failure.get('message') or ''}"
        refused = {i: text[:REASON_LIMIT] for i in range(count)}
    return refused


def _google_token(settings: Settings, client: httpx.Client) -> str:
    if settings.google_ads_access_token:
        return settings.google_ads_access_token
    missing = [
        n
        for n in ("google_ads_client_id", "google_ads_client_secret", "google_ads_refresh_token")
        if not getattr(settings, n)
    ]
    if missing:
        raise SendError(
            f"google conversions need google_ads_access_token or {', '.join(missing)}",
            temporary=False,
        )
    return refresh_access_token(
        client,
        settings.google_oauth_token_url or GOOGLE_TOKEN_URL,
        str(settings.google_ads_client_id),
        str(settings.google_ads_client_secret),
        str(settings.google_ads_refresh_token),
    )


def platform_for(settings: Settings, name: str, client: httpx.Client) -> ConversionPlatform:
    if name == META:
        return MetaConversions(
            str(settings.meta_pixel_id),
            str(settings.meta_access_token),
            base_url=settings.meta_graph_url,
            version=settings.meta_api_version,
            test_event_code=settings.meta_test_event_code,
            client=client,
        )
    if not settings.google_ads_developer_token:
        raise SendError("google conversions need google_ads_developer_token", temporary=False)
    return GoogleConversions(
        str(settings.google_ads_customer_id),
        developer_token=settings.google_ads_developer_token,
        access_token=_google_token(settings, client),
        login_customer_id=settings.google_ads_login_customer_id,
        base_url=settings.google_ads_url,
        version=settings.google_ads_api_version,
        client=client,
    )


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0  # still queued after a temporary failure
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _with_retries(
    send: Callable[[], dict[int, str]],
    *,
    tries: int,
    sleep: Callable[[float], None],
    base_delay: float,
    summary: SendSummary,
) -> tuple[dict[int, str] | SendError, int]:
    """The batch's refusals, or the last error; and how many requests it took."""
    attempt = 0
    while True:
        attempt += 1
        summary.requests += 1
        try:
            return send(), attempt
        except SendError as exc:
            if not exc.temporary or attempt >= tries:
                return exc, attempt
            sleep(min(base_delay * 2 ** (attempt - 1), 60.0))


def _update(conn: Any, row_id: int, **values: Any) -> None:
    conn.execute(conversion_sends.update().where(conversion_sends.c.id == row_id).values(**values))


def send_conversions(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    *,
    batch: int | None = None,
    tries: int = 4,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = 50_000,
    client: httpx.Client | None = None,
) -> SendSummary:
    """Send the queued events to every configured platform (at most `limit` a platform)."""
    summary = SendSummary()
    http = client or httpx.Client(timeout=60.0)
    try:
        for name in platforms(settings):
            _send_platform(
                settings, engine, clock, name, http, batch, tries, base_delay, sleep, limit, summary
            )
    finally:
        if client is None:
            http.close()
    return summary


def _send_platform(
    settings: Settings,
    engine: Engine,
    clock: Clock,
    name: str,
    http: httpx.Client,
    batch: int | None,
    tries: int,
    base_delay: float,
    sleep: Callable[[float], None],
    limit: int,
    summary: SendSummary,
) -> None:
    now = as_utc(clock.now())
    with engine.begin() as conn:
        rows = conn.execute(
            select(
                conversion_sends.c.id,
                conversion_sends.c.contact_id,
                conversion_sends.c.occurred_at,
                conversion_sends.c.attempts,
                conversion_sends.c.payload,
            )
            .where(conversion_sends.c.platform == name, conversion_sends.c.status == "queued")
            .order_by(conversion_sends.c.id)
            .limit(limit)
        ).all()
        if not rows:
            return
        consent = ads_consent(conn, sorted({r.contact_id for r in rows if r.contact_id}))
        ready = []
        for r in rows:
            allowed = r.contact_id in consent and consent[r.contact_id].allowed
            if not allowed:  # withdrawn since it was queued, or the contact was erased
                _update(conn, r.id, status="skipped", reason=NO_CONSENT, payload={})
                summary.skipped += 1
            elif as_utc(r.occurred_at) < now - OLDEST[name]:
                reason = f"older than {name} accepts ({OLDEST[name].days} days)"
                _update(conn, r.id, status="skipped", reason=reason)
                summary.skipped += 1
            else:
                ready.append(r)
    if not ready:
        return
    platform = platform_for(settings, name, http)
    size = max(1, min(batch or platform.batch, platform.batch))
    for part in chunks(ready, size):
        payloads = [r.payload for r in part]
        outcome, attempts = _with_retries(
            functools.partial(platform.send, payloads),
            tries=tries,
            sleep=sleep,
            base_delay=base_delay,
            summary=summary,
        )
        done = as_utc(clock.now())
        with engine.begin() as conn:
            for index, r in enumerate(part):
                total = r.attempts + attempts
                if isinstance(outcome, SendError):
                    if outcome.temporary and total < MAX_ATTEMPTS:
                        _update(conn, r.id, attempts=total, reason=str(outcome))
                        summary.retrying += 1
                    else:
                        _update(conn, r.id, status="failed", attempts=total, reason=str(outcome))
                        summary.failed += 1
                elif index in outcome:
                    _update(conn, r.id, status="failed", attempts=total, reason=outcome[index])
                    summary.failed += 1
                else:
                    _update(conn, r.id, status="sent", attempts=total, reason=None, sent_at=done)
                    summary.sent += 1


def _describe(moment: datetime) -> str:
    return as_utc(moment).isoformat()


def list_sends(
    engine: Engine, *, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The latest recorded sends (newest first), without payloads."""
    query = select(
        conversion_sends.c.id,
        conversion_sends.c.platform,
        conversion_sends.c.event_name,
        conversion_sends.c.event_id,
        conversion_sends.c.contact_id,
        conversion_sends.c.occurred_at,
        conversion_sends.c.status,
        conversion_sends.c.reason,
        conversion_sends.c.attempts,
        conversion_sends.c.sent_at,
    ).order_by(conversion_sends.c.id.desc())
    if status:
        query = query.where(conversion_sends.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).all()
    out = []
    for r in rows:
        item = dict(r._mapping)
        item["occurred_at"] = _describe(r.occurred_at)
        item["sent_at"] = _describe(r.sent_at) if r.sent_at else None
        out.append(item)
    return out
