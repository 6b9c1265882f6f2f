"""The synthetic shop: valid generic CSV files, reproducible, and behaviour shaped by style."""

from __future__ import annotations

import csv
import json
from bisect import bisect_left
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reengage.demo import synth
from reengage.demo.synth import ShopFiles, generate_shop, observation_window

END = date(2025, 3, 1)
HEADERS = {
    "customers": "customer_id,email,phone,first_name,last_name,language,country,city,timezone,"
    "birthday,created_at,email_marketing,sms_marketing,push_marketing,consent_source,consent_at",
    "products": "product_id,title,category,brand,price,currency,url,image_url,description,"
    "in_stock,created_at",
    "orders": "order_id,customer_id,ordered_at,product_id,quantity,unit_price,currency,discount,"
    "coupon_code,status",
    "events": "event_id,customer_id,anonymous_id,type,occurred_at,product_id,session_id,source,"
    "device,duration_s,properties",
    "styles": "customer_id,style",
}
EVENT_TYPES = {
    "session_start", "page_view", "product_view", "search", "add_to_cart", "remove_from_cart",
    "checkout_start", "review_view", "spec_view", "compare", "wishlist_add", "share",
    "coupon_apply", "newsletter_signup", "support_contact",
}  # fmt: skip
STYLES = {"go_getter", "promoter", "nurturer", "examiner"}

Rows = list[dict[str, str]]


def read(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_all(files: ShopFiles) -> dict[str, Rows]:
    return {name: read(getattr(files, name)) for name in HEADERS}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShopFiles, dict[str, Rows]]:
    files = generate_shop(tmp_path_factory.mktemp("shop"), customers=2000, seed=11, end=END)
    return files, read_all(files)


@pytest.fixture(scope="module")
def rows(shop: tuple[ShopFiles, dict[str, Rows]]) -> dict[str, Rows]:
    return shop[1]


@pytest.fixture(scope="module")
def style_of(rows: dict[str, Rows]) -> dict[str, str]:
    return {r["customer_id"]: r["style"] for r in rows["styles"]}


@pytest.fixture(scope="module")
def sessions(rows: dict[str, Rows], style_of: dict[str, str]) -> dict[str, list[Counter[str]]]:
    """Event-type counts per logged-in session, grouped by the customer's true style."""
    per_session: dict[str, Counter[str]] = defaultdict(Counter)
    owner: dict[str, str] = {}
    for e in rows["events"]:
        if e["customer_id"]:
            per_session[e["session_id"]][e["type"]] += 1
            per_session[e["session_id"]]["source:" + e["source"]] += 1
            per_session[e["session_id"]]["device:" + e["device"]] += 1
            owner[e["session_id"]] = e["customer_id"]
    grouped: dict[str, list[Counter[str]]] = defaultdict(list)
    for session_id, counts in per_session.items():
        grouped[style_of[owner[session_id]]].append(counts)
    return grouped


def per_session(sessions: list[Counter[str]], *keys: str) -> float:
    return sum(s[k] for s in sessions for k in keys) / len(sessions)


def share_with(sessions: list[Counter[str]], key: str) -> float:
    return sum(1 for s in sessions if s[key]) / len(sessions)


def test_files_have_the_documented_headers_and_counts(
    shop: tuple[ShopFiles, dict[str, Rows]],
) -> None:
    files, rows = shop
    for name, header in HEADERS.items():
        path = getattr(files, name)
        assert path.name == f"{name}.csv"
        assert path.read_text(encoding="utf-8").split("\n", 1)[0] == header
        assert files.counts[name] == len(rows[name])
    assert files.counts["customers"] == files.counts["styles"] == 2000
    assert 200 <= files.counts["products"] <= 5000


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first = generate_shop(tmp_path / "a", customers=300, seed=5, end=END)
    again = generate_shop(tmp_path / "b", customers=300, seed=5, end=END)
    other = generate_shop(tmp_path / "c", customers=300, seed=6, end=END)
    for name in HEADERS:
        assert getattr(first, name).read_bytes() == getattr(again, name).read_bytes(), name
    assert first.counts == again.counts
    differs = [
        name
        for name in ("customers", "orders", "events", "styles")
        if getattr(first, name).read_bytes() != getattr(other, name).read_bytes()
    ]
    assert differs == ["customers", "orders", "events", "styles"]


