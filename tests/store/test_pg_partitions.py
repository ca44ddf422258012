"""PostgreSQL: the events table partitioned by month keeps every guarantee, and pruning drops emptied months."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from taskloom.errors import ExecutionNotFoundError, StoreError
from taskloom.events import EventType, NewEvent
from taskloom.retention import prune
from taskloom.store import open_store
from taskloom.store.base import Store
from taskloom.store.partitions import partition_events
from taskloom.store.statements import Statements

pytestmark = pytest.mark.postgres
DAY = 86400.0


@pytest.fixture
def store(pg_fresh_url: str) -> Iterator[Store]:
    opened = open_store(pg_fresh_url)
    yield opened
    opened.close()


def old_execution(store: Store, execution_id: str, status: str, days_ago: float) -> None:
    """An execution whose events were written ``days_ago`` days ago."""
    store.create_execution(execution_id, "flow", None, status, "m:flow")
    store.append_events(execution_id, [NewEvent(EventType.STEP_STARTED, step_id="1", name="s") for _ in range(3)])
    then = time.time() - days_ago * DAY
    Statements(store).run_all(
        [
            ("UPDATE events SET ts = ? WHERE execution_id = ?", (then, execution_id)),
            ("UPDATE executions SET updated_at = ? WHERE id = ?", (then, execution_id)),
        ]
    )


def partitions(store: Store) -> set[str]:
    rows = Statements(store).run(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p "
        "ON p.oid = i.inhparent WHERE p.relname = 'events' AND p.relnamespace = current_schema()::regnamespace"
    )
    return {str(name) for (name,) in rows}


def month_name(days_ago: float) -> str:
    day = dt.datetime.fromtimestamp(time.time() - days_ago * DAY, dt.UTC)
    return f"events_{day.year:04d}_{day.month:02d}"


def test_converting_keeps_every_event_and_its_order(store: Store) -> None:
    old_execution(store, "old", "completed", 95)
    old_execution(store, "paused-long-ago", "paused", 95)
    store.create_execution("now", "flow", None, "running", "m:flow")
    store.append_events("now", [NewEvent(EventType.STEP_STARTED, step_id=str(n), name="s") for n in range(5)])
    before = {
        e: [(ev.seq, ev.type, ev.step_id) for ev in store.load_events(e)] for e in ("old", "paused-long-ago", "now")
    }

    (total,) = Statements(store).run("SELECT COUNT(*) FROM events")[0]

    report = partition_events(store, months_ahead=2)

    assert report.converted and report.moved_rows == total and report.sorted_rows == total
    names = partitions(store)
    assert {"events_default", month_name(95), month_name(0)} <= names
    assert {e: [(ev.seq, ev.type, ev.step_id) for ev in store.load_events(e)] for e in before} == before
    # New events still get seqs above every old one, in the current month's partition.
    store.append_events("now", [NewEvent(EventType.STEP_COMPLETED, step_id="4", name="s")])
    events = store.load_events("now")
    assert events[-1].seq > max(s for rows in before.values() for s, _, _ in rows)
    (count,) = Statements(store).run(f"SELECT COUNT(*) FROM {month_name(0)}")[0]
    assert count == len(events)  # every event of "now" is this month's
    assert not partition_events(store).converted  # a second call only adds months


def test_prune_drops_the_months_it_emptied_and_keeps_a_live_executions_month(store: Store) -> None:
    old_execution(store, "done-95", "completed", 95)
    old_execution(store, "done-65", "completed", 65)
    old_execution(store, "paused-65", "paused", 65)  # live: its month must stay
    partition_events(store, months_ahead=1)
    assert {month_name(95), month_name(65)} <= partitions(store)
    live_events = len(store.load_events("paused-65"))

    report = prune(store, "30d")

    assert report.executions == 2
    assert month_name(95) in report.dropped_partitions
    assert month_name(95) not in partitions(store)
    assert month_name(65) in partitions(store)
    assert len(store.load_events("paused-65")) == live_events


def test_partitioning_is_refused_on_sqlite(tmp_path: object) -> None:
    sqlite = open_store(f"sqlite:///{tmp_path}/x.db")
    try:
        with pytest.raises(StoreError, match="PostgreSQL stores only"):
            partition_events(sqlite)
    finally:
        sqlite.close()


def foreign_keys(store: Store) -> list[str]:
    rows = Statements(store).run(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'f'"
    )
    return [str(name) for (name,) in rows]


def test_events_have_no_foreign_key_partitioned_or_not_and_migration_16_drops_one_by_any_name(
    store: Store, pg_fresh_url: str
) -> None:
    """The key cost each step's write a query on executions (migration 016 says why integrity holds
    without it); a store partitioned before 016 had it under another name, on every partition."""
    old_execution(store, "old", "completed", 95)
    assert foreign_keys(store) == []
    partition_events(store)
    assert foreign_keys(store) == []
    Statements(store).run_all(
        [
            (
                "ALTER TABLE events ADD CONSTRAINT events_execution_id_fkey1 FOREIGN KEY (execution_id) "
                "REFERENCES executions (id)",
                (),
            ),
            ("DELETE FROM schema_version WHERE version >= 16", ()),
        ]
    )
    assert foreign_keys(store) == ["events_execution_id_fkey1"]
    store.close()

    reopened = open_store(pg_fresh_url)
    try:
        assert foreign_keys(reopened) == []
        assert [e.type for e in reopened.load_events("old")] == [EventType.EXECUTION_STARTED] + [
            EventType.STEP_STARTED
        ] * 3
        with pytest.raises(ExecutionNotFoundError):  # the fence, not the key, refuses an unknown execution
            reopened.append_events("ghost", [NewEvent(EventType.STEP_LOG, "1", "s")])
        with pytest.raises(ExecutionNotFoundError):
            reopened.append_events("ghost", [NewEvent(EventType.STEP_LOG, "1", "s")], lease_owner="w")
        assert Statements(reopened).run("SELECT COUNT(*) FROM events WHERE execution_id = 'ghost'") == [(0,)]
    finally:
        reopened.close()
