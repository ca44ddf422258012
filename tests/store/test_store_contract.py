"""The Store contract: every test runs against SQLite and PostgreSQL (``[sqlite]`` / ``[postgres]``)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from taskloom.errors import ExecutionNotFoundError, ExecutionStateError, LeaseLostError, StoreError, TaskloomError
from taskloom.events import Event, EventType, NewEvent
from taskloom.executions import record_cancel, record_resume
from taskloom.store import Acquired, ExecutionStatus, Store, open_store
from taskloom.store.migrations import load_migrations


def run_sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement straight on the store's database (``?`` placeholders), outside any Store."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def migration_count(url: str) -> int:
    return len(load_migrations("postgres" if url.startswith("postgresql://") else "sqlite"))


def step(step_id: str, type_: EventType = EventType.STEP_COMPLETED, **fields: Any) -> NewEvent:
    return NewEvent(type_, step_id=step_id, name=f"task_{step_id}", **fields)


@pytest.fixture
def execution(store: Store) -> str:
    store.create_execution("exec-1", "order_flow", b"input", ExecutionStatus.RUNNING, target="app:order_flow")
    return "exec-1"


# -- executions --------------------------------------------------------------------------------------


def test_created_execution_reads_back_with_every_field(store: Store) -> None:
    before = time.time()
    store.create_execution("exec-1", "order_flow", b"\x00input", ExecutionStatus.QUEUED, target="app:flow")

    record = store.get_execution("exec-1")

    assert record is not None
    assert (record.id, record.workflow, record.status, record.target) == (
        "exec-1",
        "order_flow",
        "queued",
        "app:flow",
    )
    assert record.input == b"\x00input"
    assert record.output is None
    assert before - 1 <= record.created_at <= time.time() + 1
    assert record.updated_at == record.created_at


def test_created_execution_starts_with_an_execution_started_event(store: Store) -> None:
    store.create_execution("exec-1", "order_flow", b"input", ExecutionStatus.RUNNING)

    (started,) = store.load_events("exec-1")

    assert started.type is EventType.EXECUTION_STARTED
    assert started.execution_id == "exec-1"
    assert started.name == "order_flow"
    assert started.raw_value == b"input"
    assert started.step_id is None
    assert started.data == {}


def test_execution_without_input_or_target_keeps_them_none(store: Store) -> None:
    store.create_execution("exec-1", "order_flow", None, ExecutionStatus.RUNNING)

    record = store.get_execution("exec-1")

    assert record is not None
    assert record.input is None
    assert record.target is None
    assert store.load_events("exec-1")[0].raw_value is None


def test_unknown_execution_is_none(store: Store) -> None:
    assert store.get_execution("no-such-execution") is None


def test_unknown_execution_has_no_events(store: Store) -> None:
    assert store.load_events("no-such-execution") == []


# -- events ------------------------------------------------------------------------------------------


def test_events_come_back_as_typed_events_in_the_order_appended(store: Store, execution: str) -> None:
    store.append_events(
        execution,
        [
            step("1", EventType.STEP_STARTED),
            step("1", value=b"result", data={"attempt": 1, "note": "ünïcode ✓", "nested": {"a": [1, 2.5]}}),
            NewEvent(EventType.EXECUTION_PAUSED, name="approval"),
        ],
    )

    events = store.load_events(execution)

    assert [type(event) for event in events] == [Event] * 4
    assert [event.type for event in events] == [
        EventType.EXECUTION_STARTED,
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.EXECUTION_PAUSED,
    ]
    completed, paused = events[2], events[3]
    assert (completed.step_id, completed.name, completed.raw_value) == ("1", "task_1", b"result")
    assert completed.data == {"attempt": 1, "note": "ünïcode ✓", "nested": {"a": [1, 2.5]}}
    assert (paused.step_id, paused.name, paused.raw_value, paused.data) == (None, "approval", None, {})


def test_event_timestamps_are_timezone_aware_utc_and_current(store: Store, execution: str) -> None:
    before = datetime.now(UTC)
    store.append_events(execution, [step("1")])
    after = datetime.now(UTC)

    timestamp = store.load_events(execution)[-1].timestamp

    assert timestamp.tzinfo is not None
    assert timestamp.utcoffset() == UTC.utcoffset(None)
    assert before.timestamp() - 1 <= timestamp.timestamp() <= after.timestamp() + 1


def test_event_values_keep_every_byte_and_empty_is_not_none(store: Store, execution: str) -> None:
    every_byte = bytes(range(256))
    store.append_events(execution, [step("1", value=every_byte), step("2", value=b""), step("3")])

    values = [event.raw_value for event in store.load_events(execution)[1:]]

    assert values == [every_byte, b"", None]
    assert all(value is None or type(value) is bytes for value in values)


def test_seqs_increase_across_appends_and_append_returns_the_last(store: Store, execution: str) -> None:
    returned = [
        store.append_events(execution, [step("1", EventType.STEP_STARTED), step("1")]),
        store.append_events(execution, [step("2")]),
        store.append_events(execution, [step("3", EventType.STEP_STARTED), step("3"), step("4")]),
    ]

    events = store.load_events(execution)
    seqs = [event.seq for event in events]

    assert seqs == sorted(seqs)
    # a seq numbers a row: only a step's start shares one, with its outcome written in the same call
    shared = [(a.type, b.type) for a, b in pairwise(events) if a.seq == b.seq]
    assert shared == [(EventType.STEP_STARTED, EventType.STEP_COMPLETED)] * 2
    assert returned == [seqs[2], seqs[3], seqs[6]]


def test_load_events_after_seq_returns_only_later_events(store: Store, execution: str) -> None:
    first = store.append_events(execution, [step("1"), step("2")])
    store.append_events(execution, [step("3"), step("4")])

    later = store.load_events(execution, after_seq=first)

    assert [event.step_id for event in later] == ["3", "4"]
    assert all(event.seq > first for event in later)
    assert store.load_events(execution, after_seq=later[-1].seq) == []


def test_events_of_other_executions_are_not_loaded(store: Store, execution: str) -> None:
    store.create_execution("exec-2", "other_flow", None, ExecutionStatus.RUNNING)
    store.append_events("exec-2", [step("1")])
    store.append_events(execution, [step("9")])

    events = store.load_events(execution)

    assert {event.execution_id for event in events} == {execution}
    assert [event.step_id for event in events] == [None, "9"]


def test_append_with_status_sets_status_and_output(store: Store, execution: str) -> None:
    created = store.get_execution(execution)
    store.append_events(
        execution,
        [NewEvent(EventType.EXECUTION_COMPLETED, value=b"done")],
        status=ExecutionStatus.COMPLETED,
        output=b"done",
    )

    record = store.get_execution(execution)

    assert record is not None and created is not None
    assert (record.status, record.output) == ("completed", b"done")
    assert record.updated_at >= created.updated_at
    assert store.load_events(execution)[-1].type is EventType.EXECUTION_COMPLETED


def test_append_without_status_leaves_the_execution_as_it_was(store: Store, execution: str) -> None:
    created = store.get_execution(execution)

    store.append_events(execution, [step("1")])

    assert store.get_execution(execution) == created


def test_failed_append_writes_neither_events_nor_status(store: Store, execution: str) -> None:
    unserialisable = {"bad": object()}

    with pytest.raises(TypeError):
        store.append_events(
            execution,
            [step("1"), step("2", data=unserialisable)],
            status=ExecutionStatus.FAILED,
            output=b"error",
        )

    record = store.get_execution(execution)
    assert record is not None
    assert (record.status, record.output) == ("running", None)
    assert [event.type for event in store.load_events(execution)] == [EventType.EXECUTION_STARTED]


def test_concurrent_appends_from_threads_all_land_in_order(store: Store, execution: str) -> None:
    threads, appends = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def append_steps(worker: int) -> None:
        try:
            barrier.wait()
            for n in range(appends):
                store.append_events(execution, [step(f"{worker}.{n}")])
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=append_steps, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    events = store.load_events(execution)[1:]
    assert len(events) == threads * appends
    seqs = [event.seq for event in events]
    assert seqs == sorted(set(seqs))
    for w in range(threads):
        mine = [event.step_id for event in events if event.step_id and event.step_id.startswith(f"{w}.")]
        assert mine == [f"{w}.{n}" for n in range(appends)]


# -- listing -----------------------------------------------------------------------------------------


@pytest.fixture
def listed(store: Store) -> Store:
    for n, (workflow, status) in enumerate(
        [("a", "running"), ("b", "running"), ("a", "completed"), ("a", "running"), ("b", "failed")]
    ):
        store.create_execution(f"exec-{n}", workflow, None, status)
        time.sleep(0.002)  # distinct created_at, so newest-first has one right answer
    return store


def test_list_executions_newest_first(listed: Store) -> None:
    ids = [record.id for record in listed.list_executions()]

    assert ids == ["exec-4", "exec-3", "exec-2", "exec-1", "exec-0"]


def test_list_executions_filters_by_workflow_and_status(listed: Store) -> None:
    assert [r.id for r in listed.list_executions(workflow="a")] == ["exec-3", "exec-2", "exec-0"]
    assert [r.id for r in listed.list_executions(status="running")] == ["exec-3", "exec-1", "exec-0"]
    assert [r.id for r in listed.list_executions(workflow="a", status="running")] == ["exec-3", "exec-0"]
    assert listed.list_executions(workflow="nope") == []


def test_list_executions_stops_at_the_limit(listed: Store) -> None:
    assert [r.id for r in listed.list_executions(limit=2)] == ["exec-4", "exec-3"]
    assert [r.id for r in listed.list_executions(workflow="b", limit=1)] == ["exec-4"]


def test_list_executions_pages_on_from_the_last_record_of_the_previous_page(listed: Store) -> None:
    first = listed.list_executions(limit=2)
    second = listed.list_executions(limit=2, after=(first[-1].created_at, first[-1].id))
    third = listed.list_executions(limit=2, after=(second[-1].created_at, second[-1].id))

    assert [r.id for r in first + second + third] == ["exec-4", "exec-3", "exec-2", "exec-1", "exec-0"]
    assert listed.list_executions(after=(third[-1].created_at, third[-1].id)) == []


def test_list_executions_pages_through_executions_created_at_the_same_instant(store: Store) -> None:
    for n in range(5):
        store.create_execution(f"tie-{n}", "wf", None, "queued")
    run_sql(store.url, "UPDATE executions SET created_at = 1000.5")

    seen: list[str] = []
    after: tuple[float, str] | None = None
    while page := store.list_executions(limit=2, after=after, workflow="wf"):
        seen += [r.id for r in page]
        after = (page[-1].created_at, page[-1].id)

    assert seen == ["tie-0", "tie-1", "tie-2", "tie-3", "tie-4"]


def test_list_executions_finds_ids_by_prefix_taking_wildcards_literally(store: Store) -> None:
    for execution_id in ["ab-1", "ab-2", "abc", "ac", "a%", "a_b", "b"]:
        store.create_execution(execution_id, "wf", None, "queued")

    assert sorted(r.id for r in store.list_executions(id_prefix="ab")) == ["ab-1", "ab-2", "abc"]
    assert sorted(r.id for r in store.list_executions(id_prefix="a%")) == ["a%"]
    assert sorted(r.id for r in store.list_executions(id_prefix="a_")) == ["a_b"]
    assert [r.id for r in store.list_executions(id_prefix="ab-2", status="queued")] == ["ab-2"]
    assert store.list_executions(id_prefix="zz") == []


def test_listed_records_match_get_execution(listed: Store) -> None:
    for record in listed.list_executions():
        assert listed.get_execution(record.id) == record


# -- the work queue ----------------------------------------------------------------------------------


def lease_of(store: Store, execution_id: str) -> tuple[str | None, float | None]:
    ((owner, expires_at),) = run_sql(
        store.url, "SELECT lease_owner, lease_expires_at FROM executions WHERE id = ?", (execution_id,)
    )
    return owner, expires_at


@pytest.fixture
def queue(store: Store) -> Store:
    for n, (workflow, status) in enumerate(
        [("flow", "queued"), ("other", "queued"), ("flow", "queued"), ("flow", "running"), ("flow", "paused")]
    ):
        # exec-3 runs in its own process, under that process's lease (as an embedded run does)
        leased = status == "running"
        store.create_execution(
            f"exec-{n}",
            workflow,
            None,
            status,
            lease_owner="embedded" if leased else None,
            lease_seconds=30.0 if leased else None,
        )
        time.sleep(0.002)  # distinct created_at, so oldest-first has one right answer
    return store


def test_claim_takes_the_oldest_queued_execution_and_leases_it(queue: Store) -> None:
    before = time.time()

    claimed = queue.claim_next_execution("worker-a", 30.0, ["flow"])

    assert claimed is not None
    assert (claimed.id, claimed.workflow, claimed.status) == ("exec-0", "flow", "running")
    record = queue.get_execution("exec-0")
    assert record is not None and record.status == "running"
    owner, expires_at = lease_of(queue, "exec-0")
    assert owner == "worker-a"
    assert expires_at is not None and before + 29 <= expires_at <= time.time() + 31


def test_claim_takes_each_queued_execution_once_then_none(queue: Store) -> None:
    claims = [queue.claim_next_execution("worker-a", 30.0, ["flow", "other"]) for _ in range(4)]

    assert [c.id if c else None for c in claims] == ["exec-0", "exec-1", "exec-2", None]


def test_claim_only_takes_the_workflows_asked_for(queue: Store) -> None:
    assert queue.claim_next_execution("worker-a", 30.0, []) is None
    assert queue.claim_next_execution("worker-a", 30.0, ["nope"]) is None
    claimed = queue.claim_next_execution("worker-a", 30.0, ["other"])
    assert claimed is not None and claimed.id == "exec-1"


def test_running_execution_without_a_lease_is_claimed_without_counting_a_crash(queue: Store) -> None:
    # Running with no lease: released unfinished, or written by an older taskloom. Nobody drives it.
    queue.create_execution("exec-9", "flow", None, ExecutionStatus.RUNNING)
    claimed = {}
    while (record := queue.claim_next_execution("worker-a", 30.0, ["flow"])) is not None:
        claimed[record.id] = record

    # exec-3 runs under a live lease; exec-4 is paused without a deadline.
    assert set(claimed) == {"exec-0", "exec-2", "exec-9"}
    assert claimed["exec-9"].crashes == 0
    assert lease_of(queue, "exec-9")[0] == "worker-a"


def test_running_execution_leased_at_creation_is_not_claimed_until_its_lease_expires(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="embedded", lease_seconds=30)
    store.create_execution("exec-2", "flow", None, ExecutionStatus.RUNNING, lease_owner="embedded", lease_seconds=-1)

    claimed = store.claim_next_execution("worker-a", 30.0, ["flow"])

    assert claimed is not None and claimed.id == "exec-2"
    assert store.claim_next_execution("worker-a", 30.0, ["flow"]) is None


def test_execution_whose_lease_expired_is_claimed_by_another_worker(queue: Store) -> None:
    first = queue.claim_next_execution("worker-a", -1.0, ["other"])  # a lease that has already run out

    second = queue.claim_next_execution("worker-b", 30.0, ["other"])

    assert first is not None and second is not None and second.id == first.id
    assert lease_of(queue, first.id)[0] == "worker-b"
    assert queue.renew_lease(first.id, "worker-a", 30.0) is None


def test_taking_over_an_expired_lease_counts_a_crash_in_the_record_returned(queue: Store) -> None:
    first = queue.claim_next_execution("worker-a", -1.0, ["other"])
    assert first is not None and first.crashes == 0

    second = queue.claim_next_execution("worker-b", 30.0, ["other"])

    assert second is not None
    assert (second.crashes, second.lease_owner, second.status) == (1, "worker-b", "running")
    assert second.lease_expires_at is not None and second.lease_expires_at > time.time() + 29
    record = queue.get_execution(first.id)
    assert record is not None and record.crashes == 1


def test_execution_under_a_live_lease_is_not_claimed_again(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    assert queue.claim_next_execution("worker-b", 30.0, ["other"]) is None


def test_renew_lease_extends_only_the_execution_named_and_returns_its_status(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 1.0, ["flow"])
    queue.claim_next_execution("worker-a", 1.0, ["flow"])
    queue.claim_next_execution("worker-b", 1.0, ["other"])
    before = time.time()

    assert queue.renew_lease("exec-0", "worker-a", 60.0) == "running"

    expires_at = lease_of(queue, "exec-0")[1]
    assert expires_at is not None and expires_at >= before + 59
    for untouched in ("exec-1", "exec-2"):  # a worker renews only what it runs
        other_expiry = lease_of(queue, untouched)[1]
        assert other_expiry is not None and other_expiry < before + 2


def test_renew_lease_by_another_owner_changes_nothing_and_is_none(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 1.0, ["other"])
    expires_at = lease_of(queue, "exec-1")[1]

    assert queue.renew_lease("exec-1", "worker-b", 60.0) is None
    assert queue.renew_lease("no-such-execution", "worker-a", 60.0) is None
    assert lease_of(queue, "exec-1") == ("worker-a", expires_at)


def test_an_expired_lease_nobody_took_over_is_still_renewed(queue: Store) -> None:
    queue.claim_next_execution("worker-a", -1.0, ["other"])  # expired, but still worker-a's

    assert queue.renew_lease("exec-1", "worker-a", 60.0) == "running"

    expires_at = lease_of(queue, "exec-1")[1]
    assert expires_at is not None and expires_at > time.time() + 59
    assert queue.claim_next_execution("worker-b", 30.0, ["other"]) is None


def test_renew_lease_reports_a_status_changed_under_the_holder(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])
    queue.append_events("exec-1", [], status=ExecutionStatus.CANCELLED)

    assert queue.renew_lease("exec-1", "worker-a", 30.0) == "cancelled"


def test_release_with_requeue_puts_the_execution_back_in_the_queue(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    queue.release_execution("exec-1", "worker-a", requeue=True)

    record = queue.get_execution("exec-1")
    assert record is not None and record.status == "queued"
    assert lease_of(queue, "exec-1") == (None, None)
    assert queue.renew_lease("exec-1", "worker-a", 30.0) is None
    again = queue.claim_next_execution("worker-b", 30.0, ["other"])
    assert again is not None and again.id == "exec-1"


def test_release_without_requeue_keeps_the_status_and_drops_the_lease(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    queue.release_execution("exec-1", "worker-a", requeue=False)

    record = queue.get_execution("exec-1")
    assert record is not None and record.status == "running" and record.crashes == 0
    assert lease_of(queue, "exec-1") == (None, None)
    # Running with no lease: nobody drives it, so the next worker takes it over (not as a crash).
    again = queue.claim_next_execution("worker-b", 30.0, ["other"])
    assert again is not None and again.id == "exec-1" and again.crashes == 0


def test_release_with_retry_after_sets_the_execution_aside_until_then_without_an_owner(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    queue.release_execution("exec-1", "worker-a", requeue=False, retry_after=60.0)

    record = queue.get_execution("exec-1")
    assert record is not None and record.status == "running" and record.lease_owner is None
    assert record.lease_expires_at is not None and record.lease_expires_at > time.time() + 50
    assert queue.claim_next_execution("worker-b", 30.0, ["other"]) is None  # set aside: nobody claims it now
    # A run by id (a person with the right code) takes it at once, and no owner died: no crash.
    acquired = queue.acquire_execution("exec-1", "run-b", 30.0, from_statuses=("running",))
    assert acquired.taken
    record = queue.get_execution("exec-1")
    assert record is not None and record.lease_owner == "run-b" and record.crashes == 0


@pytest.mark.parametrize("requeue", [True, False])
def test_release_as_crashed_counts_a_crash(queue: Store, requeue: bool) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    queue.release_execution("exec-1", "worker-a", requeue=requeue, crashed=True)

    record = queue.get_execution("exec-1")
    assert record is not None and record.crashes == 1
    assert record.status == ("queued" if requeue else "running")
    assert (record.lease_owner, record.lease_expires_at) == (None, None)


def test_release_by_a_worker_that_does_not_hold_the_lease_changes_nothing(queue: Store) -> None:
    queue.claim_next_execution("worker-a", 30.0, ["other"])

    queue.release_execution("exec-1", "worker-b", requeue=True, crashed=True)

    assert lease_of(queue, "exec-1")[0] == "worker-a"
    record = queue.get_execution("exec-1")
    assert record is not None and record.status == "running" and record.crashes == 0


def test_workers_claiming_at_once_each_get_different_executions(store: Store) -> None:
    executions, workers = 40, 6
    for n in range(executions):
        store.create_execution(f"exec-{n:02}", "flow", None, "queued")
    barrier = threading.Barrier(workers)
    claims: list[str] = []
    errors: list[BaseException] = []

    def claim_until_empty(worker: int) -> None:
        try:
            barrier.wait()
            while (claimed := store.claim_next_execution(f"worker-{worker}", 30.0, ["flow"])) is not None:
                claims.append(claimed.id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=claim_until_empty, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(claims) == [f"exec-{n:02}" for n in range(executions)]


# -- secrets -----------------------------------------------------------------------------------------


def test_secret_reads_back_its_ciphertext(store: Store) -> None:
    store.put_secret("API_KEY", b"\x00\xffcipher")

    assert store.get_secret("API_KEY") == b"\x00\xffcipher"
    assert type(store.get_secret("API_KEY")) is bytes


def test_missing_secret_is_none(store: Store) -> None:
    assert store.get_secret("NOPE") is None


def test_put_secret_overwrites(store: Store) -> None:
    store.put_secret("API_KEY", b"old")
    store.put_secret("API_KEY", b"new")

    assert store.get_secret("API_KEY") == b"new"
    assert store.list_secret_names() == ["API_KEY"]


def test_secret_names_are_listed_sorted(store: Store) -> None:
    for name in ["b_token", "API_KEY", "a_token", "DB_PASSWORD"]:
        store.put_secret(name, b"x")

    assert store.list_secret_names() == ["API_KEY", "DB_PASSWORD", "a_token", "b_token"]


def test_delete_secret_reports_whether_it_existed(store: Store) -> None:
    store.put_secret("API_KEY", b"x")

    assert store.delete_secret("API_KEY") is True
    assert store.delete_secret("API_KEY") is False
    assert store.get_secret("API_KEY") is None
    assert store.list_secret_names() == []


# -- opening, schema, processes ----------------------------------------------------------------------


def test_reopening_a_store_keeps_its_data(store: Store, execution: str) -> None:
    store.append_events(execution, [step("1", value=b"v")], status="completed", output=b"out")
    store.put_secret("API_KEY", b"x")
    events, record = store.load_events(execution), store.get_execution(execution)
    store.close()

    reopened = open_store(store.url)
    try:
        assert reopened.load_events(execution) == events
        assert reopened.get_execution(execution) == record
        assert reopened.get_secret("API_KEY") == b"x"
    finally:
        reopened.close()


def test_a_store_stays_usable_after_close(store: Store, execution: str) -> None:
    store.close()

    store.append_events(execution, [step("1")])

    assert len(store.load_events(execution)) == 2


def test_reopening_does_not_migrate_again(store: Store) -> None:
    open_store(store.url).close()

    versions = run_sql(store.url, "SELECT version FROM schema_version ORDER BY version")

    assert [v for (v,) in versions] == list(range(1, migration_count(store.url) + 1))


def test_stores_opened_at_once_on_a_new_database_migrate_once(store_url: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            opened.append(open_store(store_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in opened:
        each.close()

    assert errors == []
    versions = run_sql(store_url, "SELECT version FROM schema_version")
    assert len(versions) == migration_count(store_url)


def test_a_schema_newer_than_this_taskloom_is_refused(store: Store) -> None:
    store.close()
    run_sql(store.url, "INSERT INTO schema_version (version) VALUES (?)", (999,))

    with pytest.raises(StoreError, match="schema version 999, newer"):
        open_store(store.url)


def _append_in_child(store: Store, execution_id: str) -> None:
    store.append_events(execution_id, [step("child")])
    store.close()


def test_a_forked_child_uses_its_own_connections(store: Store, execution: str) -> None:
    store.append_events(execution, [step("before")])  # the parent holds an open connection now
    child = multiprocessing.get_context("fork").Process(target=_append_in_child, args=(store, execution))
    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    store.append_events(execution, [step("after")])  # the child closing its store left ours alone
    assert [event.step_id for event in store.load_events(execution)] == [None, "before", "child", "after"]


def test_appending_to_an_unknown_execution_names_it(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError, match="no-such-execution"):
        store.append_events("no-such-execution", [NewEvent(EventType.STEP_STARTED, "1", "t")])


# -- conditional appends (expected_status) -----------------------------------------------------------


def test_append_with_the_expected_status_writes_events_and_status(store: Store, execution: str) -> None:
    store.append_events(execution, [step("1")], status=ExecutionStatus.PAUSED)

    store.append_events(execution, [step("2")], status=ExecutionStatus.QUEUED, expected_status=ExecutionStatus.PAUSED)

    record = store.get_execution(execution)
    assert record is not None and record.status == ExecutionStatus.QUEUED
    assert [e.step_id for e in store.load_events(execution)] == [None, "1", "2"]


def test_append_with_another_status_expected_writes_nothing(store: Store, execution: str) -> None:
    with pytest.raises(ExecutionStateError, match="exec-1 is running, not paused"):
        store.append_events(
            execution, [step("1")], status=ExecutionStatus.QUEUED, expected_status=ExecutionStatus.PAUSED
        )

    record = store.get_execution(execution)
    assert record is not None and record.status == ExecutionStatus.RUNNING
    assert [e.step_id for e in store.load_events(execution)] == [None]


def test_expected_status_of_an_unknown_execution_is_not_found(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError, match="no-such-execution"):
        store.append_events("no-such-execution", [], status="queued", expected_status="paused")


def test_appending_a_status_to_an_unknown_execution_is_not_found(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError, match="no-such-execution"):
        store.append_events("no-such-execution", [], status=ExecutionStatus.COMPLETED)


def test_a_status_change_without_events_returns_seq_zero(store: Store, execution: str) -> None:
    store.append_events(execution, [step("1"), step("2")])

    assert store.append_events(execution, [], status=ExecutionStatus.COMPLETED) == 0


def _pause_with_pending_step(store: Store, execution_id: str) -> None:
    store.append_events(
        execution_id,
        [step("1", EventType.STEP_STARTED), NewEvent(EventType.EXECUTION_PAUSED, "1", "approval")],
        status=ExecutionStatus.PAUSED,
    )


def _race_resumes(racers: list[Store], execution_id: str) -> list[str]:
    """Every racer resumes ``execution_id`` at the same moment; what each got, in no order."""
    barrier = threading.Barrier(len(racers))
    outcomes: list[str] = []

    def resume(racer: Store, value: int) -> None:
        barrier.wait()
        try:
            record_resume(racer, execution_id, value, status=ExecutionStatus.QUEUED)
            outcomes.append("resumed")
        except ExecutionStateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=resume, args=(racer, n)) for n, racer in enumerate(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_of_resumes_racing_for_one_pause_exactly_one_succeeds(store: Store) -> None:
    racers = [open_store(store.url) for _ in range(4)]  # one store each, as separate processes would have
    try:
        for round_ in range(5):
            execution_id = f"exec-{round_}"
            store.create_execution(execution_id, "flow", None, ExecutionStatus.RUNNING)
            _pause_with_pending_step(store, execution_id)

            outcomes = _race_resumes(racers, execution_id)

            assert sorted(outcomes) == ["refused", "refused", "refused", "resumed"]
            completions = [e for e in store.load_events(execution_id) if e.type is EventType.STEP_COMPLETED]
            assert len(completions) == 1
    finally:
        for racer in racers:
            racer.close()


def test_a_cancel_does_not_overwrite_a_status_set_after_it_looked(store: Store, execution: str) -> None:
    class FinishesWhileCancelling:
        """The store, with the execution completing between the cancel's read and its write."""

        def __init__(self, inner: Store) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def append_events(self, execution_id: str, events: Any, **kwargs: Any) -> int:
            self.inner.append_events(execution_id, [], status=ExecutionStatus.COMPLETED, output=b"done")
            return self.inner.append_events(execution_id, events, **kwargs)

    with pytest.raises(ExecutionStateError, match="already completed"):
        record_cancel(FinishesWhileCancelling(store), execution)  # type: ignore[arg-type]

    record = store.get_execution(execution)
    assert record is not None and (record.status, record.output) == ("completed", b"done")
    assert all(e.type is not EventType.EXECUTION_CANCELLED for e in store.load_events(execution))


