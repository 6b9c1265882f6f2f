"""Send-time optimisation: each contact's best hour of the week in their own zone, the shop's
hour for those with little history, and the first such hour within the campaign's window,
right across DST. Facts are written through the facts writer, as the product writes them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reengage.campaigns import send_times
from reengage.campaigns.send_times import (
    CLICK_WEIGHT,
    DEFAULT_HOUR_OF_WEEK,
    OPEN_WEIGHT,
    ORDER_WEIGHT,
    SendTimes,
    best_send_times,
)
from reengage.facts import reader
from reengage.facts.kinds import MESSAGE_EVENTS, ORDERS
from reengage.facts.writer import append

ROME, NEW_YORK, TOKYO = (
    ZoneInfo("Europe/Rome"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Tokyo"),
)
NOW = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)  # a Monday; no DST change near it anywhere here
H = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
_ids = itertools.count()


def how(weekday: int, hour: int) -> int:
    """Hour of the week: Monday 00h = 0."""
    return weekday * 24 + hour


def local(zone: ZoneInfo, *args: int) -> datetime:
    """The UTC instant of a wall time in the zone."""
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def weekly(zone: ZoneInfo, weekday: int, hour: int, weeks: int, minute: int = 30) -> list[datetime]:
    """The last `weeks` wall times at weekday/hour:minute before NOW, in the zone."""
    day = NOW.astimezone(zone).date()
    day -= timedelta(days=(day.weekday() - weekday) % 7 or 7)
    return [
        datetime(d.year, d.month, d.day, hour, minute, tzinfo=zone).astimezone(UTC)
        for d in (day - k * WEEK for k in range(weeks))
    ]


@dataclass
class Facts:
    root: Path
    events: list[dict[str, object]] = field(default_factory=list)
    lines: list[dict[str, object]] = field(default_factory=list)

    def message(
        self, customer: str, times: list[datetime], kind: str = "open", machine: bool = False
    ) -> None:
        for at in times:
            self.events.append(
                {
                    "event_id": f"e{next(_ids)}",
                    "message_id": str(next(_ids)),
                    "customer_id": customer,
                    "channel": "email",
                    "type": kind,
                    "occurred_at": at,
                    "properties": json.dumps({"machine": machine}),
                }
            )

    def order(
        self, customer: str, at: datetime, status: str = "paid", lines: int = 1, order: str = ""
    ) -> str:
        order = order or f"o{next(_ids)}"
        for i in range(lines):
            self.lines.append(
                {
                    "line_id": f"{order}-{i}-{status}",
                    "order_id": order,
                    "customer_id": customer,
                    "ordered_at": at,
                    "product_id": f"p{i}",
                    "quantity": 1,
                    "unit_price": 10.0,
                    "currency": "EUR",
                    "discount": 0.0,
                    "coupon_code": None,
                    "status": status,
                }
            )
        return order

    def write(self, ingested_at: datetime = NOW) -> None:
        for kind, rows in ((MESSAGE_EVENTS, self.events), (ORDERS, self.lines)):
            if rows:
                schema = pa.schema([f for f in kind.schema if f.name != "ingested_at"])
                append(self.root, kind, pa.Table.from_pylist(rows, schema), ingested_at=ingested_at)
        self.events, self.lines = [], []

    def connect(self) -> duckdb.DuckDBPyConnection:
        self.write()
        return reader.connect(self.root)


@pytest.fixture
def facts(tmp_path: Path) -> Facts:
    return Facts(tmp_path / "facts")


def contacts(*rows: tuple[str | None, str | None]) -> pa.Table:
    return pa.table(
        {
            "contact_id": pa.array(range(1, len(rows) + 1), pa.int64()),
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "timezone": pa.array([r[1] for r in rows], pa.string()),
        }
    )


def run(
    facts: Facts,
    who: pa.Table,
    *,
    start: datetime = NOW,
    window: timedelta = WEEK,
    shop_zone: ZoneInfo = ROME,
    now: datetime = NOW,
    **options: Any,
) -> SendTimes:
    con = facts.connect()
    try:
        return best_send_times(
            con, who, start=start, window=window, shop_zone=shop_zone, now=now, **options
        )
    finally:
        con.close()


def instants(chosen: SendTimes) -> list[datetime]:
    return [t.replace(tzinfo=UTC) for t in chosen.send_at.astype(datetime).tolist()]


# --- the hour chosen ----------------------------------------------------------------------


def test_the_same_local_hour_in_three_zones_goes_at_three_instants(facts: Facts) -> None:
    for customer, zone in (("R", ROME), ("N", NEW_YORK), ("T", TOKYO)):
        facts.message(customer, weekly(zone, 2, 19, weeks=5))  # Wednesdays 19:30 local
    got = run(facts, contacts(("R", "Europe/Rome"), ("N", "America/New_York"), ("T", "Asia/Tokyo")))
    assert got.hour_of_week.tolist() == [how(2, 19)] * 3
    assert got.personal.tolist() == [True] * 3
    assert got.send_at.dtype == np.dtype("datetime64[us]")
    assert instants(got) == [
        local(ROME, 2026, 1, 14, 19),  # 18:00 UTC
        local(NEW_YORK, 2026, 1, 14, 19),  # 00:00 UTC on Thursday
        local(TOKYO, 2026, 1, 14, 19),  # 10:00 UTC
    ]
    assert len(set(instants(got))) == 3


def test_a_contact_without_a_zone_lives_by_the_shop_clock(facts: Facts) -> None:
    facts.message("A", weekly(TOKYO, 4, 8, weeks=3))  # Friday 08:30 in Tokyo...
    facts.message("B", weekly(TOKYO, 4, 8, weeks=3))
    got = run(
        facts,
        contacts(("A", None), ("B", "Mars/Olympus_Mons")),
        shop_zone=NEW_YORK,
        window=2 * WEEK,
    )
    # ... is Thursday 18:30 in New York (UTC-5, Tokyo UTC+9)
    assert got.hour_of_week.tolist() == [how(3, 18)] * 2
    assert instants(got) == [local(NEW_YORK, 2026, 1, 15, 18)] * 2


def test_signals_across_a_dst_change_count_at_their_local_hour(facts: Facts) -> None:
    """Wednesdays at 19:30 in Rome from February to April: 18:30 UTC before the
    spring-forward, 17:30 UTC after it, 19h on the wall clock all along; and 19:30 in Kolkata
    (UTC+5:30) is 14:00 UTC, 19h there."""
    spring = datetime(2026, 4, 20, tzinfo=UTC)
    wednesdays = [datetime(2026, 2, 25, 19, 30, tzinfo=ROME) + k * WEEK for k in range(8)]
    assert {w.astimezone(UTC).hour for w in wednesdays} == {17, 18}
    facts.message("R", [w.astimezone(UTC) for w in wednesdays])
    kolkata = ZoneInfo("Asia/Kolkata")
    facts.message("K", [datetime(2026, 4, 1, 19, 30, tzinfo=kolkata) + k * WEEK for k in range(3)])
    got = run(
        facts, contacts(("R", "Europe/Rome"), ("K", "Asia/Kolkata")), now=spring, start=spring
    )
    assert got.hour_of_week.tolist() == [how(2, 19)] * 2
    assert got.personal.tolist() == [True, True]
    assert instants(got) == [local(ROME, 2026, 4, 22, 19), local(kolkata, 2026, 4, 22, 19)]


def test_local_hours_agree_with_the_zone_database() -> None:
    """The offsets found by looking once a day give every instant the hour of the week the
    zone database gives it, right at the changes too."""
    rng = np.random.default_rng(7)
    zones = [ZoneInfo(name) for name in ZONES]
    low = int(datetime(2019, 6, 1, tzinfo=UTC).timestamp())
    high = int(datetime(2027, 6, 1, tzinfo=UTC).timestamp())
    seconds = [rng.integers(low, high, 20_000)]
    zone = [rng.integers(0, len(zones), 20_000)]
    # and every minute of the hour either side of each change of each zone, and the seconds
    # either side of the hour and the half hour
    changes = np.array([int(at.timestamp()) for _, at in ZONE_CHANGES])
    changing = np.array([i for i, _ in ZONE_CHANGES])
    for delta in [*range(-3600, 3601, 60), -1801, -1799, -1, 1, 1799, 1801]:
        seconds.append(changes + delta)
        zone.append(changing)
    everything, zone_of = np.concatenate(seconds), np.concatenate(zone)
    got = send_times._local_hours(everything, zone_of, zones)
    walls = [
        datetime.fromtimestamp(int(s), zones[z]) for s, z in zip(everything, zone_of, strict=True)
    ]
    assert got.tolist() == [how(w.weekday(), w.hour) for w in walls]


def test_machine_opens_and_clicks_count_for_nothing(facts: Facts) -> None:
    facts.message("A", weekly(ROME, 3, 8, weeks=3))  # Thursday 08h, a person
    facts.message("A", weekly(ROME, 0, 3, weeks=10), machine=True)  # Monday 03h, a proxy
    facts.message("A", weekly(ROME, 0, 4, weeks=10), "click", machine=True)
    facts.message("B", weekly(ROME, 0, 3, weeks=10), machine=True)  # only proxies
    got = run(facts, contacts(("A", "Europe/Rome"), ("B", "Europe/Rome")))
    assert got.hour_of_week.tolist() == [how(3, 8)] * 2  # B gets the shop's: A's hour
    assert got.personal.tolist() == [True, False]


def test_only_signals_before_now_and_within_the_lookback_count(facts: Facts) -> None:
    facts.message("A", weekly(ROME, 4, 12, weeks=3))  # Fridays 12h, before now
    facts.message("A", [NOW + k * H for k in range(10)])  # Monday 01h.. local, at or after now
    facts.message("A", [NOW - timedelta(days=400) + k * WEEK for k in range(5)])  # too long ago
    facts.message("B", [NOW + k * DAY for k in range(10)])  # only after now
    facts.order("B", NOW + H)
    got = run(facts, contacts(("A", "Europe/Rome"), ("B", "Europe/Rome")))
    assert got.hour_of_week.tolist() == [how(4, 12)] * 2
    assert got.personal.tolist() == [True, False]
    shorter = run(facts, contacts(("A", "Europe/Rome")), lookback=timedelta(days=10))
    assert shorter.personal.tolist() == [False]  # one Friday in the last 10 days: too few


def test_clicks_and_orders_weigh_more_than_opens(facts: Facts) -> None:
    assert OPEN_WEIGHT < CLICK_WEIGHT < ORDER_WEIGHT
    facts.message("A", weekly(ROME, 0, 9, weeks=CLICK_WEIGHT - 1))  # opens on Monday 09h
    facts.message("A", weekly(ROME, 0, 20, weeks=1), "click")  # one click on Monday 20h
    facts.message("B", weekly(ROME, 1, 9, weeks=ORDER_WEIGHT - 1))  # opens on Tuesday 09h
    for at in weekly(ROME, 5, 11, weeks=1):  # one order on Saturday 11h
        facts.order("B", at)
    got = run(facts, contacts(("A", "Europe/Rome"), ("B", "Europe/Rome")), min_signals=2)
    assert got.hour_of_week.tolist() == [how(0, 20), how(5, 11)]


def test_a_tie_goes_to_the_earliest_hour_from_monday(facts: Facts) -> None:
    facts.message("A", weekly(ROME, 6, 8, weeks=2))  # Sunday 08h
    facts.message("A", weekly(ROME, 2, 22, weeks=2))  # Wednesday 22h
    facts.message("A", weekly(ROME, 2, 21, weeks=1))
    got = run(facts, contacts(("A", "Europe/Rome")))
    assert got.hour_of_week.tolist() == [how(2, 22)]


def test_an_order_counts_once_and_only_when_valid(facts: Facts) -> None:
    """Three signals needed: one order of three lines is one; cancelled orders are none; an
    order refunded later is none; an order pending and then paid is one."""
    for at in weekly(ROME, 4, 14, weeks=1):
        facts.order("A", at, lines=3)
    for at in weekly(ROME, 4, 15, weeks=3):
        facts.order("B", at, status="cancelled")
    fridays = weekly(ROME, 4, 16, weeks=3)
    refunded = [facts.order("C", at) for at in fridays]
    saturdays = weekly(ROME, 5, 11, weeks=3)
    pending = [facts.order("D", at, status="pending") for at in saturdays]
    facts.write()
    facts.order("C", fridays[0], status="refunded", order=refunded[0])
    for at, order in zip(saturdays, pending, strict=True):
        facts.order("D", at, status="paid", order=order)
    facts.write(ingested_at=NOW + H)
    who = contacts(*[(c, "Europe/Rome") for c in "ABCD"])
    got = run(facts, who)
    assert got.personal.tolist() == [False, False, False, True]
    assert got.hour_of_week.tolist()[3] == how(5, 11)


def test_little_history_and_prospects_get_the_shop_hour(facts: Facts) -> None:
    facts.message("FEW", weekly(ROME, 1, 15, weeks=2))  # 2 opens: under the 3 needed
    facts.message("Y", weekly(NEW_YORK, 5, 9, weeks=4), "click")  # Saturday 09h New York
    facts.message("Z", weekly(TOKYO, 5, 9, weeks=3), "click")  # Saturday 09h Tokyo
    facts.message("GONE", weekly(ROME, 6, 18, weeks=1), "click")  # not among the contacts
    who = contacts(
        ("FEW", "Asia/Tokyo"),
        (None, "America/New_York"),  # a prospect
        ("Y", "America/New_York"),
        ("Z", "Asia/Tokyo"),
        ("UNKNOWN", None),
    )
    got = run(facts, who, window=2 * WEEK)
    # the shop's hour: Saturday 09h local (7 clicks) beats the others, each in its own zone
    assert got.hour_of_week.tolist() == [how(5, 9)] * 5
    assert got.personal.tolist() == [False, False, True, True, False]
    assert instants(got) == [
        local(TOKYO, 2026, 1, 17, 9),
        local(NEW_YORK, 2026, 1, 17, 9),
        local(NEW_YORK, 2026, 1, 17, 9),
        local(TOKYO, 2026, 1, 17, 9),
        local(ROME, 2026, 1, 17, 9),
    ]


def test_with_no_signals_at_all_tuesday_ten(facts: Facts) -> None:
    got = run(facts, contacts(("A", "Asia/Tokyo"), (None, None)))
    assert got.hour_of_week.tolist() == [DEFAULT_HOUR_OF_WEEK] * 2 == [how(1, 10)] * 2
    assert got.personal.tolist() == [False, False]
    assert instants(got) == [local(TOKYO, 2026, 1, 13, 10), local(ROME, 2026, 1, 13, 10)]


def test_a_customer_listed_twice_gets_the_same_hour(facts: Facts) -> None:
    facts.message("A", weekly(ROME, 3, 7, weeks=3))
    got = run(facts, contacts(("A", "Europe/Rome"), ("A", "Europe/Rome"), (None, None)))
    assert got.hour_of_week.tolist() == [how(3, 7)] * 3
    assert got.personal.tolist() == [True, True, False]


def test_no_contacts(facts: Facts) -> None:
    got = run(facts, contacts())
    assert (len(got.send_at), len(got.personal), len(got.hour_of_week)) == (0, 0, 0)


def test_a_pandas_frame_is_taken_too(facts: Facts) -> None:
    pd = pytest.importorskip("pandas")
    facts.message("A", weekly(ROME, 3, 7, weeks=3))
    frame = pd.DataFrame(
        {"contact_id": [1, 2], "customer_id": ["A", None], "timezone": [None, "Asia/Tokyo"]}
    )
    got = run(facts, frame)
    assert got.hour_of_week.tolist() == [how(3, 7)] * 2
    assert got.personal.tolist() == [True, False]


def test_the_window_must_be_longer_than_zero(facts: Facts) -> None:
    with pytest.raises(ValueError, match="window"):
        run(facts, contacts(("A", None)), window=timedelta(0))
    with pytest.raises(ValueError, match="window"):
        run(facts, contacts(("A", None)), window=-H)


# --- placing the hour in the window -------------------------------------------------------


def _sunday_rome(facts: Facts, hour: int) -> pa.Table:
    """A contact in Rome whose hour is Sunday `hour`:30's, from January Sundays."""
    facts.message("S", weekly(ROME, 6, hour, weeks=3))
    return contacts(("S", "Europe/Rome"))


