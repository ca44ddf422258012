"""A fenced write on PostgreSQL in one statement (issue 12): one round trip, the fence kept exactly.

``append_events`` sends the common write (a step's events under the run's lease, or a new status with its
events) as a single statement in autocommit, one text per shape (how many events; a status or not). Each
shape is checked here on a real server: what it writes, in which order, what it returns; that a refused
write (the lease taken over, the status changed, no such execution) writes nothing and is reported as the
transaction reports it; that putting an execution back on the queue wakes the workers and nothing else
does; that it costs one round trip, counted by libpq's own protocol trace, and is prepared once.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskloom.errors import ExecutionNotFoundError, ExecutionStateError, LeaseLostError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus
from taskloom.store.postgres import BOUND_EVENTS, WORK_CHANNEL, PostgresStore

pytestmark = pytest.mark.postgres

#: one event, the bound shape's most, one past it (arrays to unnest)
COUNTS = [1, 2, BOUND_EVENTS, BOUND_EVENTS + 1]


@pytest.fixture
def store(pg_fresh_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_fresh_url)
    yield store
    store.close()


def leased(store: PostgresStore, execution_id: str = "exec-1", owner: str = "w1") -> str:
    store.create_execution(execution_id, "flow", None, ExecutionStatus.RUNNING, lease_owner=owner, lease_seconds=60)
    return execution_id


def step_events(count: int, tag: str = "") -> list[NewEvent]:
    """``count`` events with every column set or empty in turn, so a column bound to the wrong place shows."""
    return [
        NewEvent(
            EventType.STEP_STARTED if i % 2 == 0 else EventType.STEP_COMPLETED,
            step_id=f"step-{tag}{i}" if i % 3 else None,
            name=f"task-{tag}{i}",
            value=pickle.dumps([tag, i]) if i % 2 else None,
            data={"attempt": i} if i % 2 == 0 else {},
        )
        for i in range(count)
    ]


def written(store: PostgresStore, execution_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.type, e.step_id, e.name, e.value, dict(e.data))
        for e in store.load_events(execution_id)
        if e.type != EventType.EXECUTION_STARTED
    ]


def expected(events: list[NewEvent]) -> list[tuple[Any, ...]]:
    """What load_events gives back for ``events`` (a value comes back decoded)."""
    return [(e.type, e.step_id, e.name, e.value and pickle.loads(e.value), dict(e.data)) for e in events]


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("status", [None, ExecutionStatus.COMPLETED])
def test_a_fenced_write_lands_whole_in_order_and_returns_its_last_seq(
    store: PostgresStore, count: int, status: str | None
) -> None:
    execution = leased(store)
    first = step_events(count, "a")
    seq = store.append_events(execution, first, lease_owner="w1", expected_status="running")
    second = step_events(count, "b")
    last = store.append_events(
        execution, second, lease_owner="w1", expected_status="running", status=status, output=b"out"
    )

    assert written(store, execution) == expected(first + second)
    seqs = [e.seq for e in store.load_events(execution)]
    assert seqs == sorted(seqs) and seq == seqs[count] and last == seqs[-1]
    record = store.get_execution(execution)
    assert record is not None
    assert (record.status, record.output) == ((status, b"out") if status else (ExecutionStatus.RUNNING, None))


def test_a_new_status_without_events_returns_zero_and_sets_every_column(store: PostgresStore) -> None:
    execution = leased(store)
    before = store.get_execution(execution)
    assert (
        store.append_events(
            execution, [], status=ExecutionStatus.PAUSED, wake_at=123.5, lease_owner="w1", expected_status="running"
        )
        == 0
    )
    after = store.get_execution(execution)
    assert before is not None and after is not None
    assert (after.status, after.wake_at, after.output) == (ExecutionStatus.PAUSED, 123.5, None)
    assert after.updated_at >= before.updated_at
    assert written(store, execution) == []


def test_only_the_fence_checked_when_there_is_nothing_to_write(store: PostgresStore) -> None:
    execution = leased(store)
    assert store.append_events(execution, [], lease_owner="w1", expected_status="running") == 0
    with pytest.raises(LeaseLostError):
        store.append_events(execution, [], lease_owner="w2", expected_status="running")
    with pytest.raises(ExecutionStateError):
        store.append_events(execution, [], expected_status="paused")


def test_an_unfenced_write_lands_too(store: PostgresStore) -> None:
    execution = leased(store)
    events = step_events(2)
    assert store.append_events(execution, events) > 0
    store.append_events(execution, [], status=ExecutionStatus.CANCELLED)
    record = store.get_execution(execution)
    assert record is not None and record.status == ExecutionStatus.CANCELLED
    assert written(store, execution) == expected(events)


@pytest.mark.parametrize("count", [0, *COUNTS])
@pytest.mark.parametrize("status", [None, ExecutionStatus.COMPLETED])
def test_a_write_by_a_holder_whose_lease_was_taken_over_writes_nothing(
    store: PostgresStore, count: int, status: str | None
) -> None:
    execution = leased(store)
    store.append_events(execution, step_events(1), lease_owner="w1", expected_status="running")
    store.release_execution(execution, "w1", requeue=True)
    assert store.claim_next_execution("w2", 60, ["flow"]) is not None  # w2 holds it now

    with pytest.raises(LeaseLostError) as lost:
        store.append_events(
            execution, step_events(count), lease_owner="w1", expected_status="running", status=status, output=b"x"
        )

    assert str(lost.value) == (
        f"execution {execution}: worker w1 no longer holds its lease (now w2); nothing was written"
    )
    assert len(written(store, execution)) == 1
    record = store.get_execution(execution)
    assert record is not None and (record.status, record.output, record.lease_owner) == ("running", None, "w2")


@pytest.mark.parametrize("count", [0, *COUNTS])
@pytest.mark.parametrize("status", [None, ExecutionStatus.COMPLETED])
def test_a_write_that_expects_a_status_the_execution_left_writes_nothing(
    store: PostgresStore, count: int, status: str | None
) -> None:
    execution = leased(store)
    store.append_events(execution, [], status=ExecutionStatus.CANCELLED)  # as a cancel does

    with pytest.raises(ExecutionStateError) as changed:
        store.append_events(
            execution, step_events(count), lease_owner="w1", expected_status="running", status=status, output=b"x"
        )

    assert not isinstance(changed.value, LeaseLostError)
    assert str(changed.value) == (
        f"execution {execution} is cancelled, not running: its state changed under this operation; nothing was written"
    )
    assert written(store, execution) == []
    record = store.get_execution(execution)
    assert record is not None and (record.status, record.output) == ("cancelled", None)


@pytest.mark.parametrize("count", [0, 2])
@pytest.mark.parametrize("status", [None, ExecutionStatus.COMPLETED])
def test_a_write_to_no_such_execution_is_not_found(store: PostgresStore, count: int, status: str | None) -> None:
    with pytest.raises(ExecutionNotFoundError, match="no execution 'nope'"):
        store.append_events("nope", step_events(count), lease_owner="w1", expected_status="running", status=status)


def test_only_a_write_that_queues_the_execution_wakes_the_workers(store: PostgresStore, pg_fresh_url: str) -> None:
    execution = leased(store)
    with psycopg.connect(pg_fresh_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {WORK_CHANNEL}")
        store.append_events(execution, step_events(1), lease_owner="w1", expected_status="running")
        store.append_events(
            execution, [], status=ExecutionStatus.PAUSED, wake_at=1.0, lease_owner="w1", expected_status="running"
        )
        store.append_events(
            execution, step_events(2), status=ExecutionStatus.QUEUED, lease_owner="w1", expected_status="paused"
        )
        # A marker sent last: notifications arrive in commit order, so all the writes' are before it.
        listener.execute("SELECT pg_notify(%s, 'marker')", (WORK_CHANNEL,))
        heard = []
        for note in listener.notifies(timeout=30):
            heard.append(note.payload)
            if note.payload == "marker":
                break
    assert heard == ["flow", "marker"]
    record = store.get_execution(execution)
    assert record is not None and record.status == ExecutionStatus.QUEUED


# -- round trips and prepared statements --------------------------------------------------------------


class ProtocolTrace:
    """libpq's trace of every connection a store opens once installed, read between two marks."""

    def __init__(self, store: PostgresStore, path: Path) -> None:
        self.path = path
        self._out = path.open("w")
        self._conns: list[psycopg.Connection[Any]] = []
        opened = store._open_connection

        def traced(*, autocommit: bool) -> psycopg.Connection[Any]:
            conn = opened(autocommit=autocommit)
            self._conns.append(conn)
            self._trace(conn)
            return conn

        store._open_connection = traced  # type: ignore[method-assign]

    def _trace(self, conn: psycopg.Connection[Any]) -> None:
        conn.pgconn.trace(self._out.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)

    def _flushed_size(self) -> int:
        for conn in self._conns:  # libpq buffers its trace; untracing flushes it
            if not conn.closed:
                conn.pgconn.untrace()
                self._trace(conn)
        return self.path.stat().st_size

    def mark(self) -> int:
        return self._flushed_size()

    def round_trips_since(self, mark: int) -> list[str]:
        """The client messages since ``mark`` that wait for an answer: a ``Sync`` or a simple ``Query``."""
        self._flushed_size()
        with self.path.open() as lines:
            lines.seek(mark)
            return [line for line in lines if line.split("\t")[0] == "F" and _message(line) in ("Sync", "Query")]

    def close(self) -> None:
        self._out.close()