def test_orders_and_events_refer_to_known_customers_and_products(
    rows: dict[str, Rows],
) -> None:
    customers = {r["customer_id"] for r in rows["customers"]}
    products = {r["product_id"] for r in rows["products"]}
    assert {r["customer_id"] for r in rows["orders"]} <= customers
    assert {r["product_id"] for r in rows["orders"]} <= products
    assert {r["customer_id"] for r in rows["events"]} - {""} <= customers
    assert {r["product_id"] for r in rows["events"]} - {""} <= products
    assert {r["customer_id"] for r in rows["styles"]} == customers


def test_ids_are_unique(rows: dict[str, Rows]) -> None:
    def unique(values: list[object]) -> bool:
        return len(values) == len(set(values))

    assert unique([r["customer_id"] for r in rows["customers"]])
    assert unique([r["email"] for r in rows["customers"]])
    # reengage takes a phone as an identity: two customers must not share one.
    assert unique([r["phone"] for r in rows["customers"] if r["phone"]])
    assert unique([r["product_id"] for r in rows["products"]])
    assert unique([r["event_id"] for r in rows["events"]])
    assert unique([(r["order_id"], r["product_id"]) for r in rows["orders"]])


def test_values_follow_the_generic_formats(rows: dict[str, Rows]) -> None:
    for c in rows["customers"]:
        assert c["email"].split("@")[1] in {"example.com", "example.org", "example.net"}
        assert c["language"] + c["country"] in {"itIT", "enGB", "frFR"}
        assert c["phone"] == "" or c["phone"][:3] in {"+39", "+44", "+33"}
        for channel in ("email_marketing", "sms_marketing", "push_marketing"):
            assert c[channel] in {"yes", "no", ""}
        assert c["birthday"] == "" or date.fromisoformat(c["birthday"]) < END
    for p in rows["products"]:
        assert p["url"] == f"https://shop.example.com/p/{p['product_id']}"
        assert float(p["price"]) > 0 and p["price"].split(".")[1].isdigit()
    for o in rows["orders"]:
        assert int(o["quantity"]) > 0
        assert 0 <= float(o["discount"]) <= float(o["unit_price"]) * int(o["quantity"])
        assert (o["coupon_code"] != "") == (float(o["discount"]) > 0)
        assert o["status"] in {"paid", "refunded", "cancelled"}
    for e in rows["events"]:
        assert e["type"] in EVENT_TYPES
        assert e["customer_id"] or e["anonymous_id"].startswith("a-")
        assert e["source"] in {"direct", "search", "social", "email", "ads"}
        assert e["device"] in {"desktop", "mobile", "tablet"}
        assert e["properties"] == "" or isinstance(json.loads(e["properties"]), dict)


def test_every_timestamp_is_inside_the_window(rows: dict[str, Rows]) -> None:
    start, stop = observation_window(END)
    assert stop - start == timedelta(days=730.5)
    stamps = (
        [r["created_at"] for r in rows["customers"]]
        + [r["consent_at"] for r in rows["customers"] if r["consent_at"]]
        + [r["created_at"] for r in rows["products"]]
        + [r["ordered_at"] for r in rows["orders"]]
        + [r["occurred_at"] for r in rows["events"]]
    )
    assert all(text.endswith("Z") and len(text) == 20 for text in stamps)
    moments = [when(text) for text in stamps]
    assert start <= min(moments) and max(moments) < stop


def test_things_happen_in_a_possible_order(rows: dict[str, Rows]) -> None:
    product_since = {p["product_id"]: p["created_at"] for p in rows["products"]}
    customer_since = {c["customer_id"]: c["created_at"] for c in rows["customers"]}
    for o in rows["orders"]:
        assert product_since[o["product_id"]] <= o["ordered_at"]
        assert customer_since[o["customer_id"]] <= o["ordered_at"]
    for e in rows["events"]:
        if e["product_id"]:
            assert product_since[e["product_id"]] <= e["occurred_at"]
        if e["customer_id"]:
            assert customer_since[e["customer_id"]] <= e["occurred_at"]


def test_an_order_is_one_customer_moment_with_one_to_four_lines(rows: dict[str, Rows]) -> None:
    orders: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line in rows["orders"]:
        orders[line["order_id"]].append(line)
    for lines in orders.values():
        assert 1 <= len(lines) <= 4
        assert len({(r["customer_id"], r["ordered_at"], r["status"]) for r in lines}) == 1
    statuses = Counter(lines[0]["status"] for lines in orders.values())
    assert statuses["paid"] > 0.8 * len(orders)