# -- waking workers -----------------------------------------------------------------------------------


def test_next_lease_expiry_is_the_earliest_lease_of_the_workflows_asked_for(queue: Store) -> None:
    assert queue.next_lease_expiry(["other"]) is None  # exec-1 is queued: claimable, not a lease
    before = time.time()
    queue.claim_next_execution("worker-a", 40.0, ["flow"])
    queue.claim_next_execution("worker-b", 5.0, ["flow"])
    queue.claim_next_execution("worker-c", 1.0, ["other"])

    expiry = queue.next_lease_expiry(["flow"])

    assert expiry is not None and before + 5 <= expiry <= time.time() + 5
    assert queue.next_lease_expiry(["nope"]) is None
    assert queue.next_lease_expiry([]) is None
    queue.release_execution("exec-2", "worker-b", requeue=True)
    later = queue.next_lease_expiry(["flow"])  # exec-3's lease, taken at creation for 30 s
    assert later is not None and before + 29 <= later <= time.time() + 30


def test_a_running_execution_without_a_lease_counts_as_expiring_now(queue: Store) -> None:
    queue.create_execution("exec-9", "flow", None, ExecutionStatus.RUNNING)
    before = time.time()

    expiry = queue.next_lease_expiry(["flow"])

    assert expiry is not None and before - 1 <= expiry <= time.time()


