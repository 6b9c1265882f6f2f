"""Reading scored contacts back: the export of everyone, and one contact's profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, func, select

from reengage.errors import InputError
from reengage.state.contacts import current_consent
from reengage.state.schema import CHANNELS, consents, contacts, identities, scores

EXPORT_FORMATS = ("csv", "parquet", "json")


def latest_as_of(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(func.max(scores.c.as_of))).scalar()


def scored_contacts(engine: Engine) -> pa.Table:
    """One row per contact scored on the latest date: customer id, scores, then features."""
    as_of = latest_as_of(engine)
    if as_of is None:
        raise InputError("no scores yet: run `reengage score` first")
    with engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.customer_id, scores)
            .join(scores, scores.c.contact_id == contacts.c.id)
            .where(scores.c.as_of == as_of)
            .order_by(contacts.c.customer_id)
        ).all()
    records = []
    for r in rows:
        record = {k: v for k, v in r._mapping.items() if k not in ("id", "details")}
        details = r.details or {}
        record.update(
            {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in details.items()}
        )
        records.append(record)
    return pa.Table.from_pylist(records)


def export_contacts(engine: Engine, out: Path, fmt: str) -> int:
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    table = scored_contacts(engine)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    con = duckdb.connect()
    try:
        con.register("t", table)
        options = {
            "csv": "(HEADER, FORMAT CSV)",
            "parquet": "(FORMAT PARQUET)",
            "json": "(FORMAT JSON, ARRAY true)",
        }[fmt]
        con.sql(f"COPY t TO '{tmp}' {options}").fetchall()
    finally:
        con.close()
    tmp.replace(out)  # a reader never sees half an export
    return table.num_rows


def contact_profile(engine: Engine, customer_id: str) -> dict[str, Any]:
    """Everything reengage knows of one contact, found by customer id, email or phone."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(contacts)
                .join(identities, identities.c.contact_id == contacts.c.id)
                .where(identities.c.value == customer_id.strip().lower())
                .limit(1)
            ).first()
            or conn.execute(select(contacts).where(contacts.c.customer_id == customer_id)).first()
        )
        if row is None:
            raise InputError(f"no contact with the id, email or phone {customer_id!r}")
        profile = {k: v for k, v in row._mapping.items()}
        profile["identities"] = [
            {"kind": r.kind, "value": r.value}
            for r in conn.execute(
                select(identities.c.kind, identities.c.value)
                .where(identities.c.contact_id == row.id)
                .order_by(identities.c.kind)
            )
        ]
        profile["consents"] = {
            channel: current_consent(conn, row.id, channel, "marketing") for channel in CHANNELS
        }
        profile["consent_history"] = conn.execute(
            select(func.count()).select_from(consents).where(consents.c.contact_id == row.id)
        ).scalar_one()
        latest = conn.execute(
            select(scores)
            .where(scores.c.contact_id == row.id)
            .order_by(scores.c.as_of.desc())
            .limit(1)
        ).first()
        profile["scores"] = (
            None
            if latest is None
            else {k: v for k, v in latest._mapping.items() if k not in ("id", "contact_id")}
        )
    return profile
