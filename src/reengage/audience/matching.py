"""Who matches each of many rules, as of a time: one pass over the contacts for all of them.

1. The distinct activities of all the rules are counted over the facts in DuckDB
   (`behaviour.evaluate`): one row per customer who did any, a bit per activity.
2. Those rows are loaded into a temporary table of the state store's session.
3. One INSERT ... SELECT over contacts, their latest scores and that table writes a second
   temporary table: the contacts that match at least one rule, a bit per rule.

Each segment's refresh then compares its bit with its stored members inside the state store,
so no list of contact ids travels through Python. The temporary tables belong to the
connection: `drop` them when done (they vanish with the connection anyway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    FromClause,
    Index,
    MetaData,
    String,
    Table,
    case,
    literal_column,
    select,
)

from reengage.audience import behaviour
from reengage.audience.conditions import Rule
from reengage.audience.predicates import Scope, join_latest_scores, reads_scores, to_sql
from reengage.facts import reader
from reengage.state.schema import Id, contacts, products

RULES_PER_COLUMN = 62
ACTIVITY_TABLE = "reengage_segment_activity"
MATCHES_TABLE = "reengage_segment_matches"
LOAD_BATCH = 50_000


@dataclass(frozen=True)
class Matches:
    """The temporary table of matches and where each rule's bit is in it."""

    table: Table
    places: dict[str, tuple[str, int]]

    def matching(self, name: str) -> ColumnElement[bool]:
        """A condition on the matches table: the contact matches the named rule."""
        column, bit = self.places[name]
        mask = literal_column(str(1 << bit), BigInteger)
        return self.table.c[column].op("&", return_type=BigInteger)(mask) != 0


def _temporary(name: str, *columns: Column[Any]) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def no_jit(conn: Connection) -> None:
    """For the rest of the transaction, no JIT compilation on PostgreSQL: these statements
    look costly enough to trigger it, but compiling them takes longer than running them."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def drop(conn: Connection) -> None:
    """Drop the temporary tables, if this connection has them."""
    schema = "temp." if conn.dialect.name == "sqlite" else ""
    for name in (ACTIVITY_TABLE, MATCHES_TABLE):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}{name}")


def _catalogue(conn: Connection) -> pa.Table:
    rows = conn.execute(select(products.c.product_id, products.c.category)).all()
    return pa.table(
        {
            "product_id": pa.array([r.product_id for r in rows], pa.string()),
            "category": pa.array([r.category for r in rows], pa.string()),
        }
    )


def _load(conn: Connection, table: Table, data: pa.Table) -> None:
    """Insert an Arrow table's rows the fast way: COPY on PostgreSQL, executemany on SQLite."""
    names = [c.name for c in table.columns]
    quoted = ", ".join(f'"{n}"' for n in names)
    driver = conn.connection.driver_connection
    assert driver is not None
    for batch in data.select(names).to_batches(LOAD_BATCH):
        rows = list(zip(*(column.to_pylist() for column in batch.columns), strict=True))
        if conn.dialect.name == "postgresql":
            with driver.cursor() as cur, cur.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            marks = ", ".join("?" for _ in names)
            cursor = driver.cursor()
            try:
                cursor.executemany(f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})", rows)
            finally:
                cursor.close()


def match(
    conn: Connection,
    facts: Path,
    rules: Mapping[str, Rule],
    now: datetime,
    *,
    only: Sequence[int] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Matches:
    """Write the temporary matches table of these rules as of `now` (in the caller's
    transaction) and say where each rule's bit is; `only`: for these contact ids alone (a
    journey's branch, for the enrollments of a batch); `con`: the facts connection to use
    (a replay's) instead of a new one."""
    no_jit(conn)
    drop(conn)
    activities = sorted({a for rule in rules.values() for a in rule.activities}, key=repr)
    scope = Scope(dialect=conn.dialect.name, now=now)
    source = contacts
    joined: FromClause = contacts
    if activities:
        catalogue = _catalogue(conn) if any(a.category for a in activities) else None
        if con is not None:
            found, plan = behaviour.evaluate(con, activities, now, catalogue)
        else:
            own = reader.connect(facts)
            try:
                found, plan = behaviour.evaluate(own, activities, now, catalogue)
            finally:
                own.close()
        activity = _temporary(
            ACTIVITY_TABLE,
            Column("customer_id", String(128), nullable=False),
            *(Column(c, BigInteger, nullable=False) for c in plan.columns),
        )
        activity.create(conn)
        _load(conn, activity, found)
        # indexed once loaded: one sort instead of a B-tree insert per row
        Index(f"ix_{ACTIVITY_TABLE}", activity.c.customer_id, unique=True).create(conn)
        _analyze(conn, activity)
        scope.activity, scope.bits = activity, plan.bits
    conditions = [rule.condition for rule in rules.values()]
    if reads_scores(conditions):
        joined = join_latest_scores(joined, scope)
    if scope.activity is not None:
        joined = joined.outerjoin(
            scope.activity, scope.activity.c.customer_id == source.c.customer_id
        )

    places = {
        name: (f"g{i // RULES_PER_COLUMN}", i % RULES_PER_COLUMN) for i, name in enumerate(rules)
    }
    groups = list(dict.fromkeys(column for column, _ in places.values()))
    table = _temporary(
        MATCHES_TABLE,
        Column("contact_id", Id, primary_key=True),
        *(Column(g, BigInteger, nullable=False) for g in groups),
    )
    table.create(conn)
    sums: dict[str, ColumnElement[int]] = {}
    for name, rule in rules.items():
        column, bit = places[name]
        flag = literal_column(str(1 << bit), BigInteger)
        term = case((to_sql(rule.condition, scope), flag), else_=0)
        sums[column] = term if column not in sums else sums[column] + term
    # every contact gets a row, matching or not: filtering here would make SQLite evaluate
    # every rule twice (once to filter, once to store)
    every = select(
        source.c.id.label("contact_id"), *(sums[g].label(g) for g in groups)
    ).select_from(joined)
    if only is not None:
        every = every.where(source.c.id.in_(list(only)))
    conn.execute(table.insert().from_select(["contact_id", *groups], every))
    _analyze(conn, table)
    return Matches(table, places)


def _analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL never analyses temporary tables by itself: without statistics it plans the
    joins on them as if they were tiny."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")
