"""One owner per running execution: leases on every run, second drivers, cancels, crashes, replay mismatches.

The faults themselves (a killed process, a restarted database, a held lock, a full disk) are caused for
real in ``tests/faults``; these tests pin the rules in one process, on both stores.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from typing import Any

import pytest
from processes import wait_for

from taskloom import (
    ExecutionContext,
    ExecutionCrashedError,
    ExecutionStateError,
    TaskDefinitionError,
    UndecodableValueError,
    task,
    workflow,
)
from taskloom.errors import LeaseLostError
from taskloom.events import EventType, NewEvent
from taskloom.leases import CANCEL_POLL_SECONDS
from taskloom.replay import ExecutionRun
from taskloom.store import default_store
from taskloom.tasks import parallel, pause

ran: list[str] = []
gate = threading.Event()
entered = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()
    gate.clear()
    entered.clear()


@task
def gated(name: str) -> str:
    entered.set()
    assert gate.wait(30), "the test never opened the gate"
    ran.append(name)
    return name.upper()


@task
def quick(name: str) -> str:
    ran.append(name)
    return name


@workflow
async def owned(ctx: ExecutionContext[None]) -> list[str]:
    first = await gated("a")
    second = await quick("b")
    return [first, second]


def test_an_embedded_run_holds_the_lease_while_it_runs_and_releases_it_after() -> None:
    store = default_store()
    result: dict[str, Any] = {}
    execution_id = owned.create()
    driver = threading.Thread(target=lambda: result.update(ctx=owned.run(execution_id=execution_id)))
    driver.start()
    assert entered.wait(30)
    record = store.get_execution(execution_id)
    assert record is not None and record.lease_owner is not None and record.lease_owner.startswith("run:")
    assert record.lease_expires_at is not None and record.lease_expires_at > time.time()
    gate.set()
    driver.join(30)
    assert result["ctx"].output == ["A", "b"]
    after = store.get_execution(execution_id)
    assert after is not None and after.status == "completed" and after.lease_owner is None


def test_a_second_driver_waits_for_the_owner_and_returns_its_result_without_running_steps() -> None:
    execution_id = owned.create()
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.append(owned.run(execution_id=execution_id)))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=lambda: results.append(owned.run(execution_id=execution_id)))
    second.start()
    second.join(4 * CANCEL_POLL_SECONDS)
    assert second.is_alive(), "the second driver must wait while the owner runs"
    gate.set()
    first.join(30)
    second.join(30)
    assert [ctx.output for ctx in results] == [["A", "b"], ["A", "b"]]
    assert ran == ["a", "b"]  # every step once
    completions = [e for e in default_store().load_events(execution_id) if e.type is EventType.STEP_COMPLETED]
    assert len(completions) == 2


def test_a_second_driver_that_will_not_wait_is_told_who_owns_the_execution() -> None:
    execution_id = owned.create()
    first = threading.Thread(target=lambda: owned.run(execution_id=execution_id))
    first.start()
    assert entered.wait(30)
    try:
        with pytest.raises(ExecutionStateError, match="is being run by run:"):
            asyncio.run(owned.arun(execution_id=execution_id, wait=False))
    finally:
        gate.set()
        first.join(30)


@task
def counted(n: int) -> int:
    ran.append(str(n))
    if n == 5:
        entered.set()
        assert gate.wait(30)
    return n


@workflow
async def many_steps(ctx: ExecutionContext[int]) -> int:
    total = 0
    for n in range(ctx.input):
        total += await counted(n)
    return total


def test_after_cancel_returns_the_running_step_is_the_last_one() -> None:
    execution_id = many_steps.create(1000)
    result: dict[str, Any] = {}
    driver = threading.Thread(target=lambda: result.update(ctx=many_steps.run(execution_id=execution_id)))
    driver.start()
    assert entered.wait(30)
    many_steps.cancel(execution_id)
    steps_at_cancel = len(ran)
    gate.set()
    driver.join(30)
    assert result["ctx"].status == "cancelled"
    assert len(ran) == steps_at_cancel  # the step in flight finished; nothing new started
    assert many_steps.status(execution_id).status == "cancelled"


@task
def endless(n: int) -> int:
    ran.append(str(n))
    return n


@workflow
async def two_loops(ctx: ExecutionContext[None]) -> Any:
    async def branch(offset: int) -> None:
        for n in range(100_000):
            await endless(offset + n)

    return await parallel(branch(0), branch(1_000_000))


def test_a_cancel_from_outside_stops_every_branch_within_a_step() -> None:
    execution_id = two_loops.create()
    driver = threading.Thread(target=lambda: two_loops.run(execution_id=execution_id))
    driver.start()
    wait_for(lambda: len(ran) > 50, timeout=30, what="the loops to run")
    store = default_store()
    from taskloom.executions import record_cancel

    record_cancel(store, execution_id)  # as the CLI and the HTTP API do
    steps_at_cancel = len(ran)
    driver.join(30)
    assert not driver.is_alive()
    assert len(ran) <= steps_at_cancel + 2  # at most the step each branch was in


def test_an_execution_that_keeps_killing_its_process_is_failed_after_max_recovery_attempts() -> None:
    @workflow.with_options(name="poison", max_recovery_attempts=2)
    async def poison(ctx: ExecutionContext[None]) -> str:
        return "should not run"

    execution_id = poison.create()
    store = default_store()
    for n in range(3):  # three owners that died holding it (their leases ran out)
        acquired = store.acquire_execution(execution_id, f"dead-{n}", -1.0, from_statuses=("running",))
        assert acquired.taken
    ctx = poison.run(execution_id=execution_id)
    assert ctx.has_failed
    assert isinstance(ctx.output, ExecutionCrashedError)
    assert "killed the process running it 3 times" in str(ctx.output)
    assert "max_recovery_attempts is 2" in str(ctx.output)


def test_a_crash_within_max_recovery_attempts_is_run_again() -> None:
    execution_id = owned.create()
    store = default_store()
    assert store.acquire_execution(execution_id, "dead", -1.0, from_statuses=("running",)).taken
    gate.set()
    assert owned.run(execution_id=execution_id).output == ["A", "b"]


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_max_recovery_attempts_must_be_a_whole_number(value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match="max_recovery_attempts"):
        workflow.with_options(name="bad", max_recovery_attempts=value)


exits = {"left": 1}


@task
def exits_once(name: str) -> str:
    if exits["left"]:
        exits["left"] -= 1
        sys.exit(3)
    ran.append(name)
    return name


@workflow
async def exiting(ctx: ExecutionContext[None]) -> list[str]:
    return [await quick("before"), await exits_once("exit")]


def test_a_step_that_exits_the_process_counts_as_a_crash_and_the_execution_is_put_back() -> None:
    exits["left"] = 1
    execution_id = exiting.create()
    with pytest.raises(SystemExit):
        exiting.run(execution_id=execution_id)
    record = default_store().get_execution(execution_id)
    assert record is not None
    assert (record.status, record.lease_owner, record.crashes) == ("queued", None, 1)
    ctx = exiting.run(execution_id=execution_id)
    assert ctx.output == ["before", "exit"]
    assert ran == ["before", "exit"]  # the completed step did not run again


class Receipt:
    """A result class that a later deploy renames."""

    def __init__(self, number: int) -> None:
        self.number = number


@task
def issue_receipt() -> Receipt:
    return Receipt(7)


@workflow
async def receipts(ctx: ExecutionContext[None]) -> int:
    receipt = await issue_receipt()
    await pause("approve")
    return receipt.number


def test_a_recorded_value_that_no_longer_unpickles_leaves_the_execution_as_it_was() -> None:
    ctx = receipts.run()
    store = default_store()
    events_before = store.load_events(ctx.execution_id)
    module = sys.modules[__name__]
    assert isinstance(module, types.ModuleType)
    original = module.Receipt
    del module.Receipt  # the class was renamed in the new code
    try:
        with pytest.raises(UndecodableValueError, match=r"step 1 \('issue_receipt'\)") as caught:
            receipts.resume(ctx.execution_id, "ok")
        assert "Receipt" in str(caught.value.__cause__)
        assert store.load_events(ctx.execution_id) == events_before
        assert receipts.status(ctx.execution_id).status == "paused"
    finally:
        module.Receipt = original
    assert receipts.resume(ctx.execution_id, "ok").output == 7


def test_an_end_the_stores_retry_finds_already_written_under_this_lease_counts_as_written() -> None:
    """A connection dropped after the commit of a run's last write: the store retries it, and the retry's
    fence meets the write itself (the execution ended, under this run's own lease). That is the write
    done, not a lost lease; another owner's write is still refused."""
    store = default_store()
    store.create_execution("retried-end", "w", None, "running", lease_owner="run:me", lease_seconds=30)
    run = ExecutionRun(store, "retried-end", store.load_events("retried-end"), None)
    run.lease_owner = "run:me"
    done = NewEvent(EventType.EXECUTION_COMPLETED, None, "w", b"\x80\x05K\x01.")
    run.append(done, status="completed", output=b"\x80\x05K\x01.")
    run.append(done, status="completed", output=b"\x80\x05K\x01.")  # as the retry: refused, yet written
    types_written = [e.type for e in store.load_events("retried-end")]
    assert types_written.count(EventType.EXECUTION_COMPLETED) == 1
    other = ExecutionRun(store, "retried-end", [], None)
    other.lease_owner = "run:other"
    with pytest.raises(LeaseLostError):
        other.append(done, status="completed", output=b"\x80\x05K\x01.")
    with pytest.raises(LeaseLostError):  # a step's write (no status) after the end is refused too
        run.append(NewEvent(EventType.STEP_STARTED, "9", "late"))