def _primed(store: Store) -> Store:
    """``store`` after a first wait_for_work (which may answer True at once: "look before waiting")."""
    store.wait_for_work(0.01)
    return store


def test_wait_for_work_times_out_when_nothing_is_queued(store: Store) -> None:
    _primed(store)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)  # running is not queued work
    started = time.monotonic()

    assert store.wait_for_work(0.3) is False
    assert time.monotonic() - started >= 0.25


def _later(seconds: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)  # lets the other thread start waiting; not synchronisation by sleep alone
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _woken_within(store: Store, action: Any) -> float:
    started = time.monotonic()
    thread = _later(0.1, action)
    woke = store.wait_for_work(10.0)
    thread.join()
    assert woke is True
    return time.monotonic() - started


def test_wait_for_work_wakes_when_the_same_store_queues_an_execution(store: Store) -> None:
    _primed(store)

    assert _woken_within(store, lambda: store.create_execution("exec-1", "flow", None, "queued")) < 5


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["created", "requeued", "resumed"])
def test_postgres_wait_for_work_wakes_when_another_process_queues_work(pg_fresh_url: str, how: str) -> None:
    # Only PostgreSQL notifies other processes; SQLite workers poll.
    store, other = open_store(pg_fresh_url), open_store(pg_fresh_url)  # as two processes would have
    try:
        other.create_execution("exec-0", "flow", None, ExecutionStatus.QUEUED)
        other.claim_next_execution("worker-a", 30.0, ["flow"])
        if how == "resumed":
            _pause_with_pending_step(other, "exec-0")
        _primed(store)
        actions = {
            "created": lambda: other.create_execution("exec-1", "flow", None, "queued"),
            "requeued": lambda: other.release_execution("exec-0", "worker-a", requeue=True),
            "resumed": lambda: record_resume(other, "exec-0", "ok", status=ExecutionStatus.QUEUED),
        }

        assert _woken_within(store, actions[how]) < 2  # milliseconds, in fact; loose for slow machines
        assert store.wait_for_work(0.2) is False  # one notification, one wake-up
    finally:
        store.close()
        other.close()


