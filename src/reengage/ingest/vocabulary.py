"""The standard event vocabulary: what a shop's site, apps and messages report.

Each type is documented in docs/formats.md (a test keeps the two in step).
"""

from __future__ import annotations

EVENT_TYPES: dict[str, str] = {
    "session_start": "a visit begins",
    "page_view": "any page is shown",
    "product_view": "a product page is shown",
    "search": "a search on the site (properties.query)",
    "add_to_cart": "a product is put in the cart",
    "remove_from_cart": "a product is taken out of the cart",
    "checkout_start": "the checkout is opened",
    "review_view": "reviews of a product are read",
    "spec_view": "technical details, size guide or FAQ are read",
    "compare": "products are compared",
    "wishlist_add": "a product is saved for later",
    "share": "a product or page is shared",
    "coupon_apply": "a discount code is entered",
    "newsletter_signup": "the person subscribes to the newsletter",
    "email_open": "an email was opened",
    "email_click": "a link in an email was clicked",
    "sms_click": "a link in an SMS was clicked",
    "push_click": "a push notification was clicked",
    "unsubscribe": "the person opted out of a channel (properties.channel)",
    "survey_answer": "an answer to a survey (properties.survey, properties.answer)",
    "support_contact": "the person contacted customer service",
    "identify": "a login, sign-up or email capture: the visitor's anonymous_id with their "
    "customer_id and/or properties.email",
    "onsite_impression": "an on-site message was shown (properties.placement, properties.variant)",
    "onsite_click": "an on-site message was clicked (properties.placement, properties.variant)",
}

SOURCES = ("direct", "search", "social", "email", "ads", "referral", "sms", "push")
DEVICES = ("desktop", "mobile", "tablet")
ORDER_STATUSES = ("paid", "pending", "fulfilled", "cancelled", "refunded")
