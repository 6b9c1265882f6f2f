"""Who the customers are: names, contact details, where they live and what they consented to.

Everything is made up: e-mail addresses use the reserved example.* domains. Phone numbers follow
each country's mobile format; the drama ranges set aside for fiction are far too small for
unique numbers, so their digits are a scrambled customer number instead.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reengage.demo.columns import DAY, iso_dates, iso_timestamps, pick, prefixed_ids, scatter


@dataclass(frozen=True)
class Locale:
    language: str
    country: str
    timezone: str
    share: float
    phone_prefix: str  # the fixed part of every number
    phone_digits: int  # digits after it
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]  # most populous first: picked with Zipf-like weights


LOCALES = (
    Locale(
        "it", "IT", "Europe/Rome", 0.5, "+393", 9,
        ("Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sara", "Matteo",
         "Martina", "Lorenzo", "Elena", "Davide", "Valentina", "Andrea", "Federica", "Simone",
         "Niccolò", "Beatrice", "Tommaso", "Aurora"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Costa", "Giordano",
         "Mancini", "Rizzo", "Lombardi", "Moretti"),
        ("Milano", "Roma", "Torino", "Napoli", "Bologna", "Firenze", "Verona", "Genova", "Bari",
         "Padova"),
    ),
    Locale(
        "en", "GB", "Europe/London", 0.3, "+4477", 8,
        ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie",
         "Sophie", "Thomas", "Grace", "James", "Lily", "William", "Freya", "Noah", "Ella",
         "Oscar", "Chloe"),
        ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
         "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
         "Hall", "Wood", "Jackson", "O'Connor"),
        ("London", "Manchester", "Birmingham", "Leeds", "Bristol", "Glasgow", "Edinburgh",
         "Brighton", "Cardiff", "York"),
    ),
    Locale(
        "fr", "FR", "Europe/Paris", 0.2, "+336", 8,
        ("Camille", "Louis", "Léa", "Gabriel", "Chloé", "Jules", "Manon", "Hugo", "Inès",
         "Arthur", "Zoé", "Lucas", "Élodie", "Théo", "Margaux", "Nathan", "Juliette", "Raphaël",
         "Alice", "Étienne"),
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David",
         "Bertrand", "Roux", "Fontaine", "Girard"),
        ("Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux", "Lille", "Nantes", "Strasbourg",
         "Nice", "Montpellier"),
    ),
)  # fmt: skip
PHONE_MULTIPLIER, PHONE_SHIFT = 7_654_321, 31_415_926
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
# Consent per channel: P(yes), P(no); the rest is "not recorded".
SMS_CONSENT = (0.3, 0.55)
PUSH_CONSENT = (0.2, 0.45)
EMAIL_CONSENT = (0.62, 0.32)  # for those who did not sign up to the newsletter
CONSENT_VALUES = ("yes", "no")
CONSENT_SOURCES = ("checkout", "account", "newsletter_form")
CHECKOUT, ACCOUNT, NEWSLETTER_FORM = range(3)


def _slug(name: str) -> str:
    """The ASCII, lower-case form of a name, as people type it in an e-mail address."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalnum())


# Flat name tables over all locales: a person's name index is offset by their locale's block.
_FIRST = [name for loc in LOCALES for name in loc.first_names]
_LAST = [name for loc in LOCALES for name in loc.last_names]
_FIRST_OFFSETS = np.cumsum([0] + [len(loc.first_names) for loc in LOCALES])
_LAST_OFFSETS = np.cumsum([0] + [len(loc.last_names) for loc in LOCALES])
_CITY_WEIGHTS = 1.0 / np.arange(1, 11)


@dataclass
class Consents:
    """Marketing consent per person; codes index CONSENT_VALUES / CONSENT_SOURCES, -1 = empty."""

    email: np.ndarray
    sms: np.ndarray
    push: np.ndarray
    source: np.ndarray
    at: np.ndarray  # unix seconds, -1 = empty