# -- fenced appends (lease_owner) ---------------------------------------------------------------------


def test_a_write_fenced_by_the_lease_holder_lands(store: Store) -> None:
    store.create_execution("exec-1", "order_flow", b"input", ExecutionStatus.QUEUED)
    assert store.claim_next_execution("worker-a", 30, ["order_flow"]) is not None

    store.append_events("exec-1", [step("1")], status=ExecutionStatus.COMPLETED, lease_owner="worker-a")

    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.COMPLETED
    assert [e.step_id for e in store.load_events("exec-1")] == [None, "1"]


def test_a_write_fenced_by_a_lease_the_worker_lost_writes_nothing(store: Store) -> None:
    store.create_execution("exec-1", "order_flow", b"input", ExecutionStatus.QUEUED)
    assert store.claim_next_execution("worker-a", 0.0, ["order_flow"]) is not None
    taken = store.claim_next_execution("worker-b", 30, ["order_flow"])  # worker-a's lease had expired
    assert taken is not None

    with pytest.raises(LeaseLostError, match=r"worker-a no longer holds its lease \(now worker-b\)"):
        store.append_events("exec-1", [step("1")], status=ExecutionStatus.COMPLETED, lease_owner="worker-a")

    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.RUNNING
    assert [e.step_id for e in store.load_events("exec-1")] == [None]


