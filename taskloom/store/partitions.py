"""PostgreSQL: the ``events`` table partitioned by month, for stores of hundreds of millions of events.

A plain ``events`` table serves well into the tens of millions of rows (``docs/scaling.md`` has the
figures). Past that, two costs grow with the table: its indexes no longer fit in memory, and pruning
deletes rows one by one, leaving dead tuples for VACUUM. Partitioned by the events' time (``ts``), the
recent months' indexes stay small and hot, and an old month that pruning emptied is dropped at once.

``taskloom partition-events`` (or :func:`partition_events`) converts the table in one transaction (it
copies the rows: run it on a new store, or in a maintenance window for a big one) and creates a
partition per month from the oldest event to ``months_ahead`` months ahead, plus a DEFAULT partition
that catches anything outside them, so an insert never fails for want of a partition. Every prune
(:mod:`taskloom.retention`) then keeps the months ahead created and drops the months before its cutoff
that hold no rows: a month that still holds a live execution's events stays until they are pruned.

Nothing in taskloom depends on the layout: the statements are the same on both.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskloom.errors import StoreError
from taskloom.store.statements import is_postgres

if TYPE_CHECKING:
    from taskloom.store.base import Store

__all__ = ["PartitionReport", "is_partitioned", "maintain_partitions", "partition_events"]

_MONTH = re.compile(r"^events_(\d{4})_(\d{2})$")


@dataclass
class PartitionReport:
    converted: bool = False
    #: rows copied from the plain table into the partitioned one
    moved_rows: int = 0
    #: rows moved from the DEFAULT partition into a month created for them
    sorted_rows: int = 0
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _next_month(day: dt.date) -> dt.date:
    """The first day of the month after ``day``'s."""
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _months_ahead(today: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after ``today``'s."""
    month = today.replace(day=1)
    for _ in range(months):
        month = _next_month(month)
    return month


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    """The first day of every month from ``start``'s to ``end``'s, both included."""
    month = start.replace(day=1)
    found = []
    while month <= end:
        found.append(month)
        month = _next_month(month)
    return found


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _name(month: dt.date) -> str:
    return f"events_{month.year:04d}_{month.month:02d}"


def _postgres(store: Store) -> None:
    if not is_postgres(store):
        raise StoreError("partitioning the events table is for PostgreSQL stores only (SQLite has no partitions)")


def is_partitioned(conn: Any) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = 'events' AND c.relnamespace = current_schema()::regnamespace"
    ).fetchone()
    return row is not None


def _existing(conn: Any) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = 'events' AND p.relnamespace = current_schema()::regnamespace"
    ).fetchall()
    return {str(name) for (name,) in rows}


def _create_months(conn: Any, first: dt.date, last: dt.date, report: PartitionReport) -> None:
    existing = _existing(conn)
    for month in _months(first, last):
        name = _name(month)
        if name in existing:
            continue
        following = _next_month(month)
        # A month's rows may already sit in the DEFAULT partition: PostgreSQL refuses the new partition then,
        # so they move: detach the default, create the month, move its rows in, attach the default again.
        conn.execute("ALTER TABLE events DETACH PARTITION events_default")
        conn.execute(
            f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ({_epoch(month)}) TO ({_epoch(following)})"
        )
        moved = conn.execute(
            f"WITH gone AS (DELETE FROM events_default WHERE ts >= %s AND ts < %s RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM gone",
            (_epoch(month), _epoch(following)),
        )
        report.sorted_rows += moved.rowcount or 0
        conn.execute("ALTER TABLE events ATTACH PARTITION events_default DEFAULT")
        report.created.append(name)


def partition_events(store: Store, *, months_ahead: int = 3, now: float | None = None) -> PartitionReport:
    """Make ``events`` a table partitioned by month (if it is not yet) with partitions up to ``months_ahead``."""
    _postgres(store)
    if not isinstance(months_ahead, int) or not 0 <= months_ahead <= 120:
        raise StoreError(f"months_ahead must be an integer from 0 to 120, got {months_ahead!r}")
    report = PartitionReport()
    today = dt.datetime.fromtimestamp(now if now is not None else dt.datetime.now(dt.UTC).timestamp(), dt.UTC).date()
    with store._transaction() as conn:  # type: ignore[attr-defined]
        conn.execute("LOCK TABLE executions IN SHARE ROW EXCLUSIVE MODE")  # no execution starts meanwhile
        if not is_partitioned(conn):
            _convert(conn, report)
        oldest = conn.execute("SELECT MIN(ts) FROM events").fetchone()[0]
        first = dt.datetime.fromtimestamp(oldest, dt.UTC).date() if oldest is not None else today
        last = _months_ahead(today, months_ahead)
        _create_months(conn, min(first, today), last, report)
    return report


def _convert(conn: Any, report: PartitionReport) -> None:
    """Swap the plain table for a partitioned one with the same columns, sequence, key and index."""
    conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    conn.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    conn.execute("ALTER INDEX events_by_execution RENAME TO events_unpartitioned_by_execution")
    conn.execute("ALTER TABLE events_unpartitioned RENAME CONSTRAINT events_pkey TO events_unpartitioned_pkey")
    conn.execute(
        "CREATE TABLE events ("
        " seq BIGINT NOT NULL DEFAULT nextval('events_seq_seq'),"
        " execution_id TEXT NOT NULL,"  # no foreign key: see store/sql/postgres/016_events_without_foreign_key.sql
        " type TEXT NOT NULL, step_id TEXT, name TEXT, value BYTEA, data TEXT,"
        " ts DOUBLE PRECISION NOT NULL, start_value BYTEA,"
        " PRIMARY KEY (seq, ts)"  # a partitioned table's keys include its partition key
        ") PARTITION BY RANGE (ts)"
    )
    conn.execute("CREATE INDEX events_by_execution ON events (execution_id, seq)")
    conn.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    moved = conn.execute(
        "INSERT INTO events SELECT seq, execution_id, type, step_id, name, value, data, ts, start_value "
        "FROM events_unpartitioned"
    )
    report.moved_rows = moved.rowcount or 0
    conn.execute("ALTER SEQUENCE events_seq_seq OWNED BY events.seq")
    conn.execute("DROP TABLE events_unpartitioned")
    report.converted = True


def maintain_partitions(store: Store, *, drop_before: float, months_ahead: int = 3) -> PartitionReport:
    """On a partitioned store: create the months ahead, and drop the empty months wholly before ``drop_before``.

    Called by every prune; does nothing on a store whose events are not partitioned (or on SQLite).
    """
    report = PartitionReport()
    if not is_postgres(store):
        return report
    with store._transaction() as conn:  # type: ignore[attr-defined]
        if not is_partitioned(conn):
            return report
        today = dt.datetime.now(dt.UTC).date()
        last = _months_ahead(today, months_ahead)
        _create_months(conn, today, last, report)
        for name in sorted(_existing(conn)):
            match = _MONTH.match(name)
            if match is None:
                continue
            month = dt.date(int(match.group(1)), int(match.group(2)), 1)
            following = _next_month(month)
            if _epoch(following) > drop_before:
                continue
            if conn.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone() is None:
                conn.execute(f"DROP TABLE {name}")
                report.dropped.append(name)
    return report
