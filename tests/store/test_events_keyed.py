"""SQLite: an execution's events are a range of seqs of its own, the table has no index (issue 12).

Since schema version 17, execution number ``n`` (``executions.number``) owns the seqs ``n * 2**24 + 1``
onwards, so reading its events is a range of the table's key and a step's write changes one B-tree, not
two. Checked here against the rows really stored: every execution's events stay in its range and in order
however executions interleave, a store of version 16 migrates keeping every event in order, a full range
refuses the write saying so, and deleting an execution (``taskloom prune``) leaves nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_one_row_steps import OWNER, a_step, schema_at
from test_store_contract import run_sql

from taskloom.errors import ExecutionNotFoundError, LeaseLostError, StoreError
from taskloom.events import EventType, NewEvent
from taskloom.retention import prune
from taskloom.store import ExecutionStatus, open_store
from taskloom.store.sqlite import SEQ_BITS, SQLiteStore

RANGE = 2**SEQ_BITS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(f"sqlite:///{tmp_path / 'taskloom.db'}")
    yield opened
    opened.close()


def numbers(url: str) -> dict[str, int]:
    return {str(id_): int(number) for id_, number in run_sql(url, "SELECT id, number FROM executions")}


def test_interleaved_executions_each_keep_their_events_in_a_range_of_their_own(store: SQLiteStore) -> None:
    for name in ("a", "b", "c"):
        store.create_execution(name, "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    for step in range(1, 4):  # a, b, c, a, b, c, ...: every write lands between the others' rows
        for name in ("a", "b", "c"):
            store.append_events(name, a_step(str(step)), lease_owner=OWNER, expected_status="running")

    number = numbers(store.url)
    assert sorted(number.values()) == [1, 2, 3]
    for name in ("a", "b", "c"):
        events = store.load_events(name)
        assert [(e.type, e.step_id) for e in events] == [
            (EventType.EXECUTION_STARTED, None),
            *((kind, str(step)) for step in range(1, 4) for kind in (EventType.STEP_STARTED, EventType.STEP_COMPLETED)),
        ]
        stored = [seq for (seq,) in run_sql(store.url, "SELECT seq FROM events WHERE execution_id = ?", (name,))]
        base = number[name] * RANGE
        assert sorted(stored) == [base + 1, base + 2, base + 3, base + 4]  # its range, from its start, no gap
        after = store.load_events(name, after_seq=base + 2)
        assert [(e.type, e.step_id) for e in after] == [
            (EventType.STEP_STARTED, "2"),
            (EventType.STEP_COMPLETED, "2"),
            (EventType.STEP_STARTED, "3"),
            (EventType.STEP_COMPLETED, "3"),
        ]


def test_an_event_for_an_execution_that_does_not_exist_is_not_found_and_nothing_is_written(
    store: SQLiteStore,
) -> None:
    # No foreign key any more: the insert reads the execution's row for the seq, and finds none.
    with pytest.raises(ExecutionNotFoundError):
        store.append_events("ghost", a_step("1"))
    with pytest.raises(ExecutionNotFoundError):
        store.append_events("ghost", a_step("1")[:1])

    assert run_sql(store.url, "SELECT COUNT(*) FROM events") == [(0,)]


def test_an_execution_whose_range_is_full_refuses_the_write_naming_it(store: SQLiteStore) -> None:
    store.create_execution("full", "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    store.create_execution("next", "flow", None, ExecutionStatus.RUNNING)
    top = (numbers(store.url)["full"] + 1) * RANGE - 1
    run_sql(store.url, "INSERT INTO events (seq, execution_id, type, ts) VALUES (?, 'full', 'step_log', 0)", (top,))

    for fenced in ({"lease_owner": OWNER, "expected_status": "running"}, {}):
        with pytest.raises(StoreError, match=r"execution 'full' holds the most events one execution can"):
            store.append_events("full", a_step("1"), **fenced)  # type: ignore[arg-type]

    assert [e.seq for e in store.load_events("full")][-1] == top  # nothing more written to it
    assert len(store.load_events("next")) == 1  # and nothing fell into the next execution's range


def test_a_store_of_version_16_migrates_keeping_every_event_in_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taskloom.db'}"
    schema_at(url, 16)
    for name in ("x", "y"):
        run_sql(
            url,
            "INSERT INTO executions (id, workflow, status, created_at, updated_at, lease_owner, lease_expires_at) "
            "VALUES (?, 'flow', 'running', 0, 0, ?, 1e12)",
            (name, OWNER),
        )
    for seq, name, step in [(1, "x", None), (2, "y", None), (3, "x", "1"), (4, "y", "1"), (9, "x", "2")]:
        kind = "execution_started" if step is None else "step_completed"
        run_sql(
            url,
            "INSERT INTO events (seq, execution_id, type, step_id, value, ts, start_value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, name, kind, step, f"{name}{seq}".encode(), float(seq), None if step is None else b"s"),
        )
    run_sql(url, "INSERT INTO messages (execution_id, topic, value, sent_at) VALUES ('y', 'say', NULL, 0)")

    store = open_store(url)
    try:
        number = numbers(url)
        assert sorted(number.values()) == [1, 2]
        x, y = store.load_events("x"), store.load_events("y")
        assert [(e.type.value, e.step_id, e.raw_value) for e in x] == [
            ("execution_started", None, b"x1"),
            ("step_started", "1", b"s"),
            ("step_completed", "1", b"x3"),
            ("step_started", "2", b"s"),
            ("step_completed", "2", b"x9"),
        ]
        assert [e.seq for e in x] == [number["x"] * RANGE + k for k in (1, 2, 2, 3, 3)]
        assert [(e.type.value, e.raw_value) for e in y][-1] == ("step_completed", b"y4")
        assert [m.topic for m in store.list_messages("y")] == ["say"]
        last = store.append_events("x", a_step("3"), lease_owner=OWNER, expected_status="running")
        assert last == number["x"] * RANGE + 4
        store.create_execution("z", "flow", None, ExecutionStatus.RUNNING)
        assert numbers(url)["z"] == 3
        assert [e.seq for e in store.load_events("z")] == [3 * RANGE + 1]
    finally:
        store.close()


def test_pruning_an_execution_leaves_none_of_its_events_and_keeps_the_others(store: SQLiteStore) -> None:
    for name in ("old", "kept"):
        store.create_execution(name, "flow", None, ExecutionStatus.RUNNING)
        store.append_events(name, a_step("1"), status="completed")
    run_sql(store.url, "UPDATE executions SET updated_at = 0, created_at = 0 WHERE id = 'old'")

    report = prune(store, 3600.0)

    assert (report.executions, report.events) == (1, 3)  # its start, and the step's start and outcome
    assert store.get_execution("old") is None
    assert run_sql(store.url, "SELECT DISTINCT execution_id FROM events") == [("kept",)]
    assert len(store.load_events("kept")) == 3


# -- the next seq a store remembers (SQLiteStore._last_seqs, _INSERT_STEP_AT) -----------------------------
def fenced_step(store: SQLiteStore, execution_id: str, step: str) -> int:
    return store.append_events(execution_id, a_step(step), lease_owner=OWNER, expected_status="running")


def test_a_seq_another_writer_took_meanwhile_is_not_reused_and_nothing_is_lost(store: SQLiteStore) -> None:
    store.create_execution("x", "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    first = fenced_step(store, "x", "1")  # this store now knows the next seq
    other = SQLiteStore(store.url)  # another process's store on the same file
    try:
        taken = other.append_events("x", [NewEvent(EventType.STEP_PROGRESS, "1", "task_1")])
    finally:
        other.close()

    second = fenced_step(store, "x", "2")

    assert first < taken < second
    assert [(e.type, e.step_id) for e in store.load_events("x")][1:] == [
        (EventType.STEP_STARTED, "1"),
        (EventType.STEP_COMPLETED, "1"),
        (EventType.STEP_PROGRESS, "1"),
        (EventType.STEP_STARTED, "2"),
        (EventType.STEP_COMPLETED, "2"),
    ]


def test_an_execution_made_again_under_the_same_id_gets_its_own_range_not_the_remembered_seq(
    store: SQLiteStore,
) -> None:
    store.create_execution("x", "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    store.create_execution("y", "flow", None, ExecutionStatus.RUNNING)
    remembered = fenced_step(store, "x", "1")
    run_sql(store.url, "DELETE FROM events WHERE execution_id = 'x'")
    run_sql(store.url, "DELETE FROM executions WHERE id = 'x'")
    store.create_execution("x", "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)

    seq = fenced_step(store, "x", "1")

    assert seq // RANGE == numbers(store.url)["x"] == 3 and seq // RANGE != remembered // RANGE
    assert [e.type for e in store.load_events("x")] == [
        EventType.EXECUTION_STARTED,
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
    ]


def test_a_fence_that_no_longer_holds_writes_nothing_though_the_next_seq_is_known(store: SQLiteStore) -> None:
    store.create_execution("x", "flow", None, ExecutionStatus.RUNNING, lease_owner=OWNER, lease_seconds=60.0)
    fenced_step(store, "x", "1")
    run_sql(store.url, "UPDATE executions SET lease_owner = 'worker-2' WHERE id = 'x'")

    with pytest.raises(LeaseLostError, match="nothing was written"):
        fenced_step(store, "x", "2")

    assert [e.step_id for e in store.load_events("x")] == [None, "1", "1"]
