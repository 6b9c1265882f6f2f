"""Web sessions: the visits before, around and between purchases.

Four kinds of session:
- purchase: one per order, ending with checkout_start just before the order is placed;
- research: earlier visits looking at the product that is bought later (Examiners deliberate);
- browse: visits without a purchase, some leaving an abandoned cart;
- newsletter: the short visit in which someone subscribes.

A session is planned first (who, when, what it is about), then its events are counted per type
from the person's habits, laid out in a natural order, and given times from per-page dwell.
Everything is done with arrays over all the sessions of a chunk at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reengage.demo.catalogue import Catalogue
from reengage.demo.columns import DAY
from reengage.demo.events import (
    ADD_TO_CART,
    CHECKOUT_START,
    COMPARE,
    COUPON_APPLY,
    N_TYPES,
    NEWSLETTER_SIGNUP,
    PAGE_VIEW,
    PRODUCT_VIEW,
    REMOVE_FROM_CART,
    REVIEW_VIEW,
    SEARCH,
    SESSION_START,
    SHARE,
    SPEC_VIEW,
    SUPPORT_CONTACT,
    WISHLIST_ADD,
    EventRows,
    Events,
    Visits,
    event_products,
    event_properties,
)
from reengage.demo.purchases import Orders, Tastes
from reengage.demo.styles import Traits, draw_from_cdf

# How far through a session each type happens (uniform in the range), so a session reads
# naturally: land, search, look around, fill the cart, try a coupon, check out.
_PLACE = np.array(
    [
        (-1.0, -1.0),  # session_start
        (0.01, 0.9),  # page_view
        (0.05, 0.8),  # product_view
        (0.01, 0.4),  # search
        (0.8, 0.9),  # add_to_cart
        (0.9, 0.92),  # remove_from_cart
        (2.0, 2.0),  # checkout_start
        (0.1, 0.85),  # review_view
        (0.1, 0.85),  # spec_view
        (0.1, 0.85),  # compare
        (0.2, 0.9),  # wishlist_add
        (0.2, 0.9),  # share
        (0.93, 0.97),  # coupon_apply
        (0.5, 0.98),  # newsletter_signup
        (0.5, 0.98),  # support_contact
    ]
)
PURCHASE, RESEARCH, BROWSE, NEWSLETTER = range(4)
_CONTENT = np.array([0.6, 1.0, 0.8, 0.1])  # how much looking around each kind involves
MIN_DWELL_S, MAX_DWELL_S = 2, 900
PRE_SIGNUP_DAYS = 30  # anonymous browsing before someone becomes a customer


@dataclass
class Audience:
    """Everyone who visits in a chunk: customers first, then anonymous visitors."""

    customers: int
    joined: np.ndarray  # customers: first purchase or sign-up (unix s); visitors: -1
    active_until: np.ndarray  # the last moment someone still browses
    newsletter_at: np.ndarray  # when they subscribe, -1 = never

    def __len__(self) -> int:
        return len(self.joined)


@dataclass
class _Plan:
    person: np.ndarray
    kind: np.ndarray
    order: np.ndarray  # the order a purchase or research session leads to, -1 otherwise
    anchor: np.ndarray  # purchase/research: when the session ends; others: when it starts
    focus: np.ndarray  # the product the session is about, -1 = pick one when timed


def _plan(
    rng: np.random.Generator,
    audience: Audience,
    traits: Traits,
    orders: Orders,
    start: int,
) -> _Plan:
    """Who visits when, and what for."""
    n_orders = len(orders)
    bought = orders.line_product[orders.line_start]

    extra = rng.poisson(traits.rates["research_sessions"][orders.person])
    r_order = np.repeat(np.arange(n_orders), extra)
    r_person = orders.person[r_order]
    lead_days = (
        traits.rates["deliberation_days"][r_person]
        * rng.lognormal(0.0, 0.6, len(r_order))
        * rng.uniform(0.1, 1.0, len(r_order))
    )
    r_end = orders.at[r_order] - 3600 - (lead_days * DAY).astype(np.int64)

    customer = np.arange(len(audience)) < audience.customers
    span_lo = np.where(customer, np.maximum(start, audience.joined - PRE_SIGNUP_DAYS * DAY), start)
    span_hi = np.maximum(audience.active_until, span_lo + 1)
    years = (span_hi - span_lo) / (365.25 * DAY)
    browse = np.where(
        customer,
        rng.poisson(traits.rates["browse_per_year"] * years),
        1 + rng.poisson(0.7, len(audience)),
    )
    b_person = np.repeat(np.arange(len(audience)), browse)
    b_start = span_lo[b_person] + (
        rng.random(len(b_person)) * (span_hi - span_lo)[b_person]
    ).astype(np.int64)

    n_person = np.flatnonzero(audience.newsletter_at >= 0)

    person = np.concatenate([orders.person, r_person, b_person, n_person])
    kind = np.repeat(
        [PURCHASE, RESEARCH, BROWSE, NEWSLETTER],
        [n_orders, len(r_order), len(b_person), len(n_person)],
    )
    order = np.concatenate(
        [np.arange(n_orders), r_order, np.full(len(b_person) + len(n_person), -1)]
    )
    anchor = np.concatenate([orders.at, r_end, b_start, audience.newsletter_at[n_person]])
    focus = np.concatenate([bought, bought[r_order], np.full(len(b_person) + len(n_person), -1)])
    return _Plan(person, kind, order, anchor, focus)


def simulate_events(
    rng: np.random.Generator,
    audience: Audience,
    traits: Traits,
    tastes: Tastes,
    orders: Orders,
    catalogue: Catalogue,
    start: int,
    end: int,
) -> Events:
    """All sessions of a chunk's people and their events, between start and end (unix s)."""
    plan = _plan(rng, audience, traits, orders, start)
    counts = _count_events(rng, plan, traits, orders)
    r_session, r_type, rank = _lay_out(rng, counts)

    # Times: every page holds the visitor for a while; a session lasts the sum of its pages.
    mean_dwell = traits.rates["dwell_s"][plan.person[r_session]]
    dwell = np.clip(rng.exponential(mean_dwell), MIN_DWELL_S, MAX_DWELL_S).astype(np.int64)
    elapsed = np.cumsum(dwell)
    per_session = counts.sum(axis=1)
    first_row = np.cumsum(per_session) - per_session
    before = elapsed[first_row] - dwell[first_row]
    offset = elapsed - dwell - before[r_session]
    total = elapsed[first_row + per_session - 1] - before
    kind = plan.kind
    anchored_end = (kind == PURCHASE) | (kind == RESEARCH)
    s_start = np.where(anchored_end, plan.anchor - total, plan.anchor)
    s_start = np.where(s_start + total >= end, end - 1 - total, s_start)

    # Sessions that would start before the window, or research on a product not yet sold.
    keep = (s_start >= start) & (
        (kind != RESEARCH) | (s_start >= catalogue.created_at[np.maximum(plan.focus, 0)])
    )
    kept = keep[r_session]
    r_session = (np.cumsum(keep) - 1)[r_session[kept]]
    r_type, rank, dwell, offset = r_type[kept], rank[kept], dwell[kept], offset[kept]
    s_person, s_order, s_start, total = (a[keep] for a in (plan.person, plan.order, s_start, total))
    kind, focus = kind[keep], plan.focus[keep]
    purchase = kind == PURCHASE
    n_sessions = len(s_person)
    at = s_start[r_session] + offset

    # Customers exist from their earliest purchase session (or sign-up); earlier visits are
    # anonymous, as are all visits of people who never became customers. (Two quick orders can
    # have overlapping sessions, so the earliest session need not be the first order's.)
    bought_in = np.flatnonzero(purchase)
    since = audience.joined.copy()
    np.minimum.at(since, s_person[bought_in], s_start[bought_in])
    since = since[: audience.customers]
    s_anonymous = (s_person >= audience.customers) | (
        s_start < since[np.minimum(s_person, audience.customers - 1)]
    )

    # What each browsing session is about, picked among the products on sale when it starts.
    prefer_new = traits.chances["new_arrivals"][s_person]
    open_focus = np.flatnonzero(focus < 0)
    focus_category = np.where(
        focus >= 0, catalogue.category[np.maximum(focus, 0)], tastes.category(rng, s_person)
    )
    focus[open_focus] = catalogue.pick(
        rng,
        focus_category[open_focus],
        s_start[open_focus],
        rng.random(len(open_focus)) < prefer_new[open_focus],
    )
    visits = Visits(s_person, purchase, s_order, focus, focus_category, prefer_new)
    rows = EventRows(r_session, r_type, rank, at)
    product = event_products(rng, rows, visits, orders, catalogue, tastes)
    properties = event_properties(rng, rows, visits, product, orders, catalogue)

    duration = np.where(r_type == SESSION_START, total[r_session], dwell)
    device = draw_from_cdf(rng, traits.device_cdf[s_person])
    source = draw_from_cdf(rng, traits.source_cdf[s_person])

    subscribed_at = np.full(len(audience), -1, dtype=np.int64)
    signup = np.flatnonzero(r_type == NEWSLETTER_SIGNUP)
    subscribed_at[s_person[r_session[signup]]] = at[signup]

    by_start = np.argsort(s_start, kind="stable")
    session_number = np.empty(n_sessions, dtype=np.int64)
    session_number[by_start] = np.arange(n_sessions)
    by_time = np.argsort(at, kind="stable")
    r_session = r_session[by_time]
    return Events(
        person=s_person[r_session],
        anonymous=s_anonymous[r_session],
        type=r_type[by_time],
        at=at[by_time],
        product=product[by_time],
        session=session_number[r_session],
        source=source[r_session],
        device=device[r_session],
        duration_s=duration[by_time],
        properties=pc.take(properties, pa.array(by_time)),
        sessions=n_sessions,
        customer_since=since,
        subscribed_at=subscribed_at,
    )