@pytest.mark.parametrize(
    ("hour", "start", "expected"),
    [
        # Sunday 10:00 in Rome: CET (UTC+1) before the spring-forward, CEST (UTC+2) after
        (10, datetime(2026, 3, 21, 12, tzinfo=UTC), datetime(2026, 3, 22, 9, tzinfo=UTC)),
        (10, datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 29, 8, tzinfo=UTC)),
        (10, datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 25, 9, tzinfo=UTC)),
        # 02:00 does not exist on 29 March: the change itself, 03:00 CEST
        (2, datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC)),
        # 02:00 happens twice on 25 October: the first (CEST), unless it is already past
        (2, datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 10, 25, 0, tzinfo=UTC)),
        (2, datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ],
)
def test_the_hour_is_placed_with_the_offset_of_its_day(
    facts: Facts, hour: int, start: datetime, expected: datetime
) -> None:
    got = run(facts, _sunday_rome(facts, hour), start=start)
    assert got.hour_of_week.tolist() == [how(6, hour)]
    assert instants(got) == [expected]


def test_a_long_window_across_both_changes_keeps_each_week_right(facts: Facts) -> None:
    """Monday 09:00 in Rome, from a start after the spring-forward, in a window from March to
    November: the first Monday after the start, in CEST, then in CET after the fall-back."""
    facts.message("M", weekly(ROME, 0, 9, weeks=3))
    who = contacts(("M", "Europe/Rome"))
    window = timedelta(days=240)
    got = run(facts, who, start=datetime(2026, 3, 28, tzinfo=UTC), window=window)
    assert instants(got) == [datetime(2026, 3, 30, 7, tzinfo=UTC)]  # 09:00 CEST
    got = run(facts, who, start=datetime(2026, 10, 24, tzinfo=UTC), window=window)
    assert instants(got) == [datetime(2026, 10, 26, 8, tzinfo=UTC)]  # 09:00 CET
    got = run(facts, who, start=datetime(2026, 3, 23, 8, 30, tzinfo=UTC), window=window)
    assert instants(got) == [datetime(2026, 3, 30, 7, tzinfo=UTC)]  # a week on, after the change


