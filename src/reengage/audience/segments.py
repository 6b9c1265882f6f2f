"""Segments in state: refresh their members as of a time, and read them back.

`refresh_segments` evaluates the rules (`definitions`) as of the clock's now and writes, for
each segment in its own transaction, only the differences: the contacts who entered (a row in
`segment_members`, an `enter` transition) and those who left (the row removed, an `exit`
transition). An error leaves each segment as it was before its transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    String,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from reengage.audience import matching
from reengage.audience.conditions import Rule
from reengage.audience.definitions import (
    SUFFIX,
    Segment,
    check_name,
    create_segment,
    display_path,
    folder,
    load_segment,
    load_segments,
)
from reengage.audience.tables import segment_members, segment_transitions, segments
from reengage.clock import Clock, as_utc
from reengage.config import Home
from reengage.errors import InputError, StoreError
from reengage.state.schema import contacts

RECENT = {"1d": 1, "7d": 7, "30d": 30}

Progress = Callable[[str, int, int], None]

__all__ = [
    "RefreshSummary",
    "Segment",
    "create_segment",
    "evaluate",
    "list_segments",
    "load_segments",
    "members",
    "refresh_segments",
    "show_segment",
]


@dataclass
class RefreshSummary:
    segment: str
    size: int
    entered: int
    exited: int
    refreshed_at: str


# --- refresh ------------------------------------------------------------------------------


def refresh_segments(
    home: Home,
    engine: Engine,
    clock: Clock,
    names: Iterable[str] | None = None,
    progress: Progress | None = None,
    facts: duckdb.DuckDBPyConnection | None = None,
) -> list[RefreshSummary]:
    """Recompute the members of every segment (or the named ones) as of the clock's now
    (`facts`: a facts connection to read from, a replay's, instead of a new one)."""
    defined = load_segments(home, names)
    if not defined:
        return []
    now = as_utc(clock.now())
    summaries: list[RefreshSummary] = []
    with engine.connect() as conn:
        try:
            with conn.begin():
                rules = {n: s.rule for n, s in defined.items()}
                found = matching.match(conn, home.settings.facts_path, rules, now, con=facts)
            for i, segment in enumerate(defined.values()):
                try:
                    with conn.begin():
                        matching.no_jit(conn)
                        summaries.append(_apply(conn, segment, found, now))
                except (IntegrityError, OperationalError) as exc:
                    # a contact erased meanwhile, a store busy for too long
                    raise StoreError(
                        f"segment {segment.name}: the state store refused the refresh "
                        f"({exc.orig}); this segment is as it was, run the refresh again"
                    ) from None
                if progress:
                    progress("refreshing segments", i + 1, len(defined))
        finally:
            # the temporary tables would go with the connection; a pooled one lives on
            with contextlib.suppress(SQLAlchemyError), conn.begin():
                matching.drop(conn)
    return summaries


def _apply(
    conn: Connection, segment: Segment, found: matching.Matches, now: datetime
) -> RefreshSummary:
    """Write one segment's differences: exits, then entries, then its refresh record."""
    name = segment.name
    record = {
        "description": segment.description,
        "rule": segment.rule.text,
        "refreshed_at": now,
    }
    # first statement: takes the segment's row lock (PostgreSQL) or the write lock (SQLite),
    # so two refreshes of one segment never interleave
    claimed = conn.execute(update(segments).where(segments.c.name == name).values(record))
    if claimed.rowcount == 0:
        conn.execute(insert(segments).values(name=name, size=0, entered=0, exited=0, **record))
    m, t, x = segment_members, segment_transitions, found.table
    tag = literal(name, String)
    at = literal(now, DateTime(timezone=True))
    matches = found.matching(name)
    still = exists().where(x.c.contact_id == m.c.contact_id, matches)
    leaving = select(tag, m.c.contact_id, literal("exit", String), at).where(
        m.c.segment == name, ~still
    )
    counted = {"preserve_rowcount": True}  # PostgreSQL drivers forget it for an INSERT
    exited = conn.execute(
        insert(t).from_select(["segment", "contact_id", "kind", "at"], leaving),
        execution_options=counted,
    ).rowcount
    if exited:
        conn.execute(delete(m).where(m.c.segment == name, ~still))
    member = exists().where(m.c.segment == name, m.c.contact_id == x.c.contact_id)
    coming = select(tag, x.c.contact_id, literal("enter", String), at).where(matches, ~member)
    entered = conn.execute(
        insert(t).from_select(["segment", "contact_id", "kind", "at"], coming),
        execution_options=counted,
    ).rowcount
    if entered:
        joining = select(tag, x.c.contact_id, at).where(matches, ~member)
        conn.execute(insert(m).from_select(["segment", "contact_id", "entered_at"], joining))
    size = conn.execute(select(func.count()).select_from(m).where(m.c.segment == name)).scalar_one()
    conn.execute(
        update(segments)
        .where(segments.c.name == name)
        .values(size=size, entered=entered, exited=exited)
    )
    return RefreshSummary(name, size, entered, exited, now.isoformat())


def evaluate(
    home: Home, engine: Engine, rules: Mapping[str, Rule], now: datetime
) -> dict[str, set[int]]:
    """The contact ids each rule matches as of `now`, as a refresh would find them, without
    storing anything."""
    found_ids: dict[str, set[int]] = {name: set() for name in rules}
    if not rules:
        return found_ids
    with engine.connect() as conn:
        try:
            with conn.begin():
                found = matching.match(conn, home.settings.facts_path, rules, as_utc(now))
                rows = conn.execute(select(found.table)).all()
        finally:
            with contextlib.suppress(SQLAlchemyError), conn.begin():
                matching.drop(conn)
    for row in rows:
        values = row._mapping
        for name, (column, bit) in found.places.items():
            if (values[column] >> bit) & 1:
                found_ids[name].add(values["contact_id"])
    return found_ids


# --- membership ---------------------------------------------------------------------------


def members(conn: Connection, name: str) -> set[int]:
    """The contact ids in a segment now (as of its last refresh)."""
    rows = conn.execute(
        select(segment_members.c.contact_id).where(segment_members.c.segment == name)
    )
    return set(rows.scalars())


def list_segments(home: Home, engine: Engine) -> list[dict[str, Any]]:
    """Every segment: defined in a file, refreshed in state, or both. A file that cannot be
    used is listed with its error."""
    with engine.connect() as conn:
        stored = {r.name: r for r in conn.execute(select(segments))}
    base = folder(home)
    paths = sorted(base.glob("*" + SUFFIX)) if base.is_dir() else []
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        entry: dict[str, Any] = {"name": path.stem, "file": display_path(home, path)}
        try:
            segment = load_segment(home, path)
            entry |= {"description": segment.description, "rule": segment.rule.text}
        except InputError as exc:
            entry |= {"description": None, "rule": None, "error": str(exc)}
        out[path.stem] = entry
    for name, row in stored.items():
        entry = out.setdefault(
            name, {"name": name, "file": None, "description": row.description, "rule": row.rule}
        )
        entry |= {"size": row.size, "refreshed_at": _iso(row.refreshed_at)}
    for entry in out.values():
        entry.setdefault("size", None)
        entry.setdefault("refreshed_at", None)
    return [out[n] for n in sorted(out)]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat()


def show_segment(
    home: Home, engine: Engine, name: str, clock: Clock, sample: int = 10
) -> dict[str, Any]:
    """A segment's definition, size, last refresh, some members and its recent movements."""
    check_name(name)
    path = folder(home) / (name + SUFFIX)
    segment = load_segment(home, path) if path.is_file() else None
    now = as_utc(clock.now())
    m, t = segment_members, segment_transitions
    with engine.connect() as conn:
        row = conn.execute(select(segments).where(segments.c.name == name)).first()
        if segment is None and row is None:
            raise InputError(f"no segment named {name!r}")
        picked = conn.execute(
            select(contacts.c.customer_id)
            .join(m, m.c.contact_id == contacts.c.id)
            .where(m.c.segment == name)
            .order_by(m.c.contact_id)
            .limit(sample)
        ).scalars()
        customer_ids = list(picked)
        recent: dict[str, dict[str, int]] = {}
        for label, days in RECENT.items():
            counted = conn.execute(
                select(t.c.kind, func.count())
                .where(t.c.segment == name, t.c.at >= now - timedelta(days=days), t.c.at <= now)
                .group_by(t.c.kind)
            ).all()
            got = {kind: n for kind, n in counted}
            recent[label] = {"entered": got.get("enter", 0), "exited": got.get("exit", 0)}
    return {
        "name": name,
        "description": segment.description if segment else row.description if row else None,
        "rule": segment.rule.text if segment else row.rule if row else None,
        "file": display_path(home, path) if segment else None,
        "size": row.size if row else None,
        "refreshed_at": _iso(row.refreshed_at) if row else None,
        "last_refresh": {"entered": row.entered, "exited": row.exited} if row else None,
        "sample": customer_ids,
        "transitions": recent,
    }
