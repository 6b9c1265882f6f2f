"""Import formats: how each file lays out a kind of record, and how it maps to reengage's own.

A format reads a file into string columns, names the typed fields to validate, and gives the
SQL that turns validated rows into the canonical columns of the kind (`CANONICAL`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from reengage.errors import InputError
from reengage.ingest.csvfile import (
    RawTable,
    open_delimited,
    read_chunks,
    read_delimited,
    read_whitespace,
)
from reengage.ingest.fields import Field, ParseOptions
from reengage.ingest.vocabulary import EVENT_TYPES, ORDER_STATUSES

KINDS = ("customers", "products", "orders", "events")

# The generic format of each kind: its columns are reengage's canonical ones.
CANONICAL: dict[str, list[Field]] = {
    "customers": [
        Field("customer_id", "id", required=True),
        Field("email", "email"),
        Field("phone", "text"),
        Field("first_name", "text"),
        Field("last_name", "text"),
        Field("language", "text"),
        Field("country", "text"),
        Field("city", "text"),
        Field("timezone", "text"),
        Field("birthday", "date"),
        Field("created_at", "datetime"),
        Field("email_marketing", "boolean"),
        Field("sms_marketing", "boolean"),
        Field("push_marketing", "boolean"),
        Field("consent_source", "text"),
        Field("consent_at", "datetime"),
    ],
    "products": [
        Field("product_id", "id", required=True),
        Field("title", "text", required=True),
        Field("category", "text"),
        Field("brand", "text"),
        Field("price", "amount", required=True),
        Field("currency", "text"),
        Field("url", "text"),
        Field("image_url", "text"),
        Field("description", "text"),
        Field("in_stock", "boolean"),
        Field("created_at", "datetime"),
    ],
    "orders": [
        Field("order_id", "id", required=True),
        Field("customer_id", "id", required=True),
        Field("ordered_at", "datetime", required=True),
        Field("product_id", "id", required=True),
        Field("quantity", "count", required=True),
        Field("unit_price", "amount", required=True),
        Field("currency", "text"),
        Field("discount", "amount"),
        Field("coupon_code", "text"),
        Field("status", "choice", choices=ORDER_STATUSES),
    ],
    "events": [
        Field("event_id", "id"),
        Field("customer_id", "id"),
        Field("anonymous_id", "id"),
        Field(
            "type",
            "choice",
            required=True,
            choices=tuple(EVENT_TYPES),
            expected="unknown event type (the vocabulary is in docs/formats.md)",
        ),
        Field("occurred_at", "datetime", required=True),
        Field("product_id", "id"),
        Field("session_id", "id"),
        Field("source", "text"),
        Field("device", "text"),
        Field("duration_s", "amount"),
        Field("properties", "json"),
    ],
}

ROW_CHECKS: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": (
        ("__p.quantity < 1", "quantity: must be at least 1"),
        (
            "coalesce(__p.discount, 0) > __p.quantity * __p.unit_price + 0.005",
            "discount: larger than the line's total",
        ),
    ),
    "events": (
        (
            "__p.customer_id IS NULL AND __p.anonymous_id IS NULL",
            "customer_id or anonymous_id: one of them is required",
        ),
    ),
}


@dataclass(frozen=True)
class Format:
    name: str
    kinds: tuple[str, ...]

    def pieces(
        self, kind: str, path: Path, delimiter: str | None, chunk_bytes: int
    ) -> Iterator[tuple[RawTable, int, int]]:
        """The file's records in pieces: (records, bytes read so far, bytes in all)."""
        source = open_delimited(path, delimiter)
        for raw, done in read_chunks(source, chunk_bytes):
            yield raw, done, source.size

    def fields(self, kind: str) -> list[Field]:
        return CANONICAL[kind]

    def row_checks(self, kind: str) -> tuple[tuple[str, str], ...]:
        return ROW_CHECKS.get(kind, ())

    def options(self, opts: ParseOptions) -> ParseOptions:
        return opts

    def prepare_sql(self, kind: str) -> str | None:
        """SQL over the raw strings (`__raw`) run before validation, or None."""
        return None

    def canonical_sql(self, kind: str, currency: str) -> str:
        """SQL over the validated rows (`__typed`) giving the kind's canonical columns."""
        if kind == "orders":
            return f"""
                SELECT __line, order_id, customer_id, NULL::VARCHAR AS email, ordered_at,
                       product_id, NULL::VARCHAR AS title, quantity::INTEGER AS quantity,
                       unit_price, upper(coalesce(currency, '{currency}')) AS currency,
                       coalesce(discount, 0.0) AS discount, coupon_code,
                       coalesce(status, 'paid') AS status,
                       NULL::BOOLEAN AS accepts_marketing
                FROM __typed"""
        if kind == "products":
            return (
                f"SELECT * REPLACE (upper(coalesce(currency, '{currency}')) AS currency) "
                "FROM __typed"
            )
        return "SELECT * FROM __typed"

    def check_columns(self, kind: str, raw: RawTable, path: Path) -> None:
        """Unusable input (exit 2) when a required column is absent: nothing is written."""
        present = set(raw.header)
        missing = [f.name for f in self.fields(kind) if f.required and f.name not in present]
        if missing:
            raise InputError(
                f"{path}: required column {missing[0]!r} is absent "
                f"(the {self.name} {kind} format needs: "
                f"{', '.join(f.name for f in self.fields(kind) if f.required)})"
            )


class Whole(Format):
    """A format read in one piece: its rows depend on one another across the file."""

    def read(self, kind: str, path: Path, delimiter: str | None) -> RawTable:
        return read_delimited(path, delimiter)

    def pieces(
        self, kind: str, path: Path, delimiter: str | None, chunk_bytes: int
    ) -> Iterator[tuple[RawTable, int, int]]:
        raw = self.read(kind, path, delimiter)
        size = path.stat().st_size
        yield raw, size, size


