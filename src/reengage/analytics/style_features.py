"""Behavioural signals per customer, as of a date, for inferring behavioural styles.

Every signal is an Ibis expression over the `orders` and `events` facts (plus the catalogue's
`products`, optionally), kept to portable operations — filters, group_by/aggregate, joins,
ifelse/cases and window functions — so the same code can later run on another Ibis backend
such as PySpark. The signals are raw, interpretable quantities (minutes, shares, counts per
session); `reengage.analytics.styles.infer_styles` puts them on a common scale.

Nothing at or after `as_of` is seen: orders and events are filtered on their own time
(`ordered_at`, `occurred_at` < as_of), so a past `as_of` gives what the same code would have
given on facts truncated at that instant. (Only the event time is used, not the ingestion
time: a late-arriving event about the past counts, as it would have with a truncated copy.)
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from reengage.clock import as_utc

#: The four behavioural styles, in the order of every probability column and weights row.
STYLES = ("go_getter", "promoter", "nurturer", "examiner")

#: Every signal that `style_signals` computes, and what it measures. The weights table may only
#: name these; docs/styles.md describes each one.
SIGNALS: dict[str, str] = {
    "session_minutes": "median length of a visit, in minutes",
    "page_seconds": "median time on a page (or other step of a visit), in seconds",
    "events_per_session": "steps per visit (page and product views, searches, cart changes...)",
    "views_per_order": "product pages looked at per order",
    "days_to_buy": "mean days from first looking at a product to buying it",
    "sessions_per_order": "visits per order",
    "reviews_per_session": "review_view events per visit",
    "specs_per_session": "spec_view events per visit",
    "compares_per_session": "compare events per visit",
    "searches_per_session": "search events per visit",
    "search_source_share": "share of visits that came from a search engine",
    "shares_per_session": "share events per visit",
    "social_source_share": "share of visits that came from social media",
    "wishlist_per_session": "wishlist_add events per visit",
    "coupon_order_share": "share of orders placed with a coupon code",
    "coupon_tries_per_session": "coupon_apply events per visit (valid or not)",
    "repeat_product_share": "share of later order lines (after the first order) of products "
    "bought before",
    "repeat_category_share": "share of later order lines in categories bought before",
    "newsletter": "1 when the person signed up to the newsletter, else 0",
    "support_per_session": "support_contact events per visit",
    "email_source_share": "share of visits that came from an email",
    "ads_source_share": "share of visits that came from an ad",
    "mobile_share": "share of visits on a mobile phone",
    "new_arrival_share": "share of order lines that were new arrivals when bought",
    "new_arrival_view_share": "share of product views that were of new arrivals",
}

#: A product counts as a new arrival this long after its created_at: the "new in" section of a
#: typical shop shows the last month's products.
NEW_ARRIVAL_DAYS = 30
#: How far back a product view can be the start of the deliberation that ended in buying it.
DELIBERATION_LOOKBACK_DAYS = 60
#: Product-related events that count as "looking at" a product before buying it.
LOOKING_TYPES = ("product_view", "review_view", "spec_view", "compare", "wishlist_add")
#: Events that happen away from the site (in a mailbox, on a phone, in a survey tool): without
#: a session_id they are not part of any visit, so they neither add visits nor steps.
OFF_SITE_TYPES = (
    "email_open",
    "email_click",
    "sms_click",
    "push_click",
    "unsubscribe",
    "survey_answer",
)
_DAY_S = 86_400


def _ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """num / den as float, null when den is 0 or null (no evidence, not a zero)."""
    return num.cast("float64") / den.cast("float64").nullif(0.0)


def _seconds(moment: ir.TimestampValue) -> ir.IntegerValue:
    """Whole seconds since 1970: DuckDB's epoch keeps fractions, Spark's does not; flooring
    makes both give the same numbers."""
    return moment.epoch_seconds().cast("float64").floor()


def _count(condition: ir.BooleanValue) -> ir.IntegerScalar:
    return condition.ifelse(1, 0).sum()


def _only(condition: ir.BooleanValue, value: ir.Value) -> ir.Value:
    """value where condition holds, else null: for conditional aggregates. (Ibis' `where=`
    argument does the same, but its PySpark translation of median() is broken.)"""
    return ibis.ifelse(condition, value, ibis.null(value.type()))


def style_signals(
    orders: ir.Table,
    events: ir.Table,
    as_of: datetime,
    products: ir.Table | None = None,
    *,
    new_within_days: int = NEW_ARRIVAL_DAYS,
) -> ir.Table:
    """One row per customer seen before `as_of`: evidence counts and every signal in SIGNALS.

    Columns: customer_id, sessions, orders (evidence amounts), the SIGNALS (float64, null when
    the customer gives no evidence for it, e.g. views_per_order without orders) and
    survey_style (their latest valid answer to the style survey, or null).

    Anonymous events are attributed to a customer when their cookie (anonymous_id) was seen,
    before `as_of`, with exactly one customer: browsing before signing up is part of how a
    person shops (research before a first order, above all). Events without a session_id are
    grouped into one visit per customer and day.

    `products` (product_id, created_at, and optionally category) enables the new-arrival and
    repeat-category signals; without it they are null.
    """
    cutoff = ibis.literal(as_utc(as_of), type="timestamp('UTC')")
    # Every event aggregate below reads this one relation (conditional aggregates, never a
    # filter on it), so the SQL it compiles to has it as one common table expression.
    ev = _customer_events(events, cutoff, products, new_within_days)
    od = orders.filter(orders.ordered_at < cutoff, orders.customer_id.notnull())

    per_customer = _event_signals(ev, new_within_days)
    per_order = _order_signals(od)
    keys = per_customer.select("customer_id").union(per_order.select("customer_id"), distinct=True)
    out = keys
    for part in (
        per_customer,
        _session_signals(ev),
        per_order,
        _line_signals(od, products, new_within_days),
        _deliberation(od, ev),
    ):
        joined = out.left_join(part, "customer_id")
        out = joined.select(
            *[joined[c] for c in out.columns],
            *[joined[c] for c in part.columns if c != "customer_id"],
        )

    sessions = out.sessions.fill_null(0)
    n_orders = out.orders.fill_null(0)
    signals = {
        "session_minutes": out.session_minutes,
        "page_seconds": out.page_seconds,
        "events_per_session": _ratio(out.steps, sessions),
        "views_per_order": _ratio(out.product_views.fill_null(0), n_orders),
        "days_to_buy": out.days_to_buy,
        "sessions_per_order": _ratio(sessions, n_orders),
        "reviews_per_session": _ratio(out.reviews, sessions),
        "specs_per_session": _ratio(out.specs, sessions),
        "compares_per_session": _ratio(out.compares, sessions),
        "searches_per_session": _ratio(out.searches, sessions),
        "search_source_share": out.search_source_share,
        "shares_per_session": _ratio(out.shares, sessions),
        "social_source_share": out.social_source_share,
        "wishlist_per_session": _ratio(out.wishlists, sessions),
        "coupon_order_share": _ratio(out.coupon_orders, n_orders),
        "coupon_tries_per_session": _ratio(out.coupon_tries, sessions),
        "repeat_product_share": out.repeat_product_share,
        "repeat_category_share": out.repeat_category_share,
        "newsletter": out.signed_up.fill_null(0),
        "support_per_session": _ratio(out.supports, sessions),
        "email_source_share": out.email_source_share,
        "ads_source_share": out.ads_source_share,
        "mobile_share": out.mobile_share,
        "new_arrival_share": out.new_arrival_share,
        "new_arrival_view_share": _ratio(out.new_views, out.dated_views),
    }
    assert set(signals) == set(SIGNALS)  # the catalogue of signals and the code agree
    return out.select(
        customer_id=out.customer_id,
        sessions=sessions.cast("int64"),
        orders=n_orders.cast("int64"),
        **{name: signals[name].cast("float64") for name in SIGNALS},
        survey_style=out.survey_style,
    ).order_by("customer_id")


def _customer_events(
    events: ir.Table,
    cutoff: ir.TimestampScalar,
    products: ir.Table | None,
    new_within_days: int,
) -> ir.Table:
    """Events before the cutoff that belong to a customer, with what the aggregates need.

    Adds session_key (session_id, else the customer's day; null for off-site events), is_look
    (a look at a product), survey_answer (a valid answer to the style survey) and, with a
    catalogue, age_days (the product's age at the event).
    """
    ev = events.filter(events.occurred_at < cutoff)
    # A cookie seen with exactly one customer is that customer's; shared devices stay anonymous.
    by_cookie = ibis.window(group_by="anonymous_id")
    highest = ev.customer_id.max().over(by_cookie)
    owner = ibis.ifelse(
        ev.anonymous_id.notnull() & (highest == ev.customer_id.min().over(by_cookie)),
        highest,
        ibis.null("string"),
    )
    customer = ev.customer_id.coalesce(owner)
    day = ev.occurred_at.date().cast("string")
    one_visit_a_day = ibis.ifelse(
        ev.type.isin(OFF_SITE_TYPES),
        ibis.null("string"),
        ibis.literal("day:") + customer + ":" + day,
    )
    ev = ev.mutate(
        customer_id=customer,
        session_key=ev.session_id.coalesce(one_visit_a_day),
        is_look=ev.type.isin(LOOKING_TYPES) & ev.product_id.notnull(),
        survey_answer=ibis.ifelse(
            ev.type == "survey_answer", _style_answer(ev.properties), ibis.null("string")
        ),
    ).filter(lambda t: t.customer_id.notnull())
    if products is None:
        return ev.mutate(age_days=ibis.null("float64"))
    catalogue = products.select(product_id=products.product_id, created_at=products.created_at)
    # select, not drop: Ibis then recognises the result as one shared table expression.
    joined = ev.left_join(catalogue, "product_id")
    age = (_seconds(joined.occurred_at) - _seconds(joined.created_at)) / _DAY_S
    return joined.select(*[joined[c] for c in ev.columns], age_days=age.cast("float64"))


def _style_answer(properties: ir.StringValue) -> ir.StringValue:
    """The style in {"survey": "style", "answer": …}, leniently ("Go-Getter" → go_getter).

    Anything that is not one of the four styles gives null, so a later invalid answer does not
    erase a valid one. Regular expressions rather than JSON functions: every backend has them.
    """
    survey = properties.re_extract(r'"survey"\s*:\s*"([^"]*)"', 1).lower().strip()
    answer = (
        properties.re_extract(r'"answer"\s*:\s*"([^"]*)"', 1)
        .lower()
        .strip()
        .re_replace(r"[\s-]+", "_")
    )
    return ibis.ifelse((survey == "style") & answer.isin(STYLES), answer, ibis.null("string"))


def _event_signals(ev: ir.Table, new_within_days: int) -> ir.Table:
    """Counts of telling event types, the pace of a visit's steps, the latest survey answer."""
    kind = ev.type
    step = (kind != "session_start") & ev.session_key.notnull()
    view = kind == "product_view"
    dated = view & (ev.age_days >= 0)  # a created_at after the view says nothing
    return ev.group_by("customer_id").aggregate(
        sessions=ev.session_key.nunique(),
        steps=_count(step),
        page_seconds=_only(step, ev.duration_s).median(),
        product_views=_count(view),
        reviews=_count(kind == "review_view"),
        specs=_count(kind == "spec_view"),
        compares=_count(kind == "compare"),
        searches=_count(kind == "search"),
        shares=_count(kind == "share"),
        wishlists=_count(kind == "wishlist_add"),
        coupon_tries=_count(kind == "coupon_apply"),
        supports=_count(kind == "support_contact"),
        signed_up=(kind == "newsletter_signup").ifelse(1, 0).max(),
        dated_views=_count(dated),
        new_views=_count(dated & (ev.age_days <= new_within_days)),
        # The latest valid answer (ties in time are broken arbitrarily).
        survey_style=ev.survey_answer.argmax(_only(ev.survey_answer.notnull(), ev.occurred_at)),
    )


def _session_signals(ev: ir.Table) -> ir.Table:
    """Per visit: its length, device and source; then per customer: medians and shares."""
    started = ev.type == "session_start"
    visits = ev.group_by(["customer_id", "session_key"]).aggregate(
        # The length a site reports with session_start, else the span of the visit's events.
        declared=_only(started, ev.duration_s).max(),
        span=_seconds(ev.occurred_at.max()) - _seconds(ev.occurred_at.min()),
        mobile=(ev.device == "mobile").ifelse(1, 0).max(),
        social=(ev.source == "social").ifelse(1, 0).max(),
        email=(ev.source == "email").ifelse(1, 0).max(),
        search=(ev.source == "search").ifelse(1, 0).max(),
        ads=(ev.source == "ads").ifelse(1, 0).max(),
    )
    visits = visits.filter(visits.session_key.notnull())  # off-site events are no visit
    minutes = visits.declared.coalesce(visits.span.cast("float64")) / 60.0
    return visits.group_by("customer_id").aggregate(
        session_minutes=minutes.median(),
        mobile_share=visits.mobile.mean(),
        social_source_share=visits.social.mean(),
        email_source_share=visits.email.mean(),
        search_source_share=visits.search.mean(),
        ads_source_share=visits.ads.mean(),
    )


def _order_signals(od: ir.Table) -> ir.Table:
    """Orders and how many of them used a coupon."""
    coupon = od.coupon_code.notnull() & (od.coupon_code.strip() != "")
    per_order = od.group_by(["customer_id", "order_id"]).aggregate(coupon=coupon.ifelse(1, 0).max())
    return per_order.group_by("customer_id").aggregate(
        orders=per_order.order_id.count(), coupon_orders=per_order.coupon.sum()
    )


def _line_signals(od: ir.Table, products: ir.Table | None, new_within_days: int) -> ir.Table:
    """Repeat purchases of products and categories, and purchases of new arrivals."""
    lines = od.select("customer_id", "order_id", "product_id", "ordered_at")
    if products is not None:
        catalogue = products.select(
            product_id=products.product_id,
            created_at=products.created_at,
            category=products.category if "category" in products.columns else ibis.null("string"),
        )
        joined = lines.left_join(catalogue, "product_id")
        lines = joined.select(
            *[joined[c] for c in lines.columns], joined.created_at, joined.category
        )
    else:
        lines = lines.mutate(created_at=ibis.null("timestamp('UTC')"), category=ibis.null("string"))

    first_order = lines.ordered_at.min().over(ibis.window(group_by="customer_id"))
    first_product = lines.ordered_at.min().over(ibis.window(group_by=["customer_id", "product_id"]))
    first_category = lines.ordered_at.min().over(ibis.window(group_by=["customer_id", "category"]))
    # Only lines after the first order can repeat anything: one-order customers get null.
    later = lines.ordered_at > first_order
    age_days = (_seconds(lines.ordered_at) - _seconds(lines.created_at)) / _DAY_S
    marked = lines.mutate(
        later=later.ifelse(1, 0),
        repeat_product=(later & (lines.ordered_at > first_product)).ifelse(1, 0),
        repeat_category=(
            later & lines.category.notnull() & (lines.ordered_at > first_category)
        ).ifelse(1, 0),
        later_known=(later & lines.category.notnull()).ifelse(1, 0),
        # A created_at after the order says nothing (e.g. a product first seen in an order).
        dated=(age_days >= 0).ifelse(1, 0),
        new=((age_days >= 0) & (age_days <= new_within_days)).ifelse(1, 0),
    )
    return marked.group_by("customer_id").aggregate(
        repeat_product_share=_ratio(marked.repeat_product.sum(), marked.later.sum()),
        repeat_category_share=_ratio(marked.repeat_category.sum(), marked.later_known.sum()),
        new_arrival_share=_ratio(marked.new.sum(), marked.dated.sum()),
    )


def _deliberation(od: ir.Table, ev: ir.Table) -> ir.Table:
    """Mean days from the first look at a product to buying it.

    A look counts when it is within DELIBERATION_LOOKBACK_DAYS before the purchase and after
    the customer's previous purchase of the same product (a reorder starts a new deliberation).
    The mean, not the median: most purchases are decided within the visit that ends in them,
    and what sets deliberate buyers apart is the share that took days.
    """
    # The first look at each product in each visit: far fewer rows to join than the events.
    looks = ev.group_by(["customer_id", "product_id", "session_key"]).aggregate(
        look_s=_seconds(_only(ev.is_look, ev.occurred_at).min())
    )
    looks = looks.filter(looks.look_s.notnull()).select(
        look_customer=looks.customer_id, look_product=looks.product_id, look_s=looks.look_s
    )
    # only the products a customer looked at can have been deliberated: the others are left
    # out before the window, which would otherwise sort every order line of the shop
    looked = looks.select(customer_id=looks.look_customer, product_id=looks.look_product)
    od = od.semi_join(looked.distinct(), ["customer_id", "product_id"])
    lines = od.group_by(["customer_id", "product_id", "order_id"]).aggregate(
        bought_at=od.ordered_at.min()
    )
    previous = lines.bought_at.lag().over(
        ibis.window(group_by=["customer_id", "product_id"], order_by="bought_at")
    )
    lines = lines.mutate(
        bought_s=_seconds(lines.bought_at),
        previous_s=_seconds(previous).fill_null(0),
    )
    joined = lines.inner_join(
        looks,
        [
            lines.customer_id == looks.look_customer,
            lines.product_id == looks.look_product,
            looks.look_s <= lines.bought_s,
            looks.look_s > lines.previous_s,
            looks.look_s > lines.bought_s - DELIBERATION_LOOKBACK_DAYS * _DAY_S,
        ],
    )
    per_line = joined.group_by(["customer_id", "product_id", "order_id"]).aggregate(
        days=(joined.bought_s.max() - joined.look_s.min()) / _DAY_S
    )
    return per_line.group_by("customer_id").aggregate(days_to_buy=per_line.days.mean())