# -- leases of every run: created leased, acquired by id, limits -------------------------------------


def test_a_new_execution_has_no_lease_and_no_crashes(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    record = store.get_execution("exec-1")

    assert record is not None
    assert (record.lease_owner, record.lease_expires_at, record.crashes) == (None, None, 0)


def test_an_execution_created_with_a_lease_reads_back_leased(store: Store) -> None:
    before = time.time()
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="me", lease_seconds=30)
    store.create_execution("exec-2", "flow", None, ExecutionStatus.RUNNING, lease_seconds=30)

    first, second = store.get_execution("exec-1"), store.get_execution("exec-2")

    assert first is not None and second is not None
    assert first.lease_owner == "me" and second.lease_owner is None
    for record in (first, second):
        assert record.lease_expires_at is not None
        assert before + 29 <= record.lease_expires_at <= time.time() + 31
    listed = {r.id: r for r in store.list_executions()}
    assert listed["exec-1"] == first


def test_creating_an_id_that_exists_is_a_state_error_and_writes_nothing(store: Store) -> None:
    store.create_execution("exec-1", "flow", b"first", ExecutionStatus.RUNNING)

    with pytest.raises(ExecutionStateError, match=r"exec-1.*already exists"):
        store.create_execution("exec-1", "other", b"second", ExecutionStatus.QUEUED)

    record = store.get_execution("exec-1")
    assert record is not None and (record.workflow, record.input) == ("flow", b"first")
    assert len(store.load_events("exec-1")) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_a_list_limit_below_one_is_an_error_naming_limit(store: Store, limit: int) -> None:
    with pytest.raises(TaskloomError, match="limit") as raised:
        store.list_executions(limit=limit)
    assert not isinstance(raised.value, ValueError)


