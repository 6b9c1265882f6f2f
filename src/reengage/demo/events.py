"""What happens in a visit: the event vocabulary, what each event points at, its properties.

Events are handled as arrays: `Visits` describes every session of a chunk, `EventRows` every
event (in session order), and the functions here fill in products and JSON properties for all
of them at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reengage.demo.catalogue import CATEGORIES, CATEGORY_WEIGHTS, N_CATEGORIES, Catalogue
from reengage.demo.columns import iso_timestamps, money_text, pick, prefixed_ids, scatter, take
from reengage.demo.purchases import COUPONS, Orders, Tastes
from reengage.demo.styles import DEVICES, SOURCES

EVENT_TYPES = (
    "session_start",
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "review_view",
    "spec_view",
    "compare",
    "wishlist_add",
    "share",
    "coupon_apply",
    "newsletter_signup",
    "support_contact",
)
(
    SESSION_START,
    PAGE_VIEW,
    PRODUCT_VIEW,
    SEARCH,
    ADD_TO_CART,
    REMOVE_FROM_CART,
    CHECKOUT_START,
    REVIEW_VIEW,
    SPEC_VIEW,
    COMPARE,
    WISHLIST_ADD,
    SHARE,
    COUPON_APPLY,
    NEWSLETTER_SIGNUP,
    SUPPORT_CONTACT,
) = range(len(EVENT_TYPES))
N_TYPES = len(EVENT_TYPES)
_WITH_PRODUCT = np.zeros(N_TYPES, dtype=bool)
_WITH_PRODUCT[
    [PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, REVIEW_VIEW, SPEC_VIEW, COMPARE, WISHLIST_ADD]
] = True
_WITH_PRODUCT[SHARE] = True
STAY_ON_FOCUS = 0.5  # share of product events about the product the session is about


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# Properties from small vocabularies, as JSON text, all in one list with a block per kind.
_QUERIES = [q for c in CATEGORIES for q in c.searches]
_QUERY_OFFSETS = np.cumsum([0] + [len(c.searches) for c in CATEGORIES])
_PAGES = ["/", "/new-arrivals", "/sale", "/shipping", "/returns", "/account"]
_PAGES += [f"/c/{c.name}" for c in CATEGORIES]
_HOME, _NEW_ARRIVALS, _FIRST_CATEGORY_PAGE = 0, 1, 6
_INVALID_CODES = ("FREESHIP", "SAVE50", "VIP20", "WELCOME10")
_CHANNELS = ("whatsapp", "facebook", "instagram", "pinterest", "email", "copy_link")
_TOPICS = ("delivery", "returns", "sizing", "payment", "product_question")
_LISTS = ("weekly", "new_arrivals", "offers")
_VOCAB_BLOCKS = {
    "query": [_compact({"query": q}) for q in _QUERIES],
    "page": [_compact({"path": p}) for p in _PAGES],
    "coupon_ok": [_compact({"code": c, "valid": True}) for c in COUPONS],
    "coupon_bad": [_compact({"code": c, "valid": False}) for c in _INVALID_CODES],
    "channel": [_compact({"channel": c}) for c in _CHANNELS],
    "topic": [_compact({"topic": t}) for t in _TOPICS],
    "list": [_compact({"list": v}) for v in _LISTS],
}
_VOCAB = [text for block in _VOCAB_BLOCKS.values() for text in block]
_VOCAB_AT = dict(
    zip(
        _VOCAB_BLOCKS,
        np.cumsum([0] + [len(b) for b in _VOCAB_BLOCKS.values()])[:-1].tolist(),
        strict=True,
    )
)


@dataclass
class Visits:
    """Per session: who, whether it ends in an order, and what it is about."""

    person: np.ndarray
    purchase: np.ndarray  # bool: the session ends in an order
    order: np.ndarray  # the order it ends in or prepares, -1 = none
    focus: np.ndarray  # the product the session is about
    focus_category: np.ndarray
    prefer_new: np.ndarray  # probability that a product pick goes for new arrivals


@dataclass
class EventRows:
    """Per event, in session order."""

    session: np.ndarray
    type: np.ndarray
    rank: np.ndarray  # 0, 1, ... among the session's events of the same type
    at: np.ndarray  # unix seconds


def event_products(
    rng: np.random.Generator,
    rows: EventRows,
    visits: Visits,
    orders: Orders,
    catalogue: Catalogue,
    tastes: Tastes,
) -> np.ndarray:
    """The product of each event (-1 = none): what is bought, the focus, or a look around."""
    session, kind, rank = rows.session, rows.type, rows.rank
    product = np.full(len(kind), -1, dtype=np.int64)
    purchase = visits.purchase[session]
    order = np.maximum(visits.order[session], 0)
    # In a purchase session the first views and the cart are the order's lines.
    in_order = (
        purchase
        & ((kind == PRODUCT_VIEW) | (kind == ADD_TO_CART))
        & (rank < orders.line_count[order])
    )
    at = np.flatnonzero(in_order)
    product[at] = orders.line_product[orders.line_start[order[at]] + rank[at]]
    # Elsewhere the first view and any cart change are about the product in focus.
    on_focus = ~purchase & (
        ((kind == PRODUCT_VIEW) & (rank == 0)) | (kind == ADD_TO_CART) | (kind == REMOVE_FROM_CART)
    )
    product[on_focus] = visits.focus[session[on_focus]]

    rest = np.flatnonzero(_WITH_PRODUCT[kind] & (product < 0))
    stay = rng.random(len(rest)) < STAY_ON_FOCUS
    product[rest[stay]] = visits.focus[session[rest[stay]]]
    wander = rest[~stay]
    wander_session = session[wander]
    category = np.where(
        rng.random(len(wander)) < 0.8,
        visits.focus_category[wander_session],
        tastes.category(rng, visits.person[wander_session]),
    )
    product[wander] = catalogue.pick(
        rng, category, rows.at[wander], rng.random(len(wander)) < visits.prefer_new[wander_session]
    )
    return product


def event_properties(
    rng: np.random.Generator,
    rows: EventRows,
    visits: Visits,
    product: np.ndarray,
    orders: Orders,
    catalogue: Catalogue,
) -> pa.Array:
    """The JSON properties of each event; empty where there is nothing to add."""
    session, kind = rows.session, rows.type
    n = len(kind)
    vocab = np.full(n, -1, dtype=np.int64)

    at = np.flatnonzero(kind == SEARCH)
    category = np.where(
        rng.random(len(at)) < 0.8,
        visits.focus_category[session[at]],
        rng.choice(N_CATEGORIES, len(at), p=CATEGORY_WEIGHTS),
    )
    block_size = np.diff(_QUERY_OFFSETS)[category]
    vocab[at] = _VOCAB_AT["query"] + _QUERY_OFFSETS[category] + rng.integers(0, block_size)

    at = np.flatnonzero(kind == PAGE_VIEW)
    u = rng.random(len(at))
    page = np.where(
        rng.random(len(at)) < visits.prefer_new[session[at]],
        _NEW_ARRIVALS,
        np.where(
            u < 0.3,
            _HOME,
            np.where(
                u < 0.75,
                _FIRST_CATEGORY_PAGE + visits.focus_category[session[at]],
                rng.integers(_NEW_ARRIVALS + 1, _FIRST_CATEGORY_PAGE, len(at)),
            ),
        ),
    )
    vocab[at] = _VOCAB_AT["page"] + page

    # The order's code works on the first try; other tries are codes that do not.
    at = np.flatnonzero(kind == COUPON_APPLY)
    order = visits.order[session[at]]
    code = np.where(order >= 0, orders.coupon[np.maximum(order, 0)], -1)
    valid = visits.purchase[session[at]] & (rows.rank[at] == 0) & (code >= 0)
    vocab[at] = np.where(
        valid,
        _VOCAB_AT["coupon_ok"] + code,
        _VOCAB_AT["coupon_bad"] + rng.integers(0, len(_INVALID_CODES), len(at)),
    )

    for event, block, size in (
        (SHARE, "channel", len(_CHANNELS)),
        (SUPPORT_CONTACT, "topic", len(_TOPICS)),
        (NEWSLETTER_SIGNUP, "list", len(_LISTS)),
    ):
        at = np.flatnonzero(kind == event)
        vocab[at] = _VOCAB_AT[block] + rng.integers(0, size, len(at))

    static = np.flatnonzero(vocab >= 0)
    parts = [(static, pick(_VOCAB, vocab[static]))]

    # A cart's value: the order's for purchases, the product in focus for abandoned checkouts.
    at = np.flatnonzero(kind == CHECKOUT_START)
    bought = visits.purchase[session[at]]
    order = np.maximum(visits.order[session[at]], 0)
    value = np.where(
        bought, orders.value_cents[order], catalogue.price_cents[visits.focus[session[at]]]
    )
    items = np.where(bought, orders.line_count[order], 1)
    count = pc.cast(pa.array(items), pa.string())
    cart = pc.binary_join_element_wise(
        '{"cart_value":', money_text(value), ',"items":', count, "}", ""
    )
    parts.append((at, cart))

    at = np.flatnonzero(kind == COMPARE)
    other = catalogue.pick(
        rng, catalogue.category[product[at]], rows.at[at], np.zeros(len(at), dtype=bool)
    )
    compared = pc.binary_join_element_wise(
        '{"compared_with":"', take(catalogue.ids, other), '"}', ""
    )
    parts.append((at, compared))
    return scatter(n, parts)


@dataclass
class Events:
    """One chunk's events, sorted by time, and what the sessions tell about the people."""

    person: np.ndarray
    anonymous: np.ndarray
    type: np.ndarray
    at: np.ndarray
    product: np.ndarray  # -1 = none
    session: np.ndarray  # numbered from 0 in order of session start
    source: np.ndarray
    device: np.ndarray
    duration_s: np.ndarray  # session_start: the whole session; other events: that page
    properties: pa.Array
    sessions: int
    customer_since: np.ndarray  # per customer: created_at (first purchase session or sign-up)
    subscribed_at: np.ndarray  # per person: time of the newsletter_signup event, -1 = none

    def __len__(self) -> int:
        return len(self.at)

    def table(
        self,
        first_event: int,
        first_session: int,
        id_width: int,
        customer_ids: pa.Array,
        cookies: pa.Array,
        catalogue: Catalogue,
    ) -> pa.Table:
        """events.csv rows; event and session ids are numbered from first_event/first_session."""
        return pa.table(
            {
                "event_id": prefixed_ids("E", first_event + np.arange(len(self)), id_width),
                "customer_id": take(customer_ids, np.where(self.anonymous, -1, self.person)),
                "anonymous_id": take(cookies, self.person),
                "type": pick(EVENT_TYPES, self.type),
                "occurred_at": iso_timestamps(self.at),
                "product_id": take(catalogue.ids, self.product),
                "session_id": prefixed_ids("S", first_session + self.session, id_width),
                "source": pick(SOURCES, self.source),
                "device": pick(DEVICES, self.device),
                "duration_s": pa.array(self.duration_s),
                "properties": self.properties,
            }
        )
