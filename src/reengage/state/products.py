"""The catalogue: products imported from the shop or first seen in its orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from reengage.state.contacts import chunks
from reengage.state.schema import products

FIELDS = (
    "title",
    "category",
    "brand",
    "price",
    "currency",
    "url",
    "image_url",
    "description",
    "in_stock",
)


@dataclass
class ProductUpsert:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def _stored(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for part in chunks(ids):
        rows = conn.execute(select(products).where(products.c.product_id.in_(part)))
        stored.update({r.product_id: dict(r._mapping) for r in rows})
    return stored


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | Decimal) or isinstance(b, float | Decimal):
        return a is not None and b is not None and round(float(a), 2) == round(float(b), 2)
    return bool(a == b)


def upsert_products(
    conn: Connection, rows: list[dict[str, Any]], *, origin: str, now: datetime
) -> ProductUpsert:
    """Insert new products and update changed ones; a repeated id: the later row wins."""
    result = ProductUpsert()
    stored = _stored(conn, list(dict.fromkeys(r["product_id"] for r in rows)))
    new: dict[str, dict[str, Any]] = {}
    changes: dict[str, dict[str, Any]] = {}
    for row in rows:
        pid = row["product_id"]
        values = {f: row.get(f) for f in FIELDS if row.get(f) is not None}
        before = new.get(pid) or stored.get(pid)
        if before is None:
            new[pid] = {
                "product_id": pid,
                **dict.fromkeys(FIELDS),
                "in_stock": True,
                **values,
                "created_at": row.get("created_at") or now,
                "updated_at": now,
                "origin": origin,
            }
            result.inserted += 1
            continue
        changed = {f: v for f, v in values.items() if not _same(before.get(f), v)}
        if not changed:
            result.unchanged += 1
            continue
        before.update(changed)
        if pid not in new:
            changes.setdefault(pid, {}).update(changed)
        result.updated += 1
    for pid, changed in changes.items():
        conn.execute(
            products.update().where(products.c.product_id == pid).values(**changed, updated_at=now)
        )
    for part in chunks(list(new.values())):
        conn.execute(products.insert(), list(part))
    return result


def ensure_products(
    conn: Connection, seen: dict[str, dict[str, Any]], *, origin: str, now: datetime
) -> int:
    """Create the products of `seen` (id -> what an order says of it) not known yet; how many."""
    stored = _stored(conn, list(seen))
    missing = [
        {
            "product_id": pid,
            "title": info.get("title"),
            "price": info.get("price"),
            "currency": info.get("currency"),
            "in_stock": True,
            "created_at": now,
            "updated_at": now,
            "origin": origin,
        }
        for pid, info in seen.items()
        if pid not in stored
    ]
    for part in chunks(missing):
        conn.execute(products.insert(), list(part))
    return len(missing)
