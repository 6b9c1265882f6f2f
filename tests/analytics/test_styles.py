"""Behavioural styles: signals as of a date, scoring, overrides, learning and accuracy."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import ibis
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reengage.analytics.scoring import catalogue as product_catalogue
from reengage.analytics.styles import (
    SIGNALS,
    STYLES,
    UNKNOWN,
    infer_styles,
    load_weights,
    macro_f1,
    style_report,
    style_signals,
    update_with_response,
)
from reengage.clock import FixedClock
from reengage.config import load_settings
from reengage.demo.synth import generate_shop
from reengage.facts import reader
from reengage.facts.kinds import EVENTS, ORDERS
from reengage.home import init_home
from reengage.ingest.importer import import_file
from reengage.state.db import engine_for

DOCS = Path(__file__).parent.parent.parent / "docs" / "styles.md"
D = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return D + timedelta(days=n)


# --- hand-made facts ----------------------------------------------------------------------


def events_table(rows: list[dict[str, Any]]) -> ibis.Table:
    """Events from dicts with customer, type, at (days after D) and any other field."""
    data = []
    for n, row in enumerate(rows):
        props = row.get("properties")
        data.append(
            {
                "event_id": f"e{n:04d}",
                "customer_id": row.get("customer"),
                "anonymous_id": row.get("cookie"),
                "type": row["type"],
                "occurred_at": day(row["at"]),
                "product_id": row.get("product"),
                "session_id": row.get("session"),
                "source": row.get("source"),
                "device": row.get("device"),
                "duration_s": row.get("duration"),
                "properties": json.dumps(props) if isinstance(props, dict) else props,
                "ingested_at": day(400),
            }
        )
    return ibis.memtable(pa.Table.from_pylist(data, schema=EVENTS.schema))


def orders_table(rows: list[tuple[str, str, float, str, str | None]]) -> ibis.Table:
    """(order_id, customer_id, day, product_id, coupon_code)"""
    data = [
        {
            "line_id": f"{o}-{p}",
            "order_id": o,
            "customer_id": c,
            "ordered_at": day(d),
            "product_id": p,
            "quantity": 1,
            "unit_price": 10.0,
            "currency": "EUR",
            "discount": 0.0,
            "coupon_code": code,
            "status": "paid",
            "ingested_at": day(400),
        }
        for (o, c, d, p, code) in rows
    ]
    return ibis.memtable(pa.Table.from_pylist(data, schema=ORDERS.schema))


PRODUCTS = ibis.memtable(
    pa.table(
        {
            "product_id": ["P1", "P2", "P3"],
            "category": ["shoes", "socks", "shoes"],
            "created_at": pa.array([day(-300), day(-300), day(1)], pa.timestamp("us", tz="UTC")),
        }
    )
)

EVENTS_A = [
    # Anonymous browsing on a cookie later seen with A: A's research before the first order.
    {"cookie": "k1", "type": "session_start", "at": 0.0, "session": "s0", "duration": 300},
    {"cookie": "k1", "type": "product_view", "at": 0.001, "product": "P1", "session": "s0"},
    {"cookie": "k1", "type": "spec_view", "at": 0.002, "product": "P1", "session": "s0"},
    # A's visit on social, on the phone: a share and a look at a brand-new product.
    {"customer": "A", "cookie": "k1", "type": "session_start", "at": 2.0, "session": "s1",
     "source": "social", "device": "mobile", "duration": 600},
    {"customer": "A", "cookie": "k1", "type": "product_view", "at": 2.001, "product": "P3",
     "session": "s1", "source": "social", "device": "mobile", "duration": 30},
    {"customer": "A", "cookie": "k1", "type": "share", "at": 2.002, "product": "P3",
     "session": "s1", "source": "social", "device": "mobile", "duration": 10},
    # The purchase visit, from an email.
    {"customer": "A", "type": "session_start", "at": 3.0, "session": "s2", "source": "email",
     "device": "desktop", "duration": 120},
    {"customer": "A", "type": "product_view", "at": 3.001, "product": "P1", "session": "s2",
     "source": "email", "device": "desktop", "duration": 50},
    {"customer": "A", "type": "newsletter_signup", "at": 3.002, "session": "s2"},
    # A cookie shared by B and C stays anonymous.
    {"customer": "B", "cookie": "k2", "type": "session_start", "at": 1.0, "session": "s3"},
    {"customer": "C", "cookie": "k2", "type": "session_start", "at": 1.5, "session": "s4"},
    {"cookie": "k2", "type": "share", "at": 1.6, "session": "s5"},
    # Off-site: no visit, no step.
    {"customer": "A", "type": "email_open", "at": 2.5},
    # After as_of: never seen.
    {"customer": "A", "type": "share", "at": 100.0, "session": "s9"},
    {"customer": "D", "type": "session_start", "at": 100.0, "session": "s10"},
]  # fmt: skip
ORDERS_A = [
    ("O1", "A", 3.01, "P1", "WELCOME10"),
    ("O2", "A", 10.0, "P1", None),  # the same product again
    ("O2", "A", 10.0, "P2", None),
    ("O3", "A", 200.0, "P3", None),  # after as_of
]


def signal_rows(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: row for row in table.to_pylist()}


def test_signals_by_hand() -> None:
    got = signal_rows(
        style_signals(orders_table(ORDERS_A), events_table(EVENTS_A), AS_OF, PRODUCTS).to_pyarrow()
    )
    assert set(got) == {"A", "B", "C"}  # D only appears after as_of
    a = got["A"]
    assert (a["sessions"], a["orders"]) == (3, 2)  # s0 is A's through the cookie
    assert a["coupon_order_share"] == pytest.approx(0.5)
    # O2's lines: P1 (shoes) bought before, P2 (socks) new in both product and category.
    assert a["repeat_product_share"] == pytest.approx(0.5)
    assert a["repeat_category_share"] == pytest.approx(0.5)
    assert a["shares_per_session"] == pytest.approx(1 / 3)  # the share on day 100 is not seen
    assert a["specs_per_session"] == pytest.approx(1 / 3)
    assert a["social_source_share"] == pytest.approx(1 / 3)
    assert a["email_source_share"] == pytest.approx(1 / 3)
    assert a["mobile_share"] == pytest.approx(1 / 3)
    assert a["session_minutes"] == pytest.approx(5.0)  # median of 5, 10 and 2 minutes
    assert a["page_seconds"] == pytest.approx(30.0)  # median of 10, 30 and 50 seconds
    assert a["views_per_order"] == pytest.approx(1.5)  # 3 product views, 2 orders
    assert a["sessions_per_order"] == pytest.approx(1.5)
    # P1 was first looked at on day 0.001 and bought on day 3.01; O2 had no look since.
    assert a["days_to_buy"] == pytest.approx(3.009, abs=1e-4)  # in whole seconds
    assert a["newsletter"] == 1.0
    # One of three product views was of P3, a day old; no purchase was of a new arrival.
    assert a["new_arrival_view_share"] == pytest.approx(1 / 3)
    assert a["new_arrival_share"] == pytest.approx(0.0)
    # B and C share cookie k2: its anonymous share belongs to neither.
    assert got["B"]["shares_per_session"] == 0.0 and got["C"]["shares_per_session"] == 0.0
    assert got["B"]["orders"] == 0 and got["B"]["views_per_order"] is None
    assert got["B"]["survey_style"] is None


def test_signals_without_products_leave_catalogue_signals_empty() -> None:
    got = signal_rows(
        style_signals(orders_table(ORDERS_A), events_table(EVENTS_A), AS_OF).to_pyarrow()
    )
    a = got["A"]
    assert a["new_arrival_share"] is None and a["new_arrival_view_share"] is None
    assert a["repeat_category_share"] is None
    assert a["repeat_product_share"] == pytest.approx(0.5)


SURVEY = [
    {"customer": "B", "type": "session_start", "at": 1.0, "session": "t1"},
    {"customer": "B", "type": "survey_answer", "at": 1.1, "session": "t1",
     "properties": {"survey": "style", "answer": "Examiner"}},
    {"customer": "B", "type": "survey_answer", "at": 2.0,
     "properties": {"survey": "style", "answer": "Go-Getter"}},  # the latest valid answer
    {"customer": "B", "type": "survey_answer", "at": 3.0,
     "properties": {"survey": "style", "answer": "banana"}},  # not a style: ignored
    {"customer": "B", "type": "survey_answer", "at": 4.0,
     "properties": {"survey": "nps", "answer": "promoter"}},  # another survey altogether
    {"customer": "B", "type": "survey_answer", "at": 120.0,
     "properties": {"survey": "style", "answer": "nurturer"}},  # after as_of
    {"customer": "C", "type": "survey_answer", "at": 1.0,
     "properties": '{"survey": "style", "answer": "promoter"}'},
    {"customer": "E", "type": "session_start", "at": 1.0, "session": "t2"},
]  # fmt: skip


def test_survey_answers_and_crm_values_override_behaviour() -> None:
    signals = style_signals(orders_table([]), events_table(SURVEY), AS_OF).to_pyarrow()
    assert signal_rows(signals)["B"]["survey_style"] == "go_getter"
    out = infer_styles(signals, overrides={"C": "Nurturer", "Z": "promoter", "E": ""})
    got = signal_rows(out)
    assert (got["B"]["style"], got["B"]["style_source"]) == ("go_getter", "survey")
    assert (got["C"]["style"], got["C"]["style_source"]) == ("nurturer", "crm")  # CRM wins
    assert (got["Z"]["style"], got["Z"]["style_source"]) == ("promoter", "crm")  # CRM only
    assert [got["Z"][f"p_{s}"] for s in STYLES] == [0.25] * 4
    assert got["E"]["style_source"] == "behaviour"  # "" is no CRM value
    with pytest.raises(ValueError, match=r"banana.*'X'"):
        infer_styles(signals, overrides={"X": "banana"})


def test_customers_with_little_behaviour_lean_to_uniform() -> None:
    rng = np.random.default_rng(3)
    n = 200
    columns: dict[str, Any] = {"customer_id": [f"c{i}" for i in range(n)]}
    for name in SIGNALS:
        columns[name] = rng.lognormal(size=n)
    columns["sessions"] = np.where(np.arange(n) % 2 == 0, 40, 1)
    columns["sessions"][0] = 0
    # Odd rows copy the even rows' habits, seen over a single visit.
    for name in SIGNALS:
        columns[name][1::2] = columns[name][0::2]
    out = infer_styles(pa.table(columns))
    conf = out.column("confidence").to_numpy()
    assert conf[0] == pytest.approx(0.25)  # no visit: uniform
    assert np.all(conf[3::2] < conf[2::2])  # one visit: nearer uniform than 40 visits
    # One visit keeps less than half as far from uniform as forty, on average.
    assert conf[1::2].mean() - 0.25 < 0.5 * (conf[2::2].mean() - 0.25)
    styles = np.array(out.column("style").to_pylist())
    assert np.mean(styles[1::2] == UNKNOWN) > np.mean(styles[2::2] == UNKNOWN)


# --- the weights table --------------------------------------------------------------------


def test_weights_table_loads_and_covers_every_signal() -> None:
    weights = load_weights()
    assert set(weights.signals) == set(SIGNALS)
    assert weights.matrix().shape == (len(SIGNALS), 4)
    assert weights.scale > 0 and weights.evidence_half >= 0 and weights.clip > 0


GOOD_SCORING = "[scoring]\nscale = 1.0\nevidence_half = 2.0\nclip = 2.0\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[weights]\nspecs_per_session = [1, 2, 3]\n" + GOOD_SCORING, "'specs_per_session'"),
        ("[weights]\nspec_views = [1, 2, 3, 4]\n" + GOOD_SCORING, "'spec_views'"),
        ('[weights]\nnewsletter = [1, "a", 3, 4]\n' + GOOD_SCORING, "'newsletter'"),
        ("[weights]\nnewsletter = [1, 2, 3, 4]\n", r"\[scoring\]"),
        ("[weights]\nnewsletter = [1, 2, 3, 4]\n" + GOOD_SCORING.replace("1.0", "-1"), "scale"),
        ("[weights\nnewsletter = 1", "not valid TOML"),
    ],
)
def test_a_bad_weights_file_names_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "weights.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=named):
        load_weights(path)


def test_a_weights_file_replaces_the_packaged_table(tmp_path: Path) -> None:
    path = tmp_path / "weights.toml"
    path.write_text(
        "[weights]\nshares_per_session = [0, 1, 0, 0]  # sharing is all that counts\n"
        + GOOD_SCORING.replace("1.0", "5.0"),
        encoding="utf-8",
    )
    weights = load_weights(path)
    assert weights.signals == ("shares_per_session",)
    n = 20
    columns: dict[str, Any] = {"customer_id": [f"c{i}" for i in range(n)]}
    columns.update({name: [0.0] * n for name in SIGNALS})
    columns["shares_per_session"] = [float(i) for i in range(n)]
    columns["sessions"] = [50] * n
    got = infer_styles(pa.table(columns), weights)
    assert got.column("style").to_pylist()[-1] == "promoter"


def test_docs_mention_every_signal_of_the_weights_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    weights = load_weights()
    missing = [name for name in weights.signals if f"`{name}`" not in text]
    assert not missing, f"docs/styles.md does not describe {missing}"
    # The weights table in the docs is the shipped one, row for row.
    documented = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            try:
                documented[cells[0].strip("`")] = tuple(float(c) for c in cells[1:])
            except ValueError:
                continue
    assert documented == dict(weights.rows)
    assert f"`scale = {weights.scale:g}`" in text
    assert f"`evidence_half = {weights.evidence_half:g}`" in text


# --- learning from responses --------------------------------------------------------------


def test_responses_move_probabilities_the_right_way() -> None:
    p = np.full((4, 4), 0.25)
    got = update_with_response(
        p, ["promoter", "promoter", "unknown", None], [True, False, True, False]
    )
    assert got[0, 1] == pytest.approx(0.4)  # odds of promoter doubled: 1/3 -> 2/3
    assert 0.23 < got[1, 1] < 0.25  # silence lowers it, mildly
    np.testing.assert_allclose(got[2:], p[2:])  # the neutral variant says nothing
    with pytest.raises(ValueError, match="banana"):
        update_with_response(p[:1], ["banana"], [True])


probability_rows = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=4, max_size=4).filter(
    lambda row: sum(row) > 1e-6
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(probability_rows, st.sampled_from((*STYLES, UNKNOWN)), st.booleans()),
        min_size=1,
        max_size=8,
    ),
    strength=st.floats(0.0, 10.0),
)
def test_updates_keep_distributions(rows: list[Any], strength: float) -> None:
    p = np.array([r[0] for r in rows])
    p /= p.sum(axis=1, keepdims=True)
    variants = [r[1] for r in rows]
    responded = [r[2] for r in rows]
    got = update_with_response(p, variants, responded, strength)
    assert got.shape == p.shape
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    assert np.all(got >= 0) and np.all(got <= 1)
    for i, (variant, answered) in enumerate(zip(variants, responded, strict=True)):
        if variant == UNKNOWN:
            np.testing.assert_allclose(got[i], p[i])
            continue
        k = STYLES.index(variant)
        if answered:
            assert got[i, k] >= p[i, k] - 1e-12
        else:
            assert got[i, k] <= p[i, k] + 1e-12


# --- macro-F1 -----------------------------------------------------------------------------


def test_macro_f1_counts_unknown_as_wrong() -> None:
    truth = dict(zip("abcd", STYLES, strict=True))
    assert macro_f1(truth, truth) == 1.0
    predicted = {**truth, "d": UNKNOWN}
    assert macro_f1(truth, predicted) == pytest.approx(0.75)  # examiner's F1 is 0
    report = style_report(truth, predicted)
    assert report["coverage"] == 0.75 and report["macro_f1_covered"] == 1.0
    assert report["per_style"]["examiner"]["recall"] == 0.0
    assert macro_f1(truth, {}) == 0.0


# --- a generated shop ---------------------------------------------------------------------


@dataclass
class Shop:
    con: duckdb.DuckDBPyConnection
    facts: Any  # the Ibis backend over con
    truth: dict[str, str]

    def signals(self, as_of: datetime, orders: str = "orders", events: str = "events") -> Any:
        return style_signals(
            self.facts.table(orders), self.facts.table(events), as_of, self.facts.table("products")
        )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("style_shop")
    files = generate_shop(tmp / "shop", customers=2000, seed=5, end=date(2026, 6, 1))
    settings_ = load_settings({"REENGAGE_HOME": str(tmp / "home")})
    home = init_home(settings_).home
    engine = engine_for(settings_.state_url)
    try:
        for kind in ("products", "customers", "orders", "events"):
            import_file(
                home,
                engine,
                kind,
                getattr(files, kind),
                clock=FixedClock.parse("2026-06-01T00:00:00Z"),
            )
        catalogue = product_catalogue(engine)
    finally:
        engine.dispose()
    con = reader.connect(settings_.facts_path)
    con.register("products", catalogue)
    styles = pacsv.read_csv(files.styles)
    truth = dict(
        zip(
            styles.column("customer_id").to_pylist(),
            styles.column("style").to_pylist(),
            strict=True,
        )
    )
    try:
        yield Shop(con, ibis.duckdb.from_connection(con), truth)
    finally:
        con.close()


def test_macro_f1_on_a_generated_shop_is_well_above_chance(shop: Shop) -> None:
    out = infer_styles(shop.signals(datetime(2026, 6, 1, tzinfo=UTC)).to_pyarrow())
    predicted = dict(
        zip(out.column("customer_id").to_pylist(), out.column("style").to_pylist(), strict=True)
    )
    report = style_report(shop.truth, predicted)
    assert report["macro_f1"] > 0.45  # chance is 0.25
    assert report["coverage"] > 0.5
    assert report["macro_f1_covered"] >= report["macro_f1"]


def test_probabilities_are_distributions(shop: Shop) -> None:
    out = infer_styles(shop.signals(datetime(2026, 6, 1, tzinfo=UTC)).to_pyarrow())
    p = np.column_stack([out.column(f"p_{s}").to_numpy() for s in STYLES])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(out.column("confidence").to_numpy(), p.max(axis=1))
    assert set(out.column("style").to_pylist()) <= {*STYLES, UNKNOWN}
    assert set(out.column("style_source").to_pylist()) == {"behaviour"}


def same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True):
        for key, value in x.items():
            if isinstance(value, float):
                assert math.isclose(value, y[key], rel_tol=1e-9, abs_tol=1e-12), (x, key)
            else:
                assert value == y[key], (x["customer_id"], key)


def test_a_past_as_of_sees_what_truncated_facts_show(shop: Shop) -> None:
    as_of = datetime(2025, 9, 14, 15, 30, tzinfo=UTC)
    shop.con.execute(
        "CREATE OR REPLACE TEMP TABLE cut_orders AS FROM orders WHERE ordered_at < ?", [as_of]
    )
    shop.con.execute(
        "CREATE OR REPLACE TEMP TABLE cut_events AS FROM events WHERE occurred_at < ?", [as_of]
    )
    past = shop.signals(as_of).to_pyarrow()
    truncated = shop.signals(datetime(2030, 1, 1, tzinfo=UTC), "cut_orders", "cut_events")
    same_rows(past, truncated.to_pyarrow())
    assert 0 < past.num_rows < len(shop.truth)
    same_rows(infer_styles(past), infer_styles(truncated.to_pyarrow()))


# --- the same signals on PySpark ------------------------------------------------------------


@pytest.mark.spark
def test_signals_equal_on_pyspark_and_duckdb(tmp_path: Path, spark: Any) -> None:
    tables = {
        "orders": orders_table(ORDERS_A).to_pyarrow(),
        "events": events_table(EVENTS_A + SURVEY).to_pyarrow(),
        "products": PRODUCTS.to_pyarrow(),
    }
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")

    def signals_on(backend: Any) -> pa.Table:
        def read(name: str) -> ibis.Table:
            return backend.read_parquet(str(tmp_path / f"{name}.parquet"))

        return style_signals(read("orders"), read("events"), AS_OF, read("products")).to_pyarrow()

    expected = signals_on(ibis.duckdb.connect())
    got = signals_on(ibis.pyspark.connect(spark))
    same_rows(expected, got.cast(expected.schema))