def test_each_order_follows_a_checkout_with_its_products_in_the_cart(
    rows: dict[str, Rows],
) -> None:
    # Timestamps are fixed-width ISO text, so comparing the text compares the moments.
    events_of: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for e in rows["events"]:
        if e["customer_id"]:
            events_of[e["customer_id"]].append(
                (e["occurred_at"], e["type"], e["session_id"], e["product_id"])
            )
    for events in events_of.values():
        events.sort()
    orders: dict[str, list[dict[str, str]]] = defaultdict(list)
    for line in rows["orders"]:
        orders[line["order_id"]].append(line)
    for lines in orders.values():
        customer, at = lines[0]["customer_id"], lines[0]["ordered_at"]
        day_before = (when(at) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        events = events_of[customer]
        before = events[bisect_left(events, (day_before,)) : bisect_left(events, (at,))]
        checked_out = {session for _, kind, session, _ in before if kind == "checkout_start"}
        carts = [
            {p for _, kind, s, p in before if s == session and kind == "add_to_cart"}
            for session in checked_out
        ]
        bought = {r["product_id"] for r in lines}
        assert any(bought <= cart for cart in carts), lines[0]["order_id"]


def test_sessions_include_browsing_abandoned_carts_and_anonymous_visits(
    rows: dict[str, Rows],
) -> None:
    types_in: dict[str, set[str]] = defaultdict(set)
    anonymous = set()
    for e in rows["events"]:
        types_in[e["session_id"]].add(e["type"])
        if not e["customer_id"]:
            anonymous.add(e["session_id"])
    abandoned = [s for s, t in types_in.items() if "add_to_cart" in t and "checkout_start" not in t]
    browsing = [s for s, t in types_in.items() if "add_to_cart" not in t]
    assert len(abandoned) > 0.03 * len(types_in)
    assert len(browsing) > 0.1 * len(types_in)
    assert 0.02 * len(types_in) < len(anonymous) < 0.5 * len(types_in)
    assert all("session_start" in t for t in types_in.values())


def test_styles_cover_all_four_in_similar_shares(rows: dict[str, Rows]) -> None:
    shares = Counter(r["style"] for r in rows["styles"])
    assert set(shares) == STYLES
    assert all(n > 0.18 * len(rows["styles"]) for n in shares.values())


def test_some_customers_never_buy_and_some_buy_again_and_again(rows: dict[str, Rows]) -> None:
    orders_of: dict[str, set[str]] = defaultdict(set)
    for line in rows["orders"]:
        orders_of[line["customer_id"]].add(line["order_id"])
    n = len(rows["customers"])
    never = n - len(orders_of)
    once = sum(1 for o in orders_of.values() if len(o) == 1)
    loyal = sum(1 for o in orders_of.values() if len(o) >= 5)
    assert 0.1 * n < never < 0.35 * n
    assert once > 0.1 * n
    assert loyal > 0.15 * n
    assert max(len(o) for o in orders_of.values()) >= 30
    lines_per_customer = len(rows["orders"]) / n
    assert 6 < lines_per_customer < 15


def test_examiners_research_and_go_getters_do_not(
    sessions: dict[str, list[Counter[str]]],
) -> None:
    examiner = per_session(sessions["examiner"], "spec_view", "review_view", "compare")
    go_getter = per_session(sessions["go_getter"], "spec_view", "review_view", "compare")
    assert examiner > 3 * go_getter
    assert per_session(sessions["examiner"], "search") > 2 * per_session(
        sessions["go_getter"], "search"
    )
    assert share_with(sessions["examiner"], "device:desktop") > 0.5
    assert share_with(sessions["go_getter"], "device:mobile") > 0.5
    size = {style: per_session(s, *EVENT_TYPES) for style, s in sessions.items()}
    assert size["examiner"] > 1.3 * size["go_getter"]


def test_promoters_share_and_come_from_social(sessions: dict[str, list[Counter[str]]]) -> None:
    others = [s for style in ("go_getter", "nurturer", "examiner") for s in sessions[style]]
    promoter = sessions["promoter"]
    assert per_session(promoter, "share") > 3 * per_session(others, "share")
    assert per_session(promoter, "wishlist_add") > 1.5 * per_session(others, "wishlist_add")
    assert per_session(promoter, "coupon_apply") > 1.3 * per_session(others, "coupon_apply")
    assert share_with(promoter, "source:social") > 2 * share_with(others, "source:social")


def test_nurturers_subscribe_come_from_email_and_ask_for_help(
    rows: dict[str, Rows], style_of: dict[str, str], sessions: dict[str, list[Counter[str]]]
) -> None:
    subscribers = {e["customer_id"] for e in rows["events"] if e["type"] == "newsletter_signup"}
    by_style = Counter(style_of[c] for c in subscribers if c)
    assert by_style["nurturer"] > 1.5 * max(by_style[s] for s in STYLES - {"nurturer"})
    others = [s for style in ("go_getter", "promoter", "examiner") for s in sessions[style]]
    nurturer = sessions["nurturer"]
    assert share_with(nurturer, "source:email") > 2 * share_with(others, "source:email")
    assert per_session(nurturer, "support_contact") > per_session(others, "support_contact")


def test_differences_are_noisy_not_deterministic(
    rows: dict[str, Rows], style_of: dict[str, str]
) -> None:
    """Some go-getters still read specs and some examiners never do: inference is not trivial."""
    readers = {
        e["customer_id"] for e in rows["events"] if e["type"] in {"spec_view", "review_view"}
    }
    go_getters = [c for c, s in style_of.items() if s == "go_getter"]
    examiners = [c for c, s in style_of.items() if s == "examiner"]
    assert 0.05 < sum(c in readers for c in go_getters) / len(go_getters) < 0.8
    assert 0.05 < sum(c not in readers for c in examiners) / len(examiners) < 0.5


def test_customers_generated_in_several_chunks_stay_distinct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth, "CHUNK_CUSTOMERS", 100)
    calls: list[tuple[str, int, int]] = []
    files = generate_shop(
        tmp_path, customers=250, seed=3, end=END, progress=lambda *a: calls.append(a)
    )
    rows = read_all(files)
    assert [r["customer_id"] for r in rows["customers"]] == [f"C{i:07d}" for i in range(1, 251)]
    assert [done for stage, done, _ in calls if stage == "customers"] == [0, 100, 200, 250]
    for name, key in (("orders", "order_id"), ("events", "event_id")):
        assert len({len(r[key]) for r in rows[name]}) == 1  # fixed width: sorts as numbers
    events, orders = rows["events"], rows["orders"]
    assert len({e["event_id"] for e in events}) == len(events)
    # Ids never restart from one chunk to the next.
    order_owner = {(o["order_id"], o["customer_id"]) for o in orders}
    assert len({order_id for order_id, _ in order_owner}) == len(order_owner)
    session_owner = {(e["session_id"], e["anonymous_id"]) for e in events}
    assert len({session_id for session_id, _ in session_owner}) == len(session_owner)
    cookie_owner = {(e["anonymous_id"], e["customer_id"]) for e in events if e["customer_id"]}
    assert len({cookie for cookie, _ in cookie_owner}) == len(cookie_owner)