def _count_events(
    rng: np.random.Generator, plan: _Plan, traits: Traits, orders: Orders
) -> np.ndarray:
    """(sessions, event types): how many events of each type every session has."""
    person, kind, order = plan.person, plan.kind, np.maximum(plan.order, 0)
    n = len(person)
    purchase, browse = kind == PURCHASE, kind == BROWSE
    lines = np.where(purchase, orders.line_count[order], 0)
    content = _CONTENT[kind]

    def looks(name: str) -> np.ndarray:
        return rng.poisson(traits.rates[name][person] * content)

    def chance(p: np.ndarray | float) -> np.ndarray:
        return rng.random(n) < p

    cart = browse & chance(traits.chances["cart_left"][person])
    counts = np.zeros((n, N_TYPES), dtype=np.int64)
    counts[:, SESSION_START] = 1
    counts[:, PAGE_VIEW] = looks("page_views") + (kind == NEWSLETTER)
    counts[:, PRODUCT_VIEW] = looks("product_views") + np.where(purchase, lines, kind != NEWSLETTER)
    counts[:, SEARCH] = looks("searches")
    counts[:, REVIEW_VIEW] = looks("review_views")
    counts[:, SPEC_VIEW] = looks("spec_views")
    counts[:, COMPARE] = looks("compares")
    counts[:, WISHLIST_ADD] = looks("wishlist_adds")
    counts[:, SHARE] = looks("shares")
    counts[:, ADD_TO_CART] = np.where(purchase, lines, cart)
    counts[:, REMOVE_FROM_CART] = cart & chance(0.2)
    counts[:, CHECKOUT_START] = purchase | (cart & chance(0.2))
    counts[:, COUPON_APPLY] = (purchase & (orders.coupon[order] >= 0)) + np.where(
        purchase | cart, rng.poisson(traits.rates["coupon_tries"][person] * 0.5), 0
    )
    counts[:, NEWSLETTER_SIGNUP] = kind == NEWSLETTER
    counts[:, SUPPORT_CONTACT] = browse & chance(traits.chances["support"][person])
    return counts


def _lay_out(
    rng: np.random.Generator, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per event, sessions one after the other, events in a plausible order.

    Returns (session, type, rank among the session's events of that type) per row.
    """
    flat = counts.ravel()
    group = np.repeat(np.arange(flat.size), flat)
    session, kind = group // N_TYPES, group % N_TYPES
    rank = np.arange(len(group)) - np.repeat(np.cumsum(flat) - flat, flat)
    place = rng.uniform(_PLACE[kind, 0], _PLACE[kind, 1])
    # session + a fraction below 1 sorts by (session, place); much faster than a lexsort.
    order = np.argsort(session + (place - _PLACE.min()) / (np.ptp(_PLACE) * 1.01), kind="stable")
    return session[order], kind[order], rank[order]