def test_a_window_shorter_than_a_week_takes_the_same_hour_another_day(facts: Facts) -> None:
    facts.message("W", weekly(ROME, 2, 19, weeks=3))  # Wednesday 19h
    who = contacts(("W", "Europe/Rome"))
    friday = datetime(2026, 1, 16, tzinfo=UTC)
    got = run(facts, who, start=friday, window=2 * DAY)
    assert got.hour_of_week.tolist() == [how(2, 19)]  # the hour chosen, all the same
    assert instants(got) == [local(ROME, 2026, 1, 16, 19)]  # Friday 19h
    got = run(facts, who, start=friday + 20 * H, window=2 * DAY)
    assert instants(got) == [local(ROME, 2026, 1, 17, 19)]  # Saturday 19h: Friday's is past
    got = run(facts, who, start=friday - 2 * DAY, window=2 * DAY)
    assert instants(got) == [local(ROME, 2026, 1, 14, 19)]  # Wednesday itself is in it


def test_a_window_shorter_than_a_day_without_the_hour_sends_at_the_start(facts: Facts) -> None:
    facts.message("W", weekly(ROME, 2, 19, weeks=3))
    who = contacts(("W", "Europe/Rome"))
    friday = datetime(2026, 1, 16, tzinfo=UTC)  # 01:00 in Rome
    got = run(facts, who, start=friday, window=6 * H)
    assert instants(got) == [friday]
    got = run(facts, who, start=friday + 12 * H, window=6 * H)  # 13:00 to 19:00: 19:00 is out
    assert instants(got) == [friday + 12 * H]
    got = run(facts, who, start=friday + 12 * H + timedelta(minutes=1), window=6 * H)
    assert instants(got) == [local(ROME, 2026, 1, 16, 19)]  # 13:01 to 19:01: 19:00 is in


