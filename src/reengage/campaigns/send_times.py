"""Send-time optimisation: each contact's best hour of the week, and when that falls in a
campaign's window.

The best hour is the hour of the week (Monday 00h = 0 ... Sunday 23h = 167) at which the
contact most often opened, clicked or bought over the lookback, read on their own wall clock
(the contact's time zone, else the shop's). Signals, before `now` and within the lookback:

- a human open of one of our messages (`message_events` of type open whose properties do not
  say `"machine": true`: a privacy proxy's prefetch says nothing about the person);
- a human click (type click; machine-flagged clicks are ignored the same way);
- a valid order (the status of its latest-ingested line neither cancelled nor refunded, as
  the audience rules read it; counted once however many lines it has), when it was placed.

Each signal adds its weight (OPEN_WEIGHT, CLICK_WEIGHT, ORDER_WEIGHT) to its hour; the hour
with the most weight wins, ties going to the earliest hour from Monday 00h. A contact needs at
least `min_signals` signals for a personal hour; the others (prospects without a customer id
included) get the shop's hour: the same argmax over every signal of every customer, each at
its own local hour (the contacts given in their zone, customers not among them in the shop's).
With no signals at all, Tuesday 10:00 (DEFAULT_HOUR_OF_WEEK).

The message then goes at the first top of that local hour in [start, start + window): a wall
time skipped by a spring-forward change goes at the change (the first valid instant after
it), one that happens twice at the first of the two that is in the window. When the window
holds no such hour of the week (a window shorter than a week), the same hour of the day on
another weekday; when it holds neither (a window shorter than a day), at `start`.

Cost, for a million contacts: DuckDB reads the signals and ties each to its contact (one
join on customer_id); local hours are read off each zone's offsets over the lookback (found
once per zone present, then one binary search for all the signals), and the per-contact
argmax is one sort of packed integers. Sending instants come from one table per zone present
(the first instant of each of the 168 hours of the week and 24 of the day in the window), so
each contact costs a few array lookups. Quiet hours and caps are applied later by the
dispatcher. See docs/campaigns.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reengage.audience.behaviour import VOID_STATUSES
from reengage.channels.quiet_hours import wall_instants, zone_named
from reengage.clock import as_utc

OPEN_WEIGHT = 1  # a human open: they looked at the message
CLICK_WEIGHT = 3  # a human click: they acted on it
ORDER_WEIGHT = 5  # a valid order: they bought, the strongest sign they had time for the shop
DEFAULT_HOUR_OF_WEEK = 1 * 24 + 10  # Tuesday 10:00, when there is no signal at all
HOURS_PER_WEEK = 168

# a pyarrow Table or a pandas DataFrame (pandas is not a dependency: it is not imported here)
Contacts = Any

_NONE = np.iinfo(np.int64).max  # "no such instant" in the tables of microseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)  # a lookback reaching further stops here
_THURSDAY = 3 * 24  # the hour of the week of the epoch, 1970-01-01 00:00
_CUSTOMERS = "__send_times_customers"
_SCAN = 86_400  # seconds between two looks at a zone's offset: it changes at most once a day
_ZONE_SHIFT = 40  # a zone's index above the seconds (2**40 s: 34,000 years of lookback)
_WEIGHT_BITS = max(OPEN_WEIGHT, CLICK_WEIGHT, ORDER_WEIGHT).bit_length()


@dataclass(frozen=True)
class SendTimes:
    """One entry per contact, in the order they were given."""

    send_at: np.ndarray  # datetime64[us], UTC: when the message goes
    personal: np.ndarray  # bool: the hour came from the contact's own history
    hour_of_week: np.ndarray  # int16, 0..167 (Monday 00h = 0), local: the hour chosen


def best_send_times(
    facts: duckdb.DuckDBPyConnection,
    contacts: Contacts,
    *,
    start: datetime,
    window: timedelta,
    shop_zone: ZoneInfo,
    now: datetime,
    lookback: timedelta = timedelta(days=365),
    min_signals: int = 3,
) -> SendTimes:
    """When each contact's message goes: at their best hour of the week, local time, within
    [start, start + window).

    `facts` is a connection `facts.reader.connect` made; `contacts` has the columns
    customer_id (null for a prospect) and timezone (an IANA name; null or unknown means the
    shop's zone), one row per contact (contact_id, when present, is not read). Signals count
    when they happened in [now - lookback, now); a contact needs `min_signals` of them for
    an hour of their own.
    """
    if window <= timedelta(0):
        raise ValueError(f"the send window must be longer than zero, not {window}")
    if lookback < timedelta(0):
        raise ValueError(f"the lookback cannot be negative, not {lookback}")
    if min_signals < 1:
        raise ValueError(f"min_signals must be at least 1, not {min_signals}")
    start, now = as_utc(start), as_utc(now)
    low = now - lookback if now - _EARLIEST > lookback else min(_EARLIEST, now)
    table = _as_table(contacts)
    count = table.num_rows
    zone_of, zones = _zones(table.column("timezone"), shop_zone)
    customer_of, customers = _encoded(table.column("customer_id"))  # -1: a prospect

    own, signals = _hours(facts, customers, customer_of, zone_of, zones, low, now)
    best, per_customer, shop = _tally(own, signals, len(customers))
    shop_best = int(np.argmax(shop)) if shop.any() else DEFAULT_HOUR_OF_WEEK

    hour = np.full(count, shop_best, np.int16)
    personal = np.zeros(count, bool)
    if len(customers):
        index = np.maximum(customer_of, 0)
        personal = (customer_of >= 0) & (per_customer[index] >= min_signals)
        hour[personal] = best[index[personal]]

    end = start + window
    week = np.empty((len(zones), HOURS_PER_WEEK), np.int64)
    day = np.empty((len(zones), 24), np.int64)
    for i, zone in enumerate(zones):
        week[i], day[i] = _first_instants(zone, start, end)
    at = week[zone_of, hour]
    missing = at == _NONE
    at[missing] = day[zone_of[missing], hour[missing] % 24]
    at[at == _NONE] = _micros(start)
    return SendTimes(send_at=at.astype("datetime64[us]"), personal=personal, hour_of_week=hour)


# --- the contacts -------------------------------------------------------------------------


def _as_table(contacts: Contacts) -> pa.Table:
    table = contacts if isinstance(contacts, pa.Table) else pa.Table.from_pandas(contacts)
    missing = [c for c in ("customer_id", "timezone") if c not in table.column_names]
    if missing:
        raise ValueError(f"the contacts need the column(s) {', '.join(missing)}")
    return table


def _encoded(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Each value's index into the distinct values (-1 for null), and those values."""
    encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return indices, encoded.dictionary


def _zones(column: pa.ChunkedArray, shop_zone: ZoneInfo) -> tuple[np.ndarray, list[ZoneInfo]]:
    """Each contact's zone as an index into the zones present, the shop's first (and for
    contacts with no zone, or one that is not an IANA name)."""
    indices, names = _encoded(column)
    zones = [shop_zone]
    position = {shop_zone: 0}
    remap = np.zeros(len(names) + 1, np.int64)  # the last entry: null
    for i, name in enumerate(names.to_pylist()):
        zone = zone_named(name)
        if zone is not None:
            remap[i] = position.setdefault(zone, len(zones))
            if remap[i] == len(zones):
                zones.append(zone)
    return remap[indices], zones


# --- the signals --------------------------------------------------------------------------


def _signals_sql() -> str:
    """customer_id, moment and weight of every signal in [$low, $now)."""
    void = ", ".join(f"'{s}'" for s in VOID_STATUSES)
    # Only a text holding "true" can say machine: true, so most rows skip the JSON parse.
    return f"""
        SELECT customer_id, occurred_at AS moment,
               CASE type WHEN 'click' THEN {CLICK_WEIGHT} ELSE {OPEN_WEIGHT} END AS weight
        FROM message_events
        WHERE type IN ('open', 'click') AND customer_id IS NOT NULL
          AND occurred_at >= $low AND occurred_at < $now
          AND (properties IS NULL OR NOT contains(properties, 'true')
               OR coalesce(json_extract_string(properties, '$.machine'), 'false') <> 'true')
        UNION ALL
        SELECT customer_id, moment, {ORDER_WEIGHT} FROM (
          SELECT max(customer_id) AS customer_id, min(ordered_at) AS moment,
                 arg_max(status, ingested_at) AS status
          FROM orders
          WHERE ordered_at >= $low AND ordered_at < $now AND customer_id IS NOT NULL
          GROUP BY order_id)
        WHERE status NOT IN ({void})"""


@dataclass(frozen=True)
class _Signals:
    customer: np.ndarray  # index into the distinct customers of the contacts; -1: another
    hour: np.ndarray  # local hour of the week
    weight: np.ndarray


def _hours(
    facts: duckdb.DuckDBPyConnection,
    customers: pa.Array,
    customer_of: np.ndarray,
    zone_of: np.ndarray,
    zones: list[ZoneInfo],
    low: datetime,
    now: datetime,
) -> tuple[_Signals, _Signals]:
    """Every signal at its local hour of the week: those of the contacts' customers (in the
    zone of the customer's first contact), and all of them (customers who are not among the
    contacts in the shop's zone)."""
    n = len(customers)
    rows = np.flatnonzero(customer_of >= 0)
    found, first = np.unique(customer_of[rows], return_index=True)
    zone = np.zeros(n, np.int16)
    zone[found] = zone_of[rows[first]]
    lookup = pa.table(
        {
            "customer_id": customers,
            "k": pa.array(np.arange(n, dtype=np.int32)),
            "zone": pa.array(zone),
        }
    )
    query = f"""
        SELECT coalesce(c.k, -1) AS k, coalesce(c.zone, 0)::SMALLINT AS zone,
               epoch_us(s.moment) AS us, s.weight::TINYINT AS weight
        FROM ({_signals_sql()}) AS s LEFT JOIN {_CUSTOMERS} AS c USING (customer_id)"""
    facts.register(_CUSTOMERS, lookup)
    try:
        got = facts.execute(query, {"low": low, "now": now}).fetchnumpy()
    finally:
        facts.unregister(_CUSTOMERS)
    k = np.asarray(got["k"], np.int64)
    seconds = np.asarray(got["us"], np.int64) // 1_000_000
    hour = _local_hours(seconds, np.asarray(got["zone"], np.int64), zones)
    weight = np.asarray(got["weight"], np.int64)
    mine = k >= 0
    return _Signals(k[mine], hour[mine], weight[mine]), _Signals(k, hour, weight)


def _local_hours(seconds: np.ndarray, zone: np.ndarray, zones: list[ZoneInfo]) -> np.ndarray:
    """The hour of the week each instant (seconds since the epoch) shows on the wall clock of
    its zone (an index into `zones`): the offset of each zone over the span of the instants,
    then one binary search for all of them, on keys (zone, seconds since the first)."""
    if not len(seconds):
        return np.zeros(0, np.int64)
    first, last = int(seconds.min()), int(seconds.max())
    keys: list[int] = []
    offsets: list[int] = []
    for i in np.unique(zone).tolist():
        for since, offset in _offsets(zones[i], first, last):
            keys.append((i << _ZONE_SHIFT) + since - first)
            offsets.append(offset)
    at = np.searchsorted(np.array(keys), (zone << _ZONE_SHIFT) + seconds - first, side="right")
    local = seconds + np.array(offsets, np.int64)[at - 1]
    return (local // 3600 + _THURSDAY) % HOURS_PER_WEEK


def _offsets(zone: ZoneInfo, first: int, last: int) -> list[tuple[int, int]]:
    """The zone's UTC offset (seconds) over [first, last] (seconds since the epoch): from
    `first` on, then from each change, found by looking once a day and halving the day that
    holds a change down to the second."""

    def offset(second: int) -> int:
        delta = datetime.fromtimestamp(second, zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    found = [(first, offset(first))]
    at = first
    while at < last:
        ahead = min(at + _SCAN, last)
        if offset(ahead) == found[-1][1]:
            at = ahead
            continue
        before, after = at, ahead
        while after - before > 1:
            middle = (before + after) // 2
            if offset(middle) == found[-1][1]:
                before = middle
            else:
                after = middle
        found.append((after, offset(after)))
        at = after
    return found


def _tally(own: _Signals, every: _Signals, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, the heaviest hour of the week (the earliest of equals) and how many
    signals they have; the shop's weight per hour of the week."""
    best = np.zeros(n, np.int16)
    shop = np.bincount(every.hour, weights=every.weight, minlength=HOURS_PER_WEEK)
    per_customer = np.bincount(own.customer, minlength=n)
    if not len(own.customer):
        return best, per_customer, shop
    # one sort of (customer, hour, weight) packed in an int64, the weight in the low bits
    packed = np.sort(((own.customer * HOURS_PER_WEEK + own.hour) << _WEIGHT_BITS) | own.weight)
    key, weight = packed >> _WEIGHT_BITS, packed & ((1 << _WEIGHT_BITS) - 1)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    total, key = np.add.reduceat(weight, starts), key[starts]
    customer, hour = key // HOURS_PER_WEEK, key % HOURS_PER_WEEK
    # the argmax of weight * 256 + (255 - hour): the heaviest, then the earliest hour
    score = total * 256 + 255 - hour
    firsts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]])
    best[customer[firsts]] = 255 - np.maximum.reduceat(score, firsts) % 256
    return best, per_customer, shop


# --- placing the hour in the window -------------------------------------------------------


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _first_instants(zone: ZoneInfo, start: datetime, end: datetime) -> tuple[np.ndarray, ...]:
    """For each local hour of the week (168) and of the day (24), the first instant in
    [start, end) at which the zone's wall clock shows the top of that hour, in microseconds
    since the epoch; _NONE where the window holds none.

    Wall hours are walked from just before the one holding `start` for a week and a few
    hours: every hour of the week shows up again within that, so the first of each is seen.
    A skipped wall hour counts at the change; a repeated one at both instants (the first in
    the window wins).
    """
    week = np.full(HOURS_PER_WEEK, _NONE, np.int64)
    day = np.full(24, _NONE, np.int64)
    local = start.astimezone(zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    for step in range(-3, HOURS_PER_WEEK + 4):
        wall = local + timedelta(hours=step)
        instants = wall_instants(wall.date(), wall.time(), zone)
        if instants[0] >= end:
            break
        how = wall.weekday() * 24 + wall.hour
        for instant in instants:
            if start <= instant < end:
                at = _micros(instant)
                week[how] = min(week[how], at)
                day[wall.hour] = min(day[wall.hour], at)
    return week, day