def test_acquire_takes_a_queued_execution_and_returns_it_as_it_was(store: Store) -> None:
    store.create_execution("exec-1", "flow", b"in", ExecutionStatus.QUEUED)
    before = time.time()

    acquired = store.acquire_execution("exec-1", "me", 30.0, from_statuses=["queued", "running"])

    assert acquired.taken is True
    assert isinstance(acquired, Acquired)
    assert (acquired.record.status, acquired.record.lease_owner, acquired.record.crashes) == ("queued", None, 0)
    record = store.get_execution("exec-1")
    assert record is not None and (record.status, record.lease_owner, record.crashes) == ("running", "me", 0)
    assert record.lease_expires_at is not None and before + 29 <= record.lease_expires_at <= time.time() + 31
    assert record.updated_at >= before


def test_acquire_of_an_unknown_execution_is_not_found(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError, match="nope"):
        store.acquire_execution("nope", "me", 30.0, from_statuses=["running"])


def test_acquire_leaves_an_execution_whose_status_was_not_asked_for(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)
    store.append_events("exec-1", [], status=ExecutionStatus.COMPLETED)

    acquired = store.acquire_execution("exec-1", "me", 30.0, from_statuses=["queued", "running"])

    assert acquired.taken is False and acquired.record.status == "completed"
    record = store.get_execution("exec-1")
    assert record is not None and (record.status, record.lease_owner) == ("completed", None)


