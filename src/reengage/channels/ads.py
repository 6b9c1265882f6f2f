"""A person as the ad platforms match them: each identifier normalised exactly as the platform
documents, then hashed with SHA-256 (lower-case hex) where the platform asks for a hash.

Meta Custom Audiences (Marketing API, "Customer File Custom Audiences", hashing and
normalising table), every key hashed:
  EMAIL    trim, lower-case
  PHONE    digits only, with the country code, no leading zeros (so no `+`)
  FN, LN   lower-case, no punctuation; UTF-8 letters kept (`zoë`)
  CT       lower-case letters only: no punctuation, special characters or spaces
  ST       US: the 2-letter ANSI code; elsewhere lower-case letters only, as CT
  ZIP      lower-case, no spaces; US: the first 5 digits; UK: area, district and sector
  COUNTRY  the ISO 3166-1 alpha-2 code, lower-case

Google Customer Match (Google Ads API "Customer Match" guide and UserIdentifier /
OfflineUserAddressInfo reference; Google Ads Help "Format your customer data file"):
  Email       no whitespace, lower-case, hashed. Google says removing the dots of gmail.com
              and googlemail.com addresses is not required (they are accepted either way),
              so the address is kept as written.
  Phone       E.164 with the `+` (`+393331234567`), hashed
  First Name  lower-case, spaces before, after and between removed beyond one, hashed
  Last Name   lower-case, no punctuation, hashed
  Country     the ISO 3166-1 alpha-2 code, NOT hashed
  Zip         as written (US: 5 digits, or 5+4), NOT hashed
"""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reengage.channels.sms import e164

META_SCHEMA = ("EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY")
META_CSV_HEADER = ("email", "phone", "fn", "ln", "ct", "st", "zip", "country")
GOOGLE_CSV_HEADER = ("Email", "Phone", "First Name", "Last Name", "Country", "Zip")


@dataclass(frozen=True)
class Person:
    """What reengage knows of a contact that an ad platform can match on."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2; also the region of a national phone


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _hashed(value: str | None) -> str:
    # a platform wants an empty cell, not the hash of nothing, for what is unknown
    return sha256_hex(value) if value else ""


def _letters(value: str) -> str:
    """Lower-case letters only (accented letters kept, in composed UTF-8)."""
    text = unicodedata.normalize("NFC", value.strip().lower())
    return "".join(ch for ch in text if ch.isalpha())


def _country(value: str | None) -> str | None:
    code = (value or "").strip()
    return code.upper() if len(code) == 2 and code.isalpha() else None


# -- Meta ---------------------------------------------------------------------------------


def meta_email(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text or None


def meta_phone(value: str | None, country: str | None) -> str | None:
    """Digits with the country code, no `+`, no leading zeros: `393331234567`."""
    number = e164(value, country) if value else None
    return number.lstrip("+").lstrip("0") if number else None


def meta_name(value: str | None) -> str | None:
    return _letters(value or "") or None


def meta_city(value: str | None) -> str | None:
    return _letters(value or "") or None


def meta_state(value: str | None, country: str | None) -> str | None:
    text = _letters(value or "")
    if _country(country) == "US" and len(text) != 2:
        return None  # Meta wants the 2-letter ANSI code for US states
    return text or None


def meta_zip(value: str | None, country: str | None) -> str | None:
    text = re.sub(r"\s+", "", (value or "").lower())
    code = _country(country)
    if code == "US":
        digits = re.match(r"\d{5}", text)
        return digits.group(0) if digits else None
    if code == "GB" and len(text) > 3:
        return text[:-2]  # area, district and sector: drop the unit (SW1A 1AA -> sw1a1)
    return text or None


def meta_country(value: str | None) -> str | None:
    code = _country(value)
    return code.lower() if code else None


def meta_values(person: Person) -> list[str | None]:
    """The person's normalised values in META_SCHEMA order (None where unknown)."""
    return [
        meta_email(person.email),
        meta_phone(person.phone, person.country),
        meta_name(person.first_name),
        meta_name(person.last_name),
        meta_city(person.city),
        meta_state(person.state, person.country),
        meta_zip(person.zip, person.country),
        meta_country(person.country),
    ]