def test_progress_reaches_the_total(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    generate_shop(tmp_path, customers=120, seed=1, end=END, progress=lambda *a: calls.append(a))
    assert ("customers", 120, 120) in calls
    assert {stage for stage, _, _ in calls} == {"products", "customers"}


def test_nonsense_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_shop(tmp_path, customers=0, seed=1, end=END)
    with pytest.raises(ValueError):
        generate_shop(tmp_path, customers=10, seed=1, end=END, years=0.01)


@settings(max_examples=10, deadline=None)
@given(
    customers=st.integers(min_value=1, max_value=80),
    seed=st.integers(min_value=-(2**40), max_value=2**40),
    years=st.sampled_from([0.25, 1.0, 2.0, 3.5]),
)
def test_any_small_shop_is_consistent(
    tmp_path_factory: pytest.TempPathFactory, customers: int, seed: int, years: float
) -> None:
    files = generate_shop(
        tmp_path_factory.mktemp("any"), customers=customers, seed=seed, end=END, years=years
    )
    rows = read_all(files)
    start, stop = observation_window(END, years)
    assert {name: len(r) for name, r in rows.items()} == files.counts
    customer_ids = {r["customer_id"] for r in rows["customers"]}
    products = {r["product_id"] for r in rows["products"]}
    assert len(customer_ids) == customers
    assert {r["customer_id"] for r in rows["orders"]} <= customer_ids
    assert {r["product_id"] for r in rows["orders"]} <= products
    assert {r["customer_id"] for r in rows["events"]} - {""} <= customer_ids
    assert {r["product_id"] for r in rows["events"]} - {""} <= products
    moments = [when(r["ordered_at"]) for r in rows["orders"]] + [
        when(r["occurred_at"]) for r in rows["events"]
    ]
    assert all(start <= m < stop for m in moments)