def test_acquire_leaves_an_execution_another_owner_holds_under_a_live_lease(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="other", lease_seconds=30)

    acquired = store.acquire_execution("exec-1", "me", 30.0, from_statuses=["running"])

    assert acquired.taken is False
    assert acquired.record.lease_owner == "other"
    record = store.get_execution("exec-1")
    assert record is not None and (record.lease_owner, record.crashes) == ("other", 0)


def test_acquire_takes_over_an_expired_lease_and_counts_a_crash(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="dead", lease_seconds=-1)

    acquired = store.acquire_execution("exec-1", "me", 30.0, from_statuses=["running"])

    assert acquired.taken is True
    assert (acquired.record.lease_owner, acquired.record.crashes) == ("dead", 0)
    record = store.get_execution("exec-1")
    assert record is not None and (record.status, record.lease_owner, record.crashes) == ("running", "me", 1)


@pytest.mark.parametrize("lease_owner", [None, "me"])
def test_acquire_without_a_dead_holder_counts_no_crash(store: Store, lease_owner: str | None) -> None:
    # An expired lease of nobody (created leased without an owner) or of the caller itself: no one died.
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner=lease_owner, lease_seconds=-1)
    store.create_execution("exec-2", "flow", None, ExecutionStatus.RUNNING)  # no lease at all

    for execution_id in ("exec-1", "exec-2"):
        assert store.acquire_execution(execution_id, "me", 30.0, from_statuses=["running"]).taken
        record = store.get_execution(execution_id)
        assert record is not None and (record.lease_owner, record.crashes) == ("me", 0)


