"""The execution worker in this process: claim, wait, execute, set aside, drain (issue 14, mutation).

``tests/integration/test_worker*.py`` run workers as real processes, which mutation testing cannot see;
these tests run :class:`taskloom.worker.Worker` in a thread of the test, on a real SQLite file of their
own, and stop it with :meth:`Worker.stop`. Steps that must hold an execution open wait on events the
test sets; every wait has a deadline.

:class:`WatchedStore` is the real SQLite store, which also remembers what each claim returned and tells
when the worker starts waiting for work: the only way to see, without a clock, that an idle worker does
not claim in a loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import re
import socket
import sqlite3
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for

from taskloom import ExecutionContext, serde, task, workflow
from taskloom.errors import WorkflowError
from taskloom.events import EventType
from taskloom.executions import queue_execution, record_resume
from taskloom.settings import WorkerSettings
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord
from taskloom.store.sqlite import SQLiteStore
from taskloom.tasks import pause
from taskloom.worker import MISMATCH_RETRY_SECONDS, Worker

#: the longest any wait of these tests may take before it counts as a hang
WAIT = 10.0


class WatchedStore(SQLiteStore):
    """The SQLite store, remembering each claim's result and telling when the worker waits for work."""

    def __init__(self, url: str) -> None:
        super().__init__(url, retry_seconds=0.0)
        self.claims: list[ExecutionRecord | None] = []
        #: when each execution was claimed (time.monotonic())
        self.claimed_at: dict[str, float] = {}
        self.waiting = threading.Event()

    def claim_next_execution(
        self, worker_id: str, lease_seconds: float, workflows: Any, **options: Any
    ) -> ExecutionRecord | None:
        record = super().claim_next_execution(worker_id, lease_seconds, workflows, **options)
        self.claims.append(record)
        if record is not None:
            self.claimed_at[record.id] = time.monotonic()
        return record

    def wait_for_work(self, timeout: float) -> bool:
        self.waiting.set()
        return super().wait_for_work(timeout)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "worker.db"


@pytest.fixture
def store(db: Path) -> Iterator[WatchedStore]:
    opened = WatchedStore(f"sqlite:///{db}")
    yield opened
    opened.close()


# -- what the workflows do, and the events the tests hold them with ------------------------------------
entered: list[str] = []
gate = threading.Event()
bodies: list[str] = []
broke = {"left": 0, "path": ""}
exits = {"left": 0}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    entered.clear()
    bodies.clear()
    gate.clear()
    broke.update(left=0, path="")
    exits["left"] = 0
    spans.clear()
    barrier.reset()
    yield
    gate.set()  # never leave a worker thread blocked
    wait_for(lambda: not worker_threads(), timeout=WAIT, what="the worker's threads to end")


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("taskloom-worker")]


@task
def held(name: str) -> str:
    entered.append(name)
    assert gate.wait(WAIT), "the test never opened the gate"
    return name.upper()


@workflow.with_options(name="mw_gated")
async def gated(ctx: ExecutionContext[str]) -> str:
    return await held(ctx.input)


@workflow.with_options(name="mw_plain")
async def plain(ctx: ExecutionContext[int]) -> int:
    bodies.append(threading.current_thread().name)
    return ctx.input * 2


@task
def stop_and_finish(seconds: float) -> str:
    """Stops the worker running it, then works a while longer than the worker's poll interval."""
    running[0].stop()
    time.sleep(seconds)  # the step's work, not synchronisation: it outlasts the stop check
    return "finished"


running: list[Worker] = []


@workflow.with_options(name="mw_stopping")
async def stopping(ctx: ExecutionContext[float]) -> str:
    return await stop_and_finish(ctx.input)


@task
def first_step() -> str:
    return "one"


@task
def other_step() -> str:
    return "other"


async def _before_the_deploy(ctx: ExecutionContext[None]) -> str:
    await first_step()
    return str(await pause("approve"))


async def _after_the_deploy(ctx: ExecutionContext[None]) -> str:
    await other_step()  # the step at position 1 is now another task
    return str(await pause("approve"))


