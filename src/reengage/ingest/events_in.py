"""Events as the web collector receives them (JSON, or a pixel's query string), checked
with the rules of the CSV import (docs/formats.md) and turned into journal records.

A journal record is a flat dict ready to be stored: its final `event_id` (the client's, or
one made here, so that replaying the journal stores it once), the time as microseconds since
1970 (`occurred_us`), `properties` as JSON text, and the visitor's email apart (`email`,
taken out of `properties.email`: it goes to the state, never into the facts). Absent values
are left out.

Reasons name the field and what was expected, never the value (it may be personal data).
Unknown top-level fields are rejected rather than ignored: a misspelt `occured_at` or
`product` would otherwise be lost without a word; anything extra belongs in `properties`.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from reengage.ingest.vocabulary import EVENT_TYPES

Record = dict[str, Any]

ID_FIELDS = ("event_id", "customer_id", "anonymous_id", "product_id", "session_id")
TEXT_FIELDS = ("source", "device")
FIELDS = frozenset((*ID_FIELDS, *TEXT_FIELDS, "type", "occurred_at", "duration_s", "properties"))
# an identity's value is at most 320 characters in the state; ids are kept well under
MAX_ID = 256
MAX_TEXT = 64
MAX_EMAIL = 320
# a browser's clock may run ahead; further than this is a broken clock, not a time zone
FUTURE_SLACK = timedelta(days=1)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2101, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")

BAD_TYPE = "type: unknown event type (the vocabulary is in docs/formats.md)"
BAD_TIME = (
    "occurred_at: not a date (ISO 8601 such as 2026-03-01T14:05:00Z, or milliseconds since 1970)"
)
NO_PERSON = "customer_id or anonymous_id: one of them is required"
IDENTIFY_NOBODY = "customer_id or properties.email: an identify event needs one of them"

# The pixel's short query parameters and the fields they fill; `p.<name>` fills
# properties.<name>; any other parameter (a cache-buster) is ignored.
PIXEL_PARAMETERS = {
    "e": "type",
    "type": "type",
    "aid": "anonymous_id",
    "anonymous_id": "anonymous_id",
    "cid": "customer_id",
    "customer_id": "customer_id",
    "pid": "product_id",
    "product_id": "product_id",
    "sid": "session_id",
    "session_id": "session_id",
    "eid": "event_id",
    "event_id": "event_id",
    "src": "source",
    "source": "source",
    "dev": "device",
    "device": "device",
    "d": "duration_s",
    "duration_s": "duration_s",
}
PROPERTY_PREFIX = "p."
_properties = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def new_event_id() -> str:
    """An id for an event its sender gave none: unique, made before the event is journaled."""
    return "w-" + uuid.uuid4().hex


def _time(value: object, zone: ZoneInfo) -> datetime | None:
    """An aware instant from ISO 8601 text (without an offset: the shop's zone, as the CSV
    import reads it) or from milliseconds since 1970; None when it is neither."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            if not math.isfinite(value):
                return None
            at = EARLIEST + timedelta(milliseconds=value)
        elif isinstance(value, str):
            at = datetime.fromisoformat(value.strip())
            at = at.replace(tzinfo=zone) if at.tzinfo is None else at
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return at if EARLIEST <= at < LATEST else None


def check_event(raw: object, now: datetime, zone: ZoneInfo) -> Record | str:
    """The journal record of one event, or the reason it is rejected.

    `now` is when it was received: the time of an event that says none, and the bound a
    time may not pass by more than FUTURE_SLACK. (Written for speed: it runs for every event
    the collector takes in.)
    """
    if not isinstance(raw, dict):
        return "not an event object"
    if not FIELDS.issuperset(raw):
        return f"{min(raw.keys() - FIELDS)}: unknown field (anything else goes in properties)"
    record: Record = {}
    get = raw.get
    for name in ID_FIELDS:
        value = get(name)
        if value is None:
            continue
        if type(value) is not str:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{name}: not text"
            value = str(value)
        text = value.strip()
        if len(text) > MAX_ID:
            return f"{name}: longer than {MAX_ID} characters"
        if text:
            record[name] = text

    kind = get("type")
    if kind is None or kind == "":
        return "type: missing"
    if (type(kind) is not str or kind not in EVENT_TYPES) and (
        not isinstance(kind, str) or (kind := kind.strip().lower()) not in EVENT_TYPES
    ):
        return BAD_TYPE
    record["type"] = kind

    when = get("occurred_at")
    if when is None or when == "":
        at = now
    else:
        found = _time(when, zone)
        if found is None:
            return BAD_TIME
        if found > now + FUTURE_SLACK:
            return "occurred_at: more than a day in the future"
        at = found
    record["occurred_us"] = (at - EARLIEST) // ONE_US

    for name in TEXT_FIELDS:
        value = get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            return f"{name}: not a short text"
        if value := value.strip().lower():
            record[name] = value

    duration = get("duration_s")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            return "duration_s: not a number"
        if not math.isfinite(duration) or duration < 0:
            return "duration_s: negative or not finite"
        record["duration_s"] = float(duration)

    properties = get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            return "properties: not a JSON object"
        if "email" in properties:
            properties = dict(properties)
            email = properties.pop("email")
            if email is not None:
                if (
                    not isinstance(email, str)
                    or len(email) > MAX_EMAIL
                    or not EMAIL.fullmatch(email.strip())
                ):
                    return "properties.email: not an email address"
                record["email"] = email.strip().lower()
        if properties:
            record["properties"] = _properties(properties)

    if "customer_id" not in record and "anonymous_id" not in record:
        return NO_PERSON
    if kind == "identify" and "customer_id" not in record and "email" not in record:
        return IDENTIFY_NOBODY
    if "event_id" not in record:
        record["event_id"] = new_event_id()
    return record


def check_batch(
    events: list[object], now: datetime, zone: ZoneInfo
) -> tuple[list[Record], list[dict[str, Any]]]:
    """(the records of the good events, {"index", "reason"} of each bad one)."""
    good: list[Record] = []
    bad: list[dict[str, Any]] = []
    for index, raw in enumerate(events):
        checked = check_event(raw, now, zone)
        if isinstance(checked, str):
            bad.append({"index": index, "reason": checked})
        else:
            good.append(checked)
    return good, bad


def pixel_event(params: Mapping[str, str], now: datetime, zone: ZoneInfo) -> Record | str:
    """The record of the event a pixel's query string describes, or why there is none.

    The pixel's time is when it was fetched: a query string cannot be trusted to say more.
    """
    raw: dict[str, Any] = {}
    properties: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith(PROPERTY_PREFIX) and len(key) > len(PROPERTY_PREFIX):
            properties[key[len(PROPERTY_PREFIX) :]] = value
        elif (name := PIXEL_PARAMETERS.get(key)) is not None:
            raw[name] = value
    if "duration_s" in raw:
        try:
            raw["duration_s"] = float(raw["duration_s"])
        except ValueError:
            return "duration_s: not a number"
    if properties:
        properties.pop("email", None)  # an address never travels in a URL: it would be logged
        raw["properties"] = properties
    return check_event(raw, now, zone)