def test_acquire_by_the_holder_itself_renews_its_lease(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="me", lease_seconds=1)

    acquired = store.acquire_execution("exec-1", "me", 60.0, from_statuses=["running"])

    assert acquired.taken is True
    record = store.get_execution("exec-1")
    assert record is not None and record.lease_expires_at is not None
    assert record.lease_expires_at > time.time() + 59 and record.crashes == 0


def test_acquire_takes_a_paused_execution_when_asked_to(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    store.append_events("exec-1", [], status=ExecutionStatus.PAUSED)

    acquired = store.acquire_execution("exec-1", "me", 30.0, from_statuses=["paused"])

    assert acquired.taken and acquired.record.status == "paused"
    record = store.get_execution("exec-1")
    assert record is not None and (record.status, record.lease_owner) == ("running", "me")


def test_of_processes_acquiring_one_execution_at_once_exactly_one_takes_it(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)
    racers = [open_store(store.url) for _ in range(4)]
    barrier = threading.Barrier(len(racers))
    results: list[bool] = []

    def race(racer: Store, n: int) -> None:
        barrier.wait(timeout=30)
        results.append(racer.acquire_execution("exec-1", f"owner-{n}", 30.0, from_statuses=["queued"]).taken)

    threads = [threading.Thread(target=race, args=(racer, n)) for n, racer in enumerate(racers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for racer in racers:
            racer.close()

    assert sorted(results) == [False, False, False, True]


@pytest.mark.parametrize("count", [1, 2])
def test_a_run_s_write_fenced_by_lease_and_status_is_refused_whole_with_the_reason(store: Store, count: int) -> None:
    """How every step of a run is written: ``expected_status="running"`` and the run's ``lease_owner``."""
    store.create_execution("run-1", "flow", None, "running", lease_owner="run-a", lease_seconds=30.0)
    events = [NewEvent(EventType.STEP_COMPLETED, str(n), "step") for n in range(count)]

    def write(owner: str = "run-a", execution: str = "run-1") -> int:
        return store.append_events(execution, events, expected_status="running", lease_owner=owner)

    first = write()
    assert first > 0 and len(store.load_events("run-1")) == 1 + count
    with pytest.raises(LeaseLostError, match="run-b no longer holds its lease"):
        write(owner="run-b")
    with pytest.raises(ExecutionNotFoundError):
        write(execution="missing")
    record_cancel(store, "run-1")
    with pytest.raises(ExecutionStateError, match="is cancelled, not running"):
        write()
    assert len(store.load_events("run-1")) == 2 + count  # the cancel's event; nothing of the refused writes
