"""A durable step's start and outcome written together are ONE row, read back as the two events (issue 12).

Every test runs against SQLite and PostgreSQL. What is checked is what the layers above the store see
(``load_events``), against the rows actually stored (counted with SQL straight on the database), and
stores written before (two rows per step, schema version 14) reading the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_store_contract import run_sql

from taskloom.errors import ExecutionNotFoundError, ExecutionStateError, LeaseLostError, StoreError
from taskloom.events import Event, EventType, NewEvent
from taskloom.store import ExecutionStatus, Store, open_store
from taskloom.store.base import merge_steps
from taskloom.store.migrations import load_migrations, split_statements

STARTED, COMPLETED, FAILED = EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.STEP_FAILED
OWNER = "worker-1"


def rows(url: str, execution_id: str) -> int:
    return int(run_sql(url, "SELECT COUNT(*) FROM events WHERE execution_id = ?", (execution_id,))[0][0])


def seen(events: list[Event]) -> list[tuple[Any, ...]]:
    """What replay, the CLI and the dashboard read of each event (the seq aside)."""
    return [(e.type, e.step_id, e.name, e.raw_value, e.data, e.timestamp) for e in events]


def a_step(step_id: str, outcome: EventType = COMPLETED, *, args: bytes | None = b"\x80\x05K\x01.") -> list[NewEvent]:
    name = f"task_{step_id}"
    return [
        NewEvent(STARTED, step_id=step_id, name=name, value=args),
        NewEvent(outcome, step_id=step_id, name=name, value=b"\x80\x05K\x02.", data={"attempt": 1}),
    ]


@pytest.fixture
def execution(store: Store) -> str:
    store.create_execution("exec-1", "flow", b"input", ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    return "exec-1"


def test_a_step_written_in_one_call_is_one_row_and_reads_as_its_start_then_its_outcome(
    store: Store, execution: str
) -> None:
    last = store.append_events(execution, a_step("1"), lease_owner=OWNER, expected_status="running")

    events = store.load_events(execution)

    assert rows(store.url, execution) == 2  # the execution's start, and the step
    assert [e.type for e in events] == [EventType.EXECUTION_STARTED, STARTED, COMPLETED]
    started, completed = events[1:]
    assert started.seq == completed.seq == last
    assert started.timestamp == completed.timestamp
    assert (started.step_id, started.name, started.raw_value, started.data) == ("1", "task_1", b"\x80\x05K\x01.", {})
    assert (completed.raw_value, completed.data) == (b"\x80\x05K\x02.", {"attempt": 1})
    assert store.load_events(execution, after_seq=last) == []
    assert store.load_events(execution, after_seq=last - 1) == events[1:]


def test_a_start_without_a_value_and_a_failed_step_read_back_as_written(store: Store, execution: str) -> None:
    written = [*a_step("1", args=None), *a_step("2", FAILED), NewEvent(EventType.STEP_LOG, "2", "task_2")]
    store.append_events(execution, written, lease_owner=OWNER, expected_status="running")

    events = store.load_events(execution)[1:]

    assert rows(store.url, execution) == 1 + 3
    assert [(e.type, e.step_id, e.raw_value, e.data) for e in events] == [
        (w.type, w.step_id, w.value, w.data) for w in written
    ]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([NewEvent(STARTED, "1", "t", data={"deferred": True}), NewEvent(COMPLETED, "1", "t")], id="data"),
        pytest.param([NewEvent(STARTED, "1", "t"), NewEvent(COMPLETED, "2", "t")], id="other-step"),
        pytest.param([NewEvent(STARTED, "1", "t"), NewEvent(COMPLETED, "1", "u")], id="other-name"),
        pytest.param([NewEvent(STARTED, "1", "t", value=b""), NewEvent(COMPLETED, "1", "t")], id="empty-value"),
        pytest.param([NewEvent(STARTED, "1", "t"), NewEvent(EventType.STEP_RETRYING, "1", "t")], id="retrying"),
        pytest.param([NewEvent(COMPLETED, "1", "t"), NewEvent(STARTED, "2", "t")], id="outcome-first"),
    ],
)
def test_events_that_are_not_one_steps_start_and_outcome_stay_rows_of_their_own(
    store: Store, execution: str, events: list[NewEvent]
) -> None:
    store.append_events(execution, events, lease_owner=OWNER, expected_status="running")

    assert rows(store.url, execution) == 1 + len(events)
    assert [(e.type, e.step_id, e.name, e.raw_value, e.data) for e in store.load_events(execution)[1:]] == [
        (w.type, w.step_id, w.name, w.value, w.data) for w in events
    ]


def test_merge_steps_pairs_only_a_start_with_the_outcome_right_after_it() -> None:
    events = [NewEvent(STARTED, "1", "t"), NewEvent(STARTED, "2", "t"), *a_step("3"), NewEvent(COMPLETED, "1", "t")]

    merged = merge_steps(events)

    assert [(e.type, e.step_id, start) for e, start in merged] == [
        (STARTED, "1", None),
        (STARTED, "2", None),
        (COMPLETED, "3", b"\x80\x05K\x01."),
        (COMPLETED, "1", None),
    ]


def test_an_execution_stored_as_two_rows_per_step_reads_the_same_as_one_stored_as_one(
    store: Store, execution: str
) -> None:
    store.create_execution("old", "flow", b"input", ExecutionStatus.RUNNING)
    steps = [*a_step("1"), *a_step("2", args=None), NewEvent(EventType.STEP_PROGRESS, "3", "t"), *a_step("3", FAILED)]
    store.append_events(execution, steps)
    for event in steps:  # as a taskloom before issue 12 stored them: a row each, start_value NULL
        run_sql(
            store.url,
            "INSERT INTO events (execution_id, type, step_id, name, value, data, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old", event.type.value, event.step_id, event.name, event.value, event_json(event), 0.0),
        )

    merged, old = store.load_events(execution)[1:], store.load_events("old")[1:]

    assert (rows(store.url, execution), rows(store.url, "old")) == (1 + 4, 1 + len(steps))
    assert [row[:5] for row in seen(merged)] == [row[:5] for row in seen(old)]


def event_json(event: NewEvent) -> str | None:
    from taskloom.store.base import event_data_json

    return event_data_json(event.data)


@pytest.mark.parametrize(
    ("owner", "expected", "error"),
    [
        pytest.param("worker-2", "running", LeaseLostError, id="lease"),
        pytest.param(OWNER, "paused", ExecutionStateError, id="status"),
    ],
)
def test_a_refused_fence_writes_nothing(
    store: Store, execution: str, owner: str, expected: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match="nothing was written"):
        store.append_events(execution, a_step("1"), lease_owner=owner, expected_status=expected)

    assert rows(store.url, execution) == 1
    assert [e.type for e in store.load_events(execution)] == [EventType.EXECUTION_STARTED]


def test_a_fenced_step_of_an_execution_that_does_not_exist_is_not_found_and_writes_nothing(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError):
        store.append_events("ghost", a_step("1"), lease_owner=OWNER, expected_status="running")

    assert run_sql(store.url, "SELECT COUNT(*) FROM events")[0][0] == 0


# -- a store written before: schema version 14 ---------------------------------------------------------
def schema_at(url: str, version: int) -> None:
    """Build the store at ``url`` as a taskloom of schema ``version`` left it (its migrations applied)."""
    dialect = "postgres" if url.startswith("postgresql://") else "sqlite"
    run_sql(url, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, sql in load_migrations(dialect):
        if number <= version:
            for statement in split_statements(sql):
                run_sql(url, statement)
            run_sql(url, "INSERT INTO schema_version (version) VALUES (?)", (number,))


def test_a_store_of_version_14_migrates_keeping_every_event_and_its_seq(store_url: str) -> None:
    schema_at(store_url, 14)
    run_sql(
        store_url,
        "INSERT INTO executions (id, workflow, status, created_at, updated_at, lease_owner, lease_expires_at) "
        "VALUES ('old', 'flow', 'running', 0, 0, ?, 1e12)",
        (OWNER,),
    )
    for seq, (type_, step_id, value) in enumerate(
        [("execution_started", None, b"in"), ("step_started", "1", b"a"), ("step_completed", "1", b"r")], start=1
    ):
        run_sql(
            store_url,
            "INSERT INTO events (seq, execution_id, type, step_id, name, value, data, ts) "
            "VALUES (?, 'old', ?, ?, 't', ?, NULL, ?)",
            (seq * 10, type_, step_id, value, float(seq)),
        )
    if store_url.startswith("postgresql://"):
        run_sql(store_url, "SELECT setval('events_seq_seq', 30)")
    before = run_sql(store_url, "SELECT seq, execution_id, type, step_id, name, value, data, ts FROM events")

    store = open_store(store_url)
    try:
        after = run_sql(
            store_url,
            "SELECT seq, execution_id, type, step_id, name, value, data, ts, start_value FROM events ORDER BY seq",
        )
        # PostgreSQL keeps every seq; SQLite's 017 gives the execution's events the seqs of its own range
        # (its number, 1, times 2**24, then 1, 2, 3), in the same order.
        seqs = [10, 20, 30] if store_url.startswith("postgresql://") else [2**24 + 1, 2**24 + 2, 2**24 + 3]
        assert [(seq, *row[1:], None) for seq, row in zip(seqs, before, strict=True)] == after
        events = store.load_events("old")
        assert [(e.seq, e.type, e.raw_value) for e in events] == [
            (seqs[0], EventType.EXECUTION_STARTED, b"in"),
            (seqs[1], STARTED, b"a"),
            (seqs[2], COMPLETED, b"r"),
        ]
        last = store.append_events("old", a_step("2"), lease_owner=OWNER, expected_status="running")
        assert last > seqs[2]
        assert [e.seq for e in store.load_events("old", after_seq=seqs[2])] == [last, last]
    finally:
        store.close()


def test_sqlite_events_have_no_autoincrement_nor_index_nor_foreign_key(tmp_path: Any) -> None:
    """Since 017 an execution's events are a range of seqs of its own (tests/store/test_events_keyed.py)."""
    url = f"sqlite:///{tmp_path / 'taskloom.db'}"
    open_store(url).close()

    (table,) = run_sql(url, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'events'")[0]
    assert "AUTOINCREMENT" not in table.upper() and "start_value" in table
    assert run_sql(url, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'") == []
    assert run_sql(url, "PRAGMA foreign_key_list(events)") == []


def test_a_sqlite_store_with_an_orphan_event_fails_the_rebuild_and_stays_as_it_was(tmp_path: Any) -> None:
    """An event whose execution is gone (only a hand edit with foreign keys off makes one): the copy
    refuses it, and the whole migration is rolled back: still version 14, every row where it was."""
    url = f"sqlite:///{tmp_path / 'taskloom.db'}"
    schema_at(url, 14)
    run_sql(url, "INSERT INTO events (seq, execution_id, type, ts) VALUES (7, 'gone', 'execution_started', 0)")

    with pytest.raises(StoreError, match="FOREIGN KEY"):
        open_store(url)

    assert run_sql(url, "SELECT MAX(version) FROM schema_version") == [(14,)]
    assert run_sql(url, "SELECT seq, execution_id FROM events") == [(7, "gone")]
    assert "AUTOINCREMENT" in run_sql(url, "SELECT sql FROM sqlite_master WHERE name = 'events'")[0][0]
