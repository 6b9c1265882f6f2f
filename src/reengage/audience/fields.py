"""What a segment rule can read about a contact: profile fields, the latest scores, the
features kept in the scores' `details`, and custom attributes.

Each field has a kind that decides which literals it compares with:
- text: "strings" (an enumerated field also checks the value is one it can hold);
- number: numbers;
- days: numbers of days, or durations (`30d`, `12h`, `2w`);
- time: an instant, written as a date "2026-01-01" (its start, UTC), an ISO 8601 instant, or
  `30d ago`;
- date: a calendar date "2026-01-01" (or `30d ago`);
- any: a value of the JSON attributes or details (typed by the literal it is compared with).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DAYS = "days"
    TIME = "time"
    DATE = "date"
    ANY = "any"


class Source(StrEnum):
    CONTACT = "contact"  # a column of contacts
    SCORE = "score"  # a column of the contact's latest scores row
    DETAIL = "detail"  # a key of that row's `details` JSON
    ATTRIBUTE = "attribute"  # a key of the contact's `attributes` JSON


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    source: Source
    about: str
    # the values an enumerated text field can hold (checked in rules)
    values: tuple[str, ...] = ()
    # an attribute nested in the JSON: the keys leading to it (else the key is the name)
    path: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The column or JSON key the field reads."""
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    @property
    def keys(self) -> tuple[str, ...]:
        """The JSON keys, outermost first, that lead to the value (one for most fields)."""
        return self.path or (self.key,)


# Copied from the analytics modules (importing them would pull Ibis into every rule check);
# tests/audience/test_rules.py keeps the copies equal to the originals.
LIFECYCLE_STAGES = (
    "prospect",
    "new",
    "reactivated",
    "repeat",
    "loyal",
    "at_risk",
    "inactive",
    "lost",
)
RFM_SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential loyalist",
    "New",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)
STYLES = ("go_getter", "promoter", "nurturer", "examiner", "unknown")
STYLE_SOURCES = ("behaviour", "survey", "crm")
# the answers of reengage's own surveys (reengage.surveys; tests/test_surveys.py keeps them equal)
CHECKIN_ANSWERS = ("good", "problem")
LEFT_BECAUSE = ("price", "quality", "delivery", "elsewhere", "not_needed", "other")