# --- always within the window -------------------------------------------------------------

ZONES = [
    "Europe/Rome",
    "America/New_York",
    "Asia/Tokyo",
    "Asia/Kolkata",  # UTC+5:30
    "Asia/Kathmandu",  # UTC+5:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # UTC+12:45, with DST
    "America/Santiago",  # DST changes at midnight
    "America/St_Johns",  # UTC-3:30, with DST
    "Pacific/Apia",
    "UTC",
]


SIGNALS_SEEN = datetime(2026, 1, 1, tzinfo=UTC)


def _changes(year: int) -> list[tuple[int, datetime]]:
    """(index in ZONES, the hour at the end of which the zone's UTC offset has changed) for
    each change of the zones in `year`."""
    found = []
    for i, name in enumerate(ZONES):
        zone = ZoneInfo(name)
        at = datetime(year, 1, 1, tzinfo=UTC)
        offset = at.astimezone(zone).utcoffset()
        while at.year == year:
            at += H
            if at.astimezone(zone).utcoffset() != offset:
                offset = at.astimezone(zone).utcoffset()
                found.append((i, at))
    return found


ZONE_CHANGES = _changes(2026)
CHANGES = [at for _, at in ZONE_CHANGES]


@pytest.fixture(scope="module")
def every_hour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    """Customers H0..H167, each with three clicks at that UTC hour of the week."""
    root = tmp_path_factory.mktemp("facts")
    store = Facts(root)
    monday = datetime(2025, 12, 1, tzinfo=UTC)
    for h in range(168):
        store.message(f"H{h}", [monday + h * H + k * WEEK for k in range(3)], "click")
    con = store.connect()
    yield con
    con.close()