changed_before = workflow.with_options(name="mw_changed")(_before_the_deploy)
changed_after = workflow.with_options(name="mw_changed")(_after_the_deploy)


@task
def breaks_the_store() -> str:
    """The first time, takes the executions table away from under the run (a real store fault)."""
    if broke["left"]:
        broke["left"] -= 1
        with sqlite3.connect(broke["path"]) as conn:
            conn.execute("ALTER TABLE executions RENAME TO executions_away")
    return "done"


@workflow.with_options(name="mw_breaking")
async def breaking(ctx: ExecutionContext[None]) -> str:
    return await breaks_the_store()


@task
def exits_once() -> str:
    if exits["left"]:
        exits["left"] -= 1
        sys.exit(3)
    return "stayed"


@workflow.with_options(name="mw_exiting")
async def exiting(ctx: ExecutionContext[None]) -> str:
    return await exits_once()


TOGETHER = 33
barrier = threading.Barrier(TOGETHER)


@workflow.with_options(name="mw_together")
async def together(ctx: ExecutionContext[int]) -> int:
    barrier.wait(WAIT)  # every execution's body on a thread of its own at the same time
    return ctx.input


@task
def works(seconds: float) -> float:
    time.sleep(seconds)  # the step's work, not synchronisation: it takes longer than the poll interval
    return seconds


@workflow.with_options(name="mw_slow")
async def slow(ctx: ExecutionContext[float]) -> float:
    return await works(ctx.input)


spans: list[tuple[float, float]] = []


@task
def timed_work(seconds: float) -> float:
    began = time.monotonic()
    time.sleep(seconds)  # the step's work, not synchronisation: many poll intervals long
    spans.append((began, time.monotonic()))
    return seconds


@workflow.with_options(name="mw_spans")
async def spanning(ctx: ExecutionContext[float]) -> float:
    return await timed_work(ctx.input)


def settings(**changes: Any) -> WorkerSettings:
    values: dict[str, Any] = {"concurrency": 1, "lease_seconds": 5.0, "poll_seconds": 0.05, "grace_seconds": 30.0}
    return WorkerSettings(**{**values, **changes})