_C, _S, _D, _A = Source.CONTACT, Source.SCORE, Source.DETAIL, Source.ATTRIBUTE
_FIELDS = (
    Field("customer_id", Kind.TEXT, _C, "the shop's customer id"),
    Field("language", Kind.TEXT, _C, "preferred language (ISO 639-1)"),
    Field("country", Kind.TEXT, _C, "country (ISO 3166-1 alpha-2)"),
    Field("city", Kind.TEXT, _C, "city"),
    Field("timezone", Kind.TEXT, _C, "IANA time zone"),
    Field("origin", Kind.TEXT, _C, "how the contact first reached us: customers, orders, events"),
    Field("birthday", Kind.DATE, _C, "date of birth"),
    Field("created_at", Kind.TIME, _C, "when the contact was created"),
    Field("updated_at", Kind.TIME, _C, "when the contact last changed"),
    Field("as_of", Kind.TIME, _S, "the date the latest scores are as of"),
    Field("orders", Kind.NUMBER, _S, "valid orders"),
    Field("recency_days", Kind.DAYS, _S, "days since the last order"),
    Field("frequency", Kind.NUMBER, _S, "repeat purchase days"),
    Field("monetary", Kind.NUMBER, _S, "mean order value"),
    Field("total_spent", Kind.NUMBER, _S, "sum of order values"),
    Field("tenure_days", Kind.DAYS, _S, "days since the first order"),
    Field("r", Kind.NUMBER, _S, "RFM recency score, 1-5"),
    Field("f", Kind.NUMBER, _S, "RFM frequency score, 1-5"),
    Field("m", Kind.NUMBER, _S, "RFM monetary score, 1-5"),
    Field("rfm_segment", Kind.TEXT, _S, "RFM segment", RFM_SEGMENTS),
    Field("lifecycle", Kind.TEXT, _S, "lifecycle stage", LIFECYCLE_STAGES),
    Field("threshold_days", Kind.DAYS, _S, "the contact's inactivity threshold T"),
    Field("p_alive", Kind.NUMBER, _S, "BG/NBD probability of being alive"),
    Field("expected_purchases_90d", Kind.NUMBER, _S, "expected purchases in 90 days"),
    Field("expected_next_order_at", Kind.TIME, _S, "expected next order"),
    Field("expected_order_value", Kind.NUMBER, _S, "Gamma-Gamma expected order value"),
    Field("clv", Kind.NUMBER, _S, "12-month customer lifetime value"),
    Field("style", Kind.TEXT, _S, "behavioural style", STYLES),
    Field("style_confidence", Kind.NUMBER, _S, "confidence of the style"),
    Field("p_go_getter", Kind.NUMBER, _S, "probability of the go-getter style"),
    Field("p_promoter", Kind.NUMBER, _S, "probability of the promoter style"),
    Field("p_nurturer", Kind.NUMBER, _S, "probability of the nurturer style"),
    Field("p_examiner", Kind.NUMBER, _S, "probability of the examiner style"),
    Field("style_source", Kind.TEXT, _S, "where the style came from", STYLE_SOURCES),
    Field("purchase_days", Kind.NUMBER, _D, "days with at least one order"),
    Field("ipt_median_days", Kind.DAYS, _D, "median gap between purchase days"),
    Field("ipt_p90_days", Kind.DAYS, _D, "90th percentile gap between purchase days"),
    Field("last_gap_days", Kind.DAYS, _D, "the gap before the latest purchase"),
    Field("spend_trend", Kind.NUMBER, _D, "spend, last 90 days against the 90 before"),
    Field("frequency_trend", Kind.NUMBER, _D, "orders, last 90 days against the 90 before"),
    Field("first_order_at", Kind.TIME, _D, "the first order"),
    Field("last_order_at", Kind.TIME, _D, "the latest order"),
    Field("preferred_weekday", Kind.NUMBER, _D, "most frequent order weekday, 0 = Monday"),
    Field("preferred_hour", Kind.NUMBER, _D, "most frequent order hour (UTC)"),
    Field("last_event_at", Kind.TIME, _D, "the latest event"),
    Field("last_activity_at", Kind.TIME, _D, "the latest event or order"),
    Field("days_since_activity", Kind.DAYS, _D, "days since the latest event or order"),
    Field("sessions", Kind.NUMBER, _D, "distinct sessions"),
    Field("email_engagements", Kind.NUMBER, _D, "email opens and clicks, last 90 days"),
    Field("sms_engagements", Kind.NUMBER, _D, "SMS clicks, last 90 days"),
    Field("push_engagements", Kind.NUMBER, _D, "push clicks, last 90 days"),
    Field("top_category", Kind.TEXT, _D, "the category with most spend"),
    Field("top_category_share", Kind.NUMBER, _D, "its share of the spend"),
    Field("cart_items", Kind.NUMBER, _D, "items in the open cart"),
    Field("cart_value", Kind.NUMBER, _D, "value of the open cart at list price"),
    Field("cart_since", Kind.TIME, _D, "when the first item of the open cart was added"),
    # the latest answer to each survey (docs/surveys.md), kept in the contact's attributes
    Field("nps", Kind.NUMBER, _A, "the latest NPS answer, 0-10", path=("surveys", "nps", "answer")),
    Field(
        "checkin",
        Kind.TEXT,
        _A,
        "the latest answer to the check-in after delivery",
        CHECKIN_ANSWERS,
        ("surveys", "checkin", "answer"),
    ),
    Field(
        "left_because",
        Kind.TEXT,
        _A,
        "the latest answer to the win-back survey",
        LEFT_BECAUSE,
        ("surveys", "winback", "answer"),
    ),
)

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}
PREFIXES = {"attributes": Source.ATTRIBUTE, "details": Source.DETAIL}

# presence of an address: `has email`
ADDRESSES = ("email", "phone")


def lookup(name: str) -> Field | None:
    """The field a rule names, or None; `attributes.X` and `details.X` name any key."""
    if name in FIELDS:
        return FIELDS[name]
    head, dot, key = name.partition(".")
    if dot and head in PREFIXES and key and "." not in key:
        source = PREFIXES[head]
        known = FIELDS.get(key)
        if source is Source.DETAIL and known is not None and known.source is Source.DETAIL:
            return known
        return Field(name, Kind.ANY, source, f"the {head} key {key!r}")
    return None