def _is_change(moment: datetime, zone: ZoneInfo) -> bool:
    """A UTC offset change happens at this instant."""
    step = timedelta(microseconds=1)
    return (moment - step).astimezone(zone).utcoffset() != moment.astimezone(zone).utcoffset()


def _first_on_the_hour(
    zone: ZoneInfo, start: datetime, end: datetime, hour: int, every: int
) -> datetime | None:
    """By brute force: the first instant in [start, end) at which the zone's wall clock shows
    the top of an hour whose hour of the week is `hour`, modulo `every` (168: that hour of
    that day; 24: that hour of any day). Every offset of these zones is a multiple of 15
    minutes, so such instants lie on a 15-minute grid of UTC."""
    grid = timedelta(minutes=15)
    at = datetime(start.year, start.month, start.day, start.hour, tzinfo=UTC)
    while at < end:
        if at >= start:
            wall = at.astimezone(zone)
            if wall.minute == 0 and how(wall.weekday(), wall.hour) % every == hour % every:
                return at
        at += grid
    return None


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    picks=st.lists(
        st.tuples(st.integers(0, 170), st.sampled_from([*ZONES, None, "Not/AZone"])),
        min_size=1,
        max_size=5,
    ),
    shop=st.sampled_from(ZONES),
    start=st.one_of(
        st.datetimes(
            min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
        ),
        st.builds(
            lambda change, delta: change + delta,
            st.sampled_from(CHANGES),
            st.timedeltas(-3 * DAY, 3 * DAY),
        ),
    ),
    window=st.one_of(
        st.timedeltas(timedelta(microseconds=1), timedelta(hours=30)),
        st.timedeltas(timedelta(hours=1), timedelta(days=20)),
    ),
)
def test_send_at_is_always_within_the_window(
    every_hour: duckdb.DuckDBPyConnection,
    picks: list[tuple[int, str | None]],
    shop: str,
    start: datetime,
    window: timedelta,
) -> None:
    """Always in [start, start + window); at the first top of the hour of the week chosen
    when the window has one, else of the hour of the day, else at the start (or, for a wall
    hour a DST change skips, at the change)."""
    who = contacts(*[(f"H{h}" if h < 168 else None, zone) for h, zone in picks])
    got = best_send_times(
        every_hour, who, start=start, window=window, shop_zone=ZoneInfo(shop), now=SIGNALS_SEEN
    )
    end = start + window
    for at, hour, (_, name) in zip(instants(got), got.hour_of_week.tolist(), picks, strict=True):
        assert start <= at < end
        assert 0 <= hour < 168
        zone = ZoneInfo(name if name in ZONES else shop)
        weekly = _first_on_the_hour(zone, start, end, hour, 168)
        daily = _first_on_the_hour(zone, start, end, hour, 24)
        if weekly is not None:
            assert at == weekly or (_is_change(at, zone) and at < weekly)
        elif daily is not None:
            assert at == daily or _is_change(at, zone)
        else:
            assert at == start or _is_change(at, zone)
