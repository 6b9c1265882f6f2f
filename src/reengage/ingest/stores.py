"""Where each kind of validated record goes: customers and products to state, orders and
events to facts (creating the contacts and products they name). One state transaction per
import: the facts are written inside it, so a failure leaves neither half."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Connection

from reengage.facts.kinds import EVENTS, ORDERS
from reengage.facts.writer import append
from reengage.state.contacts import (
    ConsentChange,
    contact_ids_by_customer,
    customers_for_emails,
    ensure_customers,
    record_consents,
    upsert_customers,
)
from reengage.state.products import ensure_products, upsert_products

CONSENT_COLUMNS = {"email_marketing": "email", "sms_marketing": "sms", "push_marketing": "push"}


@dataclass
class Stored:
    imported: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    created_contacts: int = 0
    created_products: int = 0
    consents: int = 0


def store_customers(conn: Connection, table: pa.Table, now: datetime) -> Stored:
    rows = table.to_pylist()
    upsert = upsert_customers(conn, rows, origin="customers", now=now)
    rejected_lines = {line for line, _ in upsert.rejected}
    changes = [
        ConsentChange(
            contact_id=upsert.contact_ids[row["customer_id"]],
            channel=channel,
            purpose="marketing",
            granted=bool(row[column]),
            source=row.get("consent_source") or "import",
            recorded_at=row.get("consent_at") or row.get("created_at") or now,
        )
        for row in rows
        if row["__line"] not in rejected_lines
        for column, channel in CONSENT_COLUMNS.items()
        if row.get(column) is not None
    ]
    return Stored(
        imported=upsert.inserted + upsert.updated,
        duplicates=upsert.unchanged,
        rejected=upsert.rejected,
        consents=record_consents(conn, changes),
    )


def store_products(conn: Connection, table: pa.Table, now: datetime) -> Stored:
    upsert = upsert_products(conn, table.to_pylist(), origin="products", now=now)
    return Stored(imported=upsert.inserted + upsert.updated, duplicates=upsert.unchanged)


def _column(table: pa.Table, name: str, values: list[Any], type_: pa.DataType) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, type_))


def store_orders(
    conn: Connection, con: duckdb.DuckDBPyConnection, table: pa.Table, facts: Path, now: datetime
) -> Stored:
    stored = Stored()
    emails = table.column("email").to_pylist()
    if any(e is not None for e in emails):
        # formats that know customers by email only (Shopify): find or create them
        by_email, stored.created_contacts = customers_for_emails(
            conn, sorted({e for e in emails if e}), origin="orders", now=now
        )
        ids = table.column("customer_id").to_pylist()
        filled = [c if c is not None else by_email[e] for c, e in zip(ids, emails, strict=True)]
        table = _column(table, "customer_id", filled, pa.string())
        _record_order_consents(conn, table, by_email)
    con.register("__orders", table)
    try:
        customers = con.sql("SELECT DISTINCT customer_id FROM __orders").fetchall()
        stored.created_contacts += ensure_customers(
            conn, [c for (c,) in customers], origin="orders", now=now
        )
        seen = con.sql(
            """SELECT product_id, any_value(title) AS title, any_value(unit_price) AS price,
                      any_value(currency) AS currency
               FROM __orders GROUP BY product_id"""
        ).to_arrow_table()
        stored.created_products = ensure_products(
            conn, {r.pop("product_id"): r for r in seen.to_pylist()}, origin="orders", now=now
        )
        # the id of a line is what the line says: the same line sent again is the same row
        lines = con.sql(
            """SELECT md5(concat_ws(chr(31), order_id, customer_id,
                          epoch_us(ordered_at)::VARCHAR, product_id, quantity::VARCHAR,
                          printf('%.4f', unit_price), currency, printf('%.4f', discount),
                          coalesce(coupon_code, ''), status)) AS line_id, *
               FROM __orders"""
        ).to_arrow_table()
    finally:
        con.unregister("__orders")
    result = append(facts, ORDERS, lines, ingested_at=now)
    stored.imported, stored.duplicates = result.written, result.duplicates
    return stored


def _record_order_consents(conn: Connection, table: pa.Table, by_email: dict[str, str]) -> None:
    marks = [
        (e, m, t)
        for e, m, t in zip(
            table.column("email").to_pylist(),
            table.column("accepts_marketing").to_pylist(),
            table.column("ordered_at").to_pylist(),
            strict=True,
        )
        if e is not None and m is not None
    ]
    ids = contact_ids_by_customer(conn, sorted({by_email[e] for e, _, _ in marks}))
    record_consents(
        conn,
        [
            ConsentChange(ids[by_email[e]], "email", "marketing", bool(m), "shopify", t)
            for e, m, t in sorted(marks, key=lambda x: x[2])
        ],
    )


def store_events(
    conn: Connection, con: duckdb.DuckDBPyConnection, table: pa.Table, facts: Path, now: datetime
) -> Stored:
    stored = Stored()
    con.register("__events", table)
    try:
        customers = con.sql(
            "SELECT DISTINCT customer_id FROM __events WHERE customer_id IS NOT NULL"
        ).fetchall()
        stored.created_contacts = ensure_customers(
            conn, [c for (c,) in customers], origin="events", now=now
        )
        events = con.sql(
            """SELECT * REPLACE (coalesce(event_id, 'h-' || md5(concat_ws(chr(31),
                          coalesce(customer_id, ''), coalesce(anonymous_id, ''), type,
                          epoch_us(occurred_at)::VARCHAR, coalesce(product_id, ''),
                          coalesce(session_id, ''), coalesce(properties, '')))) AS event_id,
                          lower(source) AS source, lower(device) AS device)
               FROM __events"""
        ).to_arrow_table()
    finally:
        con.unregister("__events")
    result = append(facts, EVENTS, events, ingested_at=now)
    stored.imported, stored.duplicates = result.written, result.duplicates
    return stored