class Running:
    """A worker's ``run()`` in a thread of the test; ``result`` is what it returned."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.result: list[bool] = []
        self.thread = threading.Thread(target=lambda: self.result.append(worker.run()), name="test-worker-run")
        running[:] = [worker]
        self.thread.start()

    def until(self, condition: Callable[[], Any], what: str) -> Any:
        """Wait for ``condition``, failing at once if run() ended (it raised) instead of after WAIT."""

        def check() -> Any:
            value = condition()
            if not value and not self.thread.is_alive():
                raise AssertionError(f"run() ended before {what}")
            return value

        return wait_for(check, timeout=WAIT, what=what)

    def stop(self, timeout: float = WAIT) -> bool:
        """Stop the worker; what run() returned, or an AssertionError if it did not return in ``timeout``."""
        self.worker.stop()
        return self.returned(timeout)

    def returned(self, timeout: float = WAIT) -> bool:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"run() did not return within {timeout} s"
        return self.result[0]


def messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "taskloom.worker" and (level is None or r.levelno == level)
    ]


def status(store: SQLiteStore, execution_id: str) -> str:
    record = store.get_execution(execution_id)
    assert record is not None
    return record.status


def completed(store: SQLiteStore, *ids: str) -> bool:
    return all(status(store, i) == "completed" for i in ids)


def rename(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


# -- construction ------------------------------------------------------------------------------------
def test_a_worker_with_no_workflow_refuses_to_start() -> None:
    with pytest.raises(WorkflowError) as caught:
        Worker({})
    assert str(caught.value) == "the worker found no @workflow in its modules; nothing to run"


@pytest.mark.store
def test_a_worker_without_settings_store_or_id_uses_the_defaults_and_names_its_host_and_process() -> None:
    worker = Worker({"mw_plain": plain})
    assert worker.settings == WorkerSettings()
    assert worker.store is default_store()
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{6}}", worker.worker_id)
    assert Worker({"mw_plain": plain}).worker_id != worker.worker_id


def test_a_worker_keeps_the_settings_store_and_id_it_is_given(store: WatchedStore) -> None:
    chosen = settings(concurrency=3)
    worker = Worker({"mw_plain": plain}, chosen, store=store, worker_id="w-1")
    assert worker.settings is chosen
    assert worker.store is store
    assert worker.worker_id == "w-1"


# -- claim and execute -------------------------------------------------------------------------------
def test_a_worker_runs_the_queued_executions_of_its_workflows_on_its_own_threads_and_says_so(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    ids = [queue_execution(store, "mw_plain", "x:plain", n) for n in range(3)]
    other = queue_execution(store, "not_mine", "x:not_mine", None)
    worker = Worker({"mw_plain": plain, "mw_gated": gated}, settings(), store=store, worker_id="w-1")
    run = Running(worker)
    try:
        run.until(lambda: completed(store, *ids), what="the executions")
    finally:
        assert run.stop() is False
    assert [serde.loads(store.get_execution(i).output) for i in ids] == [0, 2, 4]
    assert status(store, other) == "queued"  # not one of its workflows
    assert len(bodies) == 3 and all(re.fullmatch(r"taskloom-worker_\d+", name) for name in bodies), bodies
    assert worker_threads() == []  # run() returned after its threads ended
    assert worker._running == {}  # it keeps nothing of the executions it finished
    logged = messages(caplog)
    assert logged[0] == "worker w-1: running workflows mw_gated, mw_plain"
    assert sorted(m for m in logged if m.startswith("worker w-1: execution")) == sorted(
        f"worker w-1: execution {i} completed" for i in ids
    )
    assert logged[-1] == "worker w-1: stopped"


def test_a_claimed_execution_runs_under_the_workers_lease_of_the_configured_length(store: WatchedStore) -> None:
    execution = queue_execution(store, "mw_gated", "x:gated", "a")
    worker = Worker({"mw_gated": gated}, settings(lease_seconds=7.5), store=store, worker_id="w-1")
    run = Running(worker)
    try:
        run.until(lambda: entered, what="the step to start")
        record = store.get_execution(execution)
        assert record is not None and record.status == "running" and record.lease_owner == "w-1"
        assert record.lease_expires_at is not None
        assert time.time() + 7.5 - 5 < record.lease_expires_at <= time.time() + 7.5
        gate.set()
        run.until(lambda: completed(store, execution), what="the execution")
    finally:
        gate.set()
        assert run.stop() is False
    after = store.get_execution(execution)
    assert after is not None and after.lease_owner is None and after.lease_expires_at is None


def test_a_worker_runs_as_many_executions_at_once_as_its_concurrency_even_beyond_the_default_pool(
    store: WatchedStore,
) -> None:
    # more than any ThreadPoolExecutor's default size, min(32, cpus + 4): each body waits for all the others
    ids = [queue_execution(store, "mw_together", "x:together", n) for n in range(TOGETHER)]
    run = Running(Worker({"mw_together": together}, settings(concurrency=TOGETHER), store=store))
    try:
        run.until(lambda: completed(store, *ids), what=f"{TOGETHER} executions at once")
    finally:
        barrier.abort()
        assert run.stop() is False


def test_a_worker_with_concurrency_two_runs_two_executions_at_once(store: WatchedStore) -> None:
    ids = [queue_execution(store, "mw_gated", "x:gated", name) for name in ("a", "b")]
    run = Running(Worker({"mw_gated": gated}, settings(concurrency=2), store=store))
    try:
        run.until(lambda: len(entered) == 2, what="both executions to run at once")
        gate.set()
        run.until(lambda: completed(store, *ids), what="the executions")
    finally:
        gate.set()
        assert run.stop() is False


def test_a_worker_whose_slots_stay_full_longer_than_its_poll_interval_keeps_claiming(store: WatchedStore) -> None:
    ids = [queue_execution(store, "mw_slow", "x:slow", 0.1) for _ in range(3)]
    run = Running(Worker({"mw_slow": slow}, settings(poll_seconds=0.02), store=store))
    try:
        run.until(lambda: completed(store, *ids), what="three executions, one after the other")
    finally:
        assert run.stop() is False


def test_an_idle_worker_takes_work_queued_through_its_store_at_once_and_does_not_claim_in_a_loop(
    store: WatchedStore,
) -> None:
    run = Running(Worker({"mw_plain": plain}, settings(poll_seconds=30.0), store=store))
    try:
        assert store.waiting.wait(WAIT), "the worker never waited for work"
        assert store.claims == [None]  # one look, then it waits (30 s, or until work is queued)
        execution = queue_execution(store, "mw_plain", "x:plain", 1)
        run.until(lambda: completed(store, execution), what="the execution (poll is 30 s)")
    finally:
        assert run.stop(timeout=WAIT) is False  # noticed within STOP_CHECK_SECONDS, not after the 30 s poll
    assert len(store.claims) <= 4


def test_an_idle_worker_found_nothing_and_still_takes_the_next_execution(store: WatchedStore) -> None:
    first = queue_execution(store, "mw_plain", "x:plain", 1)
    run = Running(Worker({"mw_plain": plain}, settings(), store=store))
    try:
        run.until(lambda: completed(store, first), what="the first execution")
        store.waiting.clear()
        assert store.waiting.wait(WAIT), "the worker never waited for work"  # it found nothing: idle
        second = queue_execution(store, "mw_plain", "x:plain", 2)
        run.until(lambda: completed(store, second), what="the second execution")
    finally:
        assert run.stop() is False


def test_an_idle_worker_takes_over_a_dead_owners_execution_when_its_lease_runs_out_not_at_the_next_poll(
    store: WatchedStore, db: Path
) -> None:
    other = SQLiteStore(f"sqlite:///{db}")  # another process's view: queuing there wakes no one here
    try:
        execution = queue_execution(other, "mw_plain", "x:plain", 5)
        assert other.acquire_execution(execution, "dead", 1.0, from_statuses=("queued",)).taken
        run = Running(Worker({"mw_plain": plain}, settings(poll_seconds=30.0), store=store))
        try:
            run.until(lambda: completed(store, execution), what="the takeover (poll is 30 s)")
        finally:
            assert run.stop() is False
    finally:
        other.close()
    record = store.get_execution(execution)
    assert record is not None and record.crashes == 1
    # it looked once (held by "dead"), waited until the lease had run out, and then claimed it
    assert [claim is not None for claim in store.claims[:2]] == [False, True]


# -- what cannot run -----------------------------------------------------------------------------------
def test_an_execution_the_workers_code_cannot_replay_is_set_aside_under_no_owner_and_logged(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    ctx = asyncio.run(changed_before.arun(store=store))
    assert ctx.status == "paused"
    record_resume(store, ctx.execution_id, "yes", status="queued")
    good = queue_execution(store, "mw_plain", "x:plain", 1)
    run = Running(Worker({"mw_changed": changed_after, "mw_plain": plain}, settings(), store=store, worker_id="w-1"))
    try:
        run.until(lambda: completed(store, good), what="the good execution")
        run.until(lambda: messages(caplog, logging.ERROR), what="the mismatch to be logged")
    finally:
        assert run.stop() is False
    record = store.get_execution(ctx.execution_id)
    assert record is not None and record.status == "running" and record.lease_owner is None
    assert record.lease_expires_at is not None
    assert time.time() + MISMATCH_RETRY_SECONDS - 10 < record.lease_expires_at <= time.time() + 30
    assert record.crashes == 0
    (logged,) = messages(caplog, logging.ERROR)
    assert re.fullmatch(
        r"worker w-1: execution \w+: step 1 was recorded as 'first_step' but the workflow now calls "
        r"'other_step' there\..* \(set aside for 30 s\)",
        logged,
    ), logged
    assert sum(1 for claim in store.claims if claim is not None and claim.id == ctx.execution_id) == 1


def test_an_execution_whose_input_no_longer_unpickles_is_set_aside(store: WatchedStore) -> None:
    module = types.ModuleType("mw_gone_with_the_deploy")
    exec("class Order:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        blob = pickle.dumps(module.Order(), protocol=5)
    finally:
        del sys.modules[module.__name__]
    store.create_execution("undecodable", "mw_plain", blob, "queued", "x:plain")
    run = Running(Worker({"mw_plain": plain}, settings(), store=store))
    try:
        run.until(
            lambda: (
                (r := store.get_execution("undecodable")) is not None
                and r.lease_expires_at is not None
                and r.lease_owner is None
            ),
            what="the execution to be set aside",
        )
    finally:
        assert run.stop() is False
    record = store.get_execution("undecodable")
    assert record is not None and record.lease_expires_at > time.time() + 20
    assert [e.type for e in store.load_events("undecodable")] == [EventType.EXECUTION_STARTED]


def test_an_execution_of_a_workflow_registered_under_another_name_is_set_aside_and_logged(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    execution = queue_execution(store, "alias", "x:plain", 1)
    run = Running(Worker({"alias": plain}, settings(), store=store, worker_id="w-1"))
    try:
        run.until(lambda: messages(caplog, logging.ERROR), what="the failure to be logged")
    finally:
        assert run.stop() is False
    (failure,) = [r for r in caplog.records if r.name == "taskloom.worker" and r.levelno == logging.ERROR]
    assert failure.getMessage() == f"worker w-1: execution {execution} could not run"
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], WorkflowError)
    record = store.get_execution(execution)
    assert record is not None and record.lease_owner is None and record.lease_expires_at is not None
    assert record.lease_expires_at > time.time() + 20


def test_a_step_that_exits_the_process_is_a_crash_the_worker_survives_and_runs_again(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    exits["left"] = 1
    execution = queue_execution(store, "mw_exiting", "x:exiting", None)
    run = Running(Worker({"mw_exiting": exiting}, settings(), store=store, worker_id="w-1"))
    try:
        run.until(lambda: completed(store, execution), what="the execution")
    finally:
        assert run.stop() is False
    record = store.get_execution(execution)
    assert record is not None and record.crashes == 1
    assert messages(caplog, logging.WARNING) == [
        f"worker w-1: a step of execution {execution} tried to exit the process"
    ]


def test_a_store_that_fails_under_a_run_is_logged_and_the_worker_finishes_the_execution_once_it_is_back(
    store: WatchedStore, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    broke.update(left=1, path=str(db))
    execution = queue_execution(store, "mw_breaking", "x:breaking", None)
    run = Running(Worker({"mw_breaking": breaking}, settings(lease_seconds=1.0), store=store, worker_id="w-1"))
    try:
        run.until(
            lambda: any("reading lease expiries failed" in m for m in messages(caplog)),
            what="the worker to meet the broken store",
        )
        rename(db, "executions_away", "executions")
        run.until(lambda: completed(store, execution), what="the execution once the store is back")
    finally:
        assert run.stop() is False
    logged = messages(caplog)
    assert any(
        re.fullmatch(rf"worker w-1: execution {execution} stopped, the store failed: .*executions.*", m) for m in logged
    ), logged
    assert any(
        re.fullmatch(rf"worker w-1: releasing {execution} failed \(.*executions.*\); its lease runs out", m)
        for m in logged
    ), logged
    assert "worker w-1: claiming failed; retrying" in logged
    assert "worker w-1: reading lease expiries failed" in logged
    assert f"worker w-1: execution {execution} completed" in logged


# -- stop and drain ------------------------------------------------------------------------------------
def test_stop_lets_the_running_execution_finish_within_the_grace_period(store: WatchedStore) -> None:
    execution = queue_execution(store, "mw_stopping", "x:stopping", 0.5)
    run = Running(Worker({"mw_stopping": stopping}, settings(grace_seconds=30.0), store=store))
    assert run.returned() is False  # the step stopped the worker, then worked 0.5 s more: it was waited for
    assert status(store, execution) == "completed"
    assert worker_threads() == []


def test_an_execution_still_running_when_the_grace_ends_is_put_back_in_the_queue(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    execution = queue_execution(store, "mw_gated", "x:gated", "a")
    # poll 30 s: a stop must be noticed while every slot is taken, without waiting for the poll
    run = Running(
        Worker({"mw_gated": gated}, settings(poll_seconds=30.0, grace_seconds=0.2), store=store, worker_id="w-1")
    )
    run.until(lambda: entered, what="the step to start")
    assert run.stop() is True  # returned with the step still held: the caller exits the process
    record = store.get_execution(execution)
    assert record is not None and (record.status, record.lease_owner) == ("queued", None)
    assert f"worker w-1: execution {execution} still running at shutdown; requeued" in messages(caplog, logging.WARNING)
    gate.set()
    wait_for(lambda: not worker_threads(), timeout=WAIT, what="the abandoned run to end")
    after = store.get_execution(execution)
    assert after is not None and after.status == "queued"  # its late outcome was fenced off


def test_a_requeue_that_fails_at_shutdown_is_logged_and_the_execution_still_counts_as_abandoned(
    store: WatchedStore, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="taskloom.worker")
    execution = queue_execution(store, "mw_gated", "x:gated", "a")
    run = Running(Worker({"mw_gated": gated}, settings(grace_seconds=0.2), store=store, worker_id="w-1"))
    run.until(lambda: entered, what="the step to start")
    rename(db, "executions", "executions_away")
    try:
        assert run.stop() is True
    finally:
        gate.set()
        wait_for(lambda: not worker_threads(), timeout=WAIT, what="the abandoned run to end")
        rename(db, "executions_away", "executions")
    assert any(
        re.fullmatch(rf"worker w-1: requeueing {execution} failed \(.*executions.*\); its lease runs out", m)
        for m in messages(caplog, logging.WARNING)
    ), messages(caplog)


def test_the_grace_period_is_shared_by_every_running_execution_not_given_to_each(store: WatchedStore) -> None:
    ids = [queue_execution(store, "mw_gated", "x:gated", str(n)) for n in range(10)]
    run = Running(Worker({"mw_gated": gated}, settings(concurrency=10, grace_seconds=0.2), store=store))
    run.until(lambda: len(entered) == 10, what="ten executions to run at once")
    # at most the 0.2 s grace in all (and a stop check); 5 s is 25 times the grace, 10 s would be a second each
    assert run.stop(timeout=5.0) is True
    assert all(status(store, i) == "queued" for i in ids)


def test_a_worker_with_concurrency_one_never_runs_two_executions_at_once(store: WatchedStore) -> None:
    ids = [queue_execution(store, "mw_spans", "x:spans", 0.2) for _ in range(2)]
    run = Running(Worker({"mw_spans": spanning}, settings(poll_seconds=0.01), store=store))
    try:
        run.until(lambda: completed(store, *ids), what="both executions")
    finally:
        assert run.stop() is False
    (_, first_ended), (second_began, _) = sorted(spans)
    assert second_began >= first_ended
    # twenty poll intervals, and not even a claim of the second while the only slot was taken
    assert sorted(store.claimed_at.values())[1] >= first_ended


def test_the_lease_of_a_running_execution_is_renewed_for_the_workers_lease_length(store: WatchedStore) -> None:
    execution = queue_execution(store, "mw_gated", "x:gated", "a")
    run = Running(Worker({"mw_gated": gated}, settings(lease_seconds=1.5), store=store, worker_id="w-1"))
    try:
        run.until(lambda: entered, what="the step to start")
        claimed = store.get_execution(execution)
        assert claimed is not None and claimed.lease_expires_at is not None
        # renewed every lease_seconds / 3 while it runs, each time to now + lease_seconds (not the default 10 s)
        renewed = run.until(
            lambda: (
                (r := store.get_execution(execution)) is not None
                and r.lease_expires_at is not None
                and r.lease_expires_at > claimed.lease_expires_at
                and r
            ),
            what="a renewal of the lease",
        )
        assert renewed.lease_owner == "w-1"
        assert renewed.lease_expires_at <= time.time() + 1.5
    finally:
        gate.set()
        assert run.stop() is False