def draw_consents(
    rng: np.random.Generator,
    buyer: np.ndarray,
    created_at: np.ndarray,
    newsletter_at: np.ndarray,
) -> Consents:
    """Newsletter subscribers consented to e-mail on the form; others at checkout or sign-up."""
    n = len(buyer)

    def channel(yes_no: tuple[float, float]) -> np.ndarray:
        u = rng.random(n)
        return np.where(u < yes_no[0], 0, np.where(u < yes_no[0] + yes_no[1], 1, -1))

    subscribed = newsletter_at >= 0
    email = np.where(subscribed, 0, channel(EMAIL_CONSENT))
    sms, push = channel(SMS_CONSENT), channel(PUSH_CONSENT)
    recorded = (email >= 0) | (sms >= 0) | (push >= 0)
    source = np.where(
        subscribed, NEWSLETTER_FORM, np.where(recorded, np.where(buyer, CHECKOUT, ACCOUNT), -1)
    )
    at = np.where(subscribed, newsletter_at, np.where(recorded, created_at, -1))
    return Consents(email=email, sms=sms, push=push, source=source, at=at)


def customers_table(
    rng: np.random.Generator,
    numbers: np.ndarray,
    id_width: int,
    created_at: np.ndarray,
    consents: Consents,
    end: int,
) -> pa.Table:
    """customers.csv rows for customers numbered `numbers` (1-based, unique across the shop)."""
    n = len(numbers)
    locale = rng.choice(len(LOCALES), n, p=[loc.share for loc in LOCALES])
    first = _FIRST_OFFSETS[locale] + rng.integers(0, 20, n)
    last = _LAST_OFFSETS[locale] + rng.integers(0, 20, n)
    city = locale * 10 + rng.choice(10, n, p=_CITY_WEIGHTS / _CITY_WEIGHTS.sum())

    # The customer number makes every address unique whatever the names.
    email = pc.binary_join_element_wise(
        pick([_slug(name) for name in _FIRST], first),
        pick([".", "", "_"], rng.choice(3, n, p=[0.6, 0.3, 0.1])),
        pick([_slug(name) for name in _LAST], last),
        pc.cast(pa.array(numbers), pa.string()),
        "@",
        pick(EMAIL_DOMAINS, rng.choice(3, n, p=[0.5, 0.3, 0.2])),
        "",
    )

    has_phone = rng.random(n) < 0.65
    phone_parts = []
    for k, loc in enumerate(LOCALES):
        rows = np.flatnonzero(has_phone & (locale == k))
        # An affine map with a multiplier prime to 10 permutes the numbers below 10**k, so
        # distinct customers get distinct phones: reengage treats a phone as an identity.
        digits = (PHONE_MULTIPLIER * numbers[rows] + PHONE_SHIFT) % 10**loc.phone_digits
        phone_parts.append((rows, prefixed_ids(loc.phone_prefix, digits, loc.phone_digits)))

    # Ages 18 to 80, most between 25 and 50; a third never gave a birthday.
    age_days = (18 + rng.gamma(4.0, 5.0, n).clip(0, 62)) * 365.25
    birthday = end // DAY - age_days.astype(np.int64)
    no_birthday = rng.random(n) >= 0.67

    return pa.table(
        {
            "customer_id": prefixed_ids("C", numbers, id_width),
            "email": email,
            "phone": scatter(n, phone_parts),
            "first_name": pick(_FIRST, first),
            "last_name": pick(_LAST, last),
            "language": pick([loc.language for loc in LOCALES], locale),
            "country": pick([loc.country for loc in LOCALES], locale),
            "city": pick([c for loc in LOCALES for c in loc.cities], city),
            "timezone": pick([loc.timezone for loc in LOCALES], locale),
            "birthday": _optional(iso_dates(birthday), no_birthday),
            "created_at": iso_timestamps(created_at),
            "email_marketing": pick(CONSENT_VALUES, consents.email),
            "sms_marketing": pick(CONSENT_VALUES, consents.sms),
            "push_marketing": pick(CONSENT_VALUES, consents.push),
            "consent_source": pick(CONSENT_SOURCES, consents.source),
            "consent_at": _optional(iso_timestamps(np.maximum(consents.at, 0)), consents.at < 0),
        }
    )


def _optional(values: pa.Array, empty: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(empty), pa.nulls(len(values), type=pa.string()), values)