def _message(line: str) -> str:
    fields = line.rstrip("\n").split("\t")
    return fields[2].split(" ")[0] if len(fields) > 2 else ""


@pytest.fixture
def traced(store: PostgresStore, tmp_path: Path) -> Iterator[ProtocolTrace]:
    store.close()  # the migrations' connection, opened before the trace, goes too
    trace = ProtocolTrace(store, tmp_path / "trace.txt")
    yield trace
    store.close()  # before the file: a traced connection writes its goodbye to it
    trace.close()


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("status", [None, ExecutionStatus.COMPLETED])
def test_a_write_is_one_round_trip_once_prepared(
    store: PostgresStore, traced: ProtocolTrace, count: int, status: str | None
) -> None:
    for n in range(8):  # past psycopg's prepare_threshold, on the one pooled connection of this thread
        execution = leased(store, f"warm-{n}")
        store.append_events(execution, step_events(count), lease_owner="w1", expected_status="running", status=status)
    execution = leased(store, "measured")
    mark = traced.mark()

    store.append_events(execution, step_events(count), lease_owner="w1", expected_status="running", status=status)

    assert len(traced.round_trips_since(mark)) == 1


def test_a_step_write_is_prepared_on_its_connection(store: PostgresStore) -> None:
    execution = leased(store)
    for _ in range(6):
        store.append_events(execution, step_events(2), lease_owner="w1", expected_status="running")
    with store._read() as conn:  # this thread's one pooled connection, the one that wrote
        prepared = [row[0] for row in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
    assert [text for text in prepared if text.startswith("WITH target AS (SELECT id FROM executions")]