def meta_row(person: Person) -> list[str]:
    """The person hashed, in META_SCHEMA order; "" where unknown."""
    return [_hashed(v) for v in meta_values(person)]


# -- Google -------------------------------------------------------------------------------


def google_email(value: str | None) -> str | None:
    text = "".join((value or "").split()).lower()
    return text or None


def google_phone(value: str | None, country: str | None) -> str | None:
    return e164(value, country) if value else None


def google_first_name(value: str | None) -> str | None:
    text = " ".join((value or "").lower().split())
    return text or None


def google_last_name(value: str | None) -> str | None:
    text = unicodedata.normalize("NFC", (value or "").lower())
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split()) or None


def google_country(value: str | None) -> str | None:
    return _country(value)


def google_zip(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None


@dataclass(frozen=True)
class GoogleIdentifiers:
    """The person as Customer Match takes them: hashes, and the two plain address fields."""

    hashed_email: str | None
    hashed_phone_number: str | None
    hashed_first_name: str | None
    hashed_last_name: str | None
    country_code: str | None
    postal_code: str | None

    @property
    def has_address(self) -> bool:
        # Google matches a mailing address only with all four parts
        return all(
            (self.hashed_first_name, self.hashed_last_name, self.country_code, self.postal_code)
        )

    def user_data(self) -> dict[str, list[dict[str, object]]]:
        """The Google Ads API UserData (REST JSON): one UserIdentifier per identifier."""
        identifiers: list[dict[str, object]] = []
        if self.hashed_email:
            identifiers.append({"hashedEmail": self.hashed_email})
        if self.hashed_phone_number:
            identifiers.append({"hashedPhoneNumber": self.hashed_phone_number})
        if self.has_address:
            identifiers.append(
                {
                    "addressInfo": {
                        "hashedFirstName": self.hashed_first_name,
                        "hashedLastName": self.hashed_last_name,
                        "countryCode": self.country_code,
                        "postalCode": self.postal_code,
                    }
                }
            )
        return {"userIdentifiers": identifiers}


def google_identifiers(person: Person) -> GoogleIdentifiers:
    def hashed(value: str | None) -> str | None:
        return sha256_hex(value) if value else None

    return GoogleIdentifiers(
        hashed_email=hashed(google_email(person.email)),
        hashed_phone_number=hashed(google_phone(person.phone, person.country)),
        hashed_first_name=hashed(google_first_name(person.first_name)),
        hashed_last_name=hashed(google_last_name(person.last_name)),
        country_code=google_country(person.country),
        postal_code=google_zip(person.zip),
    )


def google_row(person: Person) -> list[str]:
    """A row of Google's customer data file, in GOOGLE_CSV_HEADER order."""
    ids = google_identifiers(person)
    return [
        ids.hashed_email or "",
        ids.hashed_phone_number or "",
        ids.hashed_first_name or "",
        ids.hashed_last_name or "",
        ids.country_code or "",
        ids.postal_code or "",
    ]


# -- files --------------------------------------------------------------------------------


def matchable(platform: str, person: Person) -> bool:
    """Whether the person carries anything the platform can match on."""
    if platform == "meta":
        values = meta_values(person)
        return bool(values[0] or values[1] or (values[2] and values[3]))
    ids = google_identifiers(person)
    return bool(ids.hashed_email or ids.hashed_phone_number or ids.has_address)


def write_csv(platform: str, people: Iterable[Person], out: Path) -> int:
    """Write the platform's customer-list file (UTF-8 CSV, header row, values pre-hashed)
    by atomic rename; how many rows."""
    if platform not in ("meta", "google"):
        raise ValueError(f"unknown ad platform {platform!r}")
    header = META_CSV_HEADER if platform == "meta" else GOOGLE_CSV_HEADER
    row = meta_row if platform == "meta" else google_row
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    rows = 0
    with temporary.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for person in people:
            writer.writerow(row(person))
            rows += 1
    temporary.replace(out)
    return rows