class Shopify(Whole):
    """Shopify's orders export: one row per line item, order fields on the order's first row.

    Read whole: an order's later rows take their order fields from its first row.
    """

    ORDER_LEVEL = (
        "email",
        "created at",
        "currency",
        "financial status",
        "cancelled at",
        "discount code",
        "accepts marketing",
    )

    def fields(self, kind: str) -> list[Field]:
        return [
            Field("name", "id", required=True),
            Field("email", "email", required=True),
            Field("created at", "datetime", required=True),
            Field("lineitem quantity", "count", required=True),
            Field("lineitem name", "text", required=True),
            Field("lineitem price", "amount", required=True),
            Field("lineitem sku", "text"),
            Field("lineitem discount", "amount"),
            Field("discount code", "text"),
            Field("financial status", "text"),
            Field("cancelled at", "datetime"),
            Field("currency", "text"),
            Field("accepts marketing", "boolean"),
        ]

    def row_checks(self, kind: str) -> tuple[tuple[str, str], ...]:
        return (('__p."lineitem quantity" < 1', "lineitem quantity: must be at least 1"),)

    def prepare_sql(self, kind: str) -> str:
        # Order-level columns are blank on an order's later rows: take them from its first.
        fills = ", ".join(
            f'max(nullif(trim("{c}"), \'\')) OVER (PARTITION BY trim("name")) AS "{c}"'
            for c in self.ORDER_LEVEL
        )
        return f"SELECT * REPLACE ({fills}) FROM __raw"

    def canonical_sql(self, kind: str, currency: str) -> str:
        return f"""
            SELECT __line, "name" AS order_id, NULL::VARCHAR AS customer_id, email,
                   "created at" AS ordered_at,
                   coalesce("lineitem sku",
                            'shopify:' || lower(regexp_replace("lineitem name", '\\W+', '-', 'g')))
                       AS product_id,
                   "lineitem name" AS title,
                   "lineitem quantity"::INTEGER AS quantity, "lineitem price" AS unit_price,
                   upper(coalesce(currency, '{currency}')) AS currency,
                   coalesce("lineitem discount", 0.0) AS discount,
                   "discount code" AS coupon_code,
                   CASE
                     WHEN "cancelled at" IS NOT NULL THEN 'cancelled'
                     WHEN lower("financial status") IN ('refunded', 'partially_refunded')
                       THEN 'refunded'
                     WHEN lower("financial status") = 'voided' THEN 'cancelled'
                     WHEN lower("financial status") IN ('pending', 'authorized') THEN 'pending'
                     ELSE 'paid'
                   END AS status,
                   "accepts marketing" AS accepts_marketing
            FROM __typed"""


class Cdnow(Whole):
    """CDNOW's transaction files: `customer date units dollars` (master) or with a second id
    column after the customer (sample). No header; fields separated by spaces.

    Read whole: a customer's purchases of one day are numbered across the file.
    """

    def read(self, kind: str, path: Path, delimiter: str | None) -> RawTable:
        return read_whitespace(path, ["customer_id", "sample_id", "date", "units", "value"], (4, 5))

    def fields(self, kind: str) -> list[Field]:
        return [
            Field("customer_id", "id", required=True),
            Field("date", "datetime", required=True),
            Field("units", "count", required=True),
            Field("value", "amount", required=True),
        ]

    def row_checks(self, kind: str) -> tuple[tuple[str, str], ...]:
        return (("__p.units < 1", "units: must be at least 1"),)

    def options(self, opts: ParseOptions) -> ParseOptions:
        return opts if opts.date_format else replace(opts, date_format="%Y%m%d")

    def prepare_sql(self, kind: str) -> str:
        # The sample's records have the second id before the date: shift them into place.
        return """
            SELECT __line, customer_id,
                   CASE WHEN value = '' THEN sample_id ELSE date END AS date,
                   CASE WHEN value = '' THEN date ELSE units END AS units,
                   CASE WHEN value = '' THEN units ELSE value END AS value
            FROM __raw"""

    def canonical_sql(self, kind: str, currency: str) -> str:
        # A customer's transactions on one day are numbered in file order, so the same file
        # gives the same order ids every time and identical lines stay separate purchases.
        return """
            SELECT __line,
                   customer_id || '-' || strftime(date, '%Y%m%d') || '-' ||
                     row_number() OVER (PARTITION BY customer_id, date ORDER BY __line)::VARCHAR
                     AS order_id,
                   customer_id, NULL::VARCHAR AS email, date AS ordered_at,
                   'cdnow' AS product_id, 'CDNOW purchase' AS title,
                   units::INTEGER AS quantity, value / units AS unit_price,
                   'USD' AS currency, 0.0 AS discount, NULL::VARCHAR AS coupon_code,
                   'paid' AS status, NULL::BOOLEAN AS accepts_marketing
            FROM __typed"""

    def check_columns(self, kind: str, raw: RawTable, path: Path) -> None:
        return None


FORMATS: dict[str, Format] = {
    "generic": Format("generic", KINDS),
    "shopify": Shopify("shopify", ("orders",)),
    "cdnow": Cdnow("cdnow", ("orders",)),
}


def format_for(name: str, kind: str) -> Format:
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    fmt = FORMATS.get(name)
    if fmt is None:
        raise InputError(f"unknown format {name!r} (known: {', '.join(FORMATS)})")
    if kind not in fmt.kinds:
        raise InputError(f"the {name} format holds {', '.join(fmt.kinds)}, not {kind}")
    return fmt
