"""The fast path of plain steps (issue 12): which steps take it, and that they behave as on the general path.

A step of a task with none of the options the policy exists for (retries, timeout, fallback, rollback,
cache, secrets, output storage) and no TaskControl, awaited by the workflow's own task, is run by
``ExecutionRun.run_plain_step`` / ``run_plain_async_step`` without the policy's coroutines. The policy is
made to fail here to tell which path a step took; what is recorded and returned is checked against the
store.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, policy, task, workflow
from taskloom.events import EventType
from taskloom.store import default_store
from taskloom.tasks import parallel


class PolicyUsed(Exception):
    """Raised by the policy when a test expects the fast path."""


@pytest.fixture
def no_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PolicyUsed("the step went through the policy")

    monkeypatch.setattr(policy, "call_async", refuse)


threads: list[int] = []


@task
def double(n: int) -> int:
    threads.append(threading.get_ident())
    return n * 2


@task
def helper(n: int) -> int:
    return n + 1


@task
def uses_helper(n: int) -> int:
    return helper(n) * 10  # a task called in a sync body is a plain call, not a step


@task
async def async_outer(n: int) -> int:
    return await double(n) + await double(n + 1)  # sub-steps 1.1 and 1.2


@task
def broken(n: int) -> int:
    raise ValueError(f"no {n}")


@task(retry_max_attempts=1, retry_delay=0)
def retried(n: int) -> int:
    return n


@workflow
async def plain_flow(ctx: WorkflowExecutionContext[int]) -> list[int]:
    return [await double(ctx.input), await uses_helper(ctx.input), await async_outer(ctx.input)]


@workflow
async def failing_flow(ctx: WorkflowExecutionContext[int]) -> int:
    return await broken(ctx.input)


@workflow
async def retried_flow(ctx: WorkflowExecutionContext[int]) -> int:
    return await retried(ctx.input)


@workflow
async def parallel_flow(ctx: WorkflowExecutionContext[int]) -> list[int]:
    return await parallel(double(1), double(2))


def steps(execution_id: str) -> list[tuple[str, str | None, str | None]]:
    return [
        (e.type.value, e.step_id, e.name)
        for e in default_store().load_events(execution_id)
        if e.type in (EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.STEP_FAILED)
    ]


def test_plain_steps_run_without_the_policy_on_the_loops_thread_and_record_as_before(no_policy: None) -> None:
    threads.clear()
    main = threading.get_ident()

    ctx = plain_flow.run(3)

    assert ctx.has_succeeded, ctx.output
    assert ctx.output == [6, 40, 14]
    assert threads == [main, main, main]  # the sync bodies ran here: nothing else was on the loop
    assert steps(ctx.execution_id) == [
        ("step_started", "1", "double"),
        ("step_completed", "1", "double"),
        ("step_started", "2", "uses_helper"),
        ("step_completed", "2", "uses_helper"),
        ("step_started", "3.1", "double"),
        ("step_completed", "3.1", "double"),
        ("step_started", "3.2", "double"),
        ("step_completed", "3.2", "double"),
        # a quick step's start is written with its outcome (replay.DeferredStart), after its sub-steps
        ("step_started", "3", "async_outer"),
        ("step_completed", "3", "async_outer"),
    ]
    events = default_store().load_events(ctx.execution_id)
    started = next(e for e in events if e.type is EventType.STEP_STARTED and e.step_id == "1")
    completed = next(e for e in events if e.type is EventType.STEP_COMPLETED and e.step_id == "1")
    assert (started.value, completed.value) == (((3,), {}), 6)
    assert started.seq == completed.seq  # written together: one row


def test_a_replayed_plain_step_is_not_run_again(no_policy: None) -> None:
    first = plain_flow.run(5)
    threads.clear()

    again = asyncio.run(plain_flow.arun(execution_id=first.execution_id))

    assert again.output == first.output == [10, 60, 22]
    assert threads == []  # every step's outcome came from the store


def test_a_failing_plain_step_records_its_error_and_the_workflow_fails_with_it(no_policy: None) -> None:
    ctx = failing_flow.run(4)

    assert ctx.has_failed
    assert isinstance(ctx.output, ValueError) and str(ctx.output) == "no 4"
    assert steps(ctx.execution_id) == [("step_started", "1", "broken"), ("step_failed", "1", "broken")]
    (failed,) = [e for e in default_store().load_events(ctx.execution_id) if e.type is EventType.STEP_FAILED]
    assert isinstance(failed.value, ValueError) and str(failed.value) == "no 4"


def test_a_task_with_retries_goes_through_the_policy(no_policy: None) -> None:
    ctx = retried_flow.run(1)

    assert ctx.has_failed
    assert isinstance(ctx.output, PolicyUsed)


def test_plain_steps_run_concurrently_go_through_the_policy(no_policy: None) -> None:
    # parallel() awaits each in a task of its own: not the workflow's, so not the fast path.
    ctx = parallel_flow.run(0)

    assert ctx.has_failed
    assert isinstance(ctx.output, PolicyUsed)


# -- the plain map (taskloom.plain_map) ------------------------------------------------------------------
calls: list[int] = []
#: the held bodies that ended (calls: those that started)
ended: list[int] = []
crash_at: set[int] = set()
gate = threading.Event()


class Crash(BaseException):
    """Stands in for the process dying in one item's body (no ``except Exception`` stops it)."""


thread_names: list[str] = []


@task
def square(n: int) -> int:
    calls.append(n)
    threads.append(threading.get_ident())
    thread_names.append(threading.current_thread().name)
    if n in crash_at:
        raise Crash(n)
    if n % 10 == 7:
        raise ValueError(f"bad {n}")
    return n * n


@task
def held(n: int) -> int:
    calls.append(n)
    gate.wait(30)
    ended.append(n)
    return n


@task
def fails_now() -> None:
    raise KeyError("sibling")


@workflow
async def map_flow(ctx: WorkflowExecutionContext[int]) -> list[int]:
    return await square.map(range(ctx.input))


@workflow
async def cancelled_map_flow(ctx: WorkflowExecutionContext[int]) -> Any:
    return await parallel(held.map(range(ctx.input)), fails_now())


@pytest.fixture(autouse=True)
def clean() -> Any:
    calls.clear()
    ended.clear()
    threads.clear()
    thread_names.clear()
    crash_at.clear()
    gate.clear()
    yield
    gate.set()  # a test that failed early leaves no body waiting


def test_a_plain_map_runs_its_items_in_threads_and_records_each_start_and_outcome(no_policy: None) -> None:
    ctx = map_flow.run(6)

    assert ctx.has_succeeded, ctx.output
    assert ctx.output == [0, 1, 4, 9, 16, 25]
    assert sorted(calls) == [0, 1, 2, 3, 4, 5]
    assert threading.get_ident() not in threads  # off the loop's thread
    # on the run's lane of reused threads ("taskloom-<workflow>_N"), not asyncio's pool nor a thread each
    assert all(name.startswith("taskloom-map_flow_") for name in thread_names), thread_names
    recorded = {(kind, step) for kind, step, _ in steps(ctx.execution_id)}
    assert recorded == {(kind, str(n)) for n in range(1, 7) for kind in ("step_started", "step_completed")}
    events = default_store().load_events(ctx.execution_id)
    assert {e.step_id: e.value for e in events if e.type is EventType.STEP_COMPLETED} == {
        str(n + 1): n * n for n in range(6)
    }


def test_every_item_of_a_plain_map_ends_before_the_first_failure_in_item_order_is_raised(no_policy: None) -> None:
    ctx = map_flow.run(20)  # items 7 and 17 fail

    assert ctx.has_failed
    assert isinstance(ctx.output, ValueError) and str(ctx.output) == "bad 7"
    assert sorted(calls) == list(range(20))
    outcomes = {step: kind for kind, step, _ in steps(ctx.execution_id) if kind != "step_started"}
    assert outcomes == {str(n + 1): "step_failed" if n in (7, 17) else "step_completed" for n in range(20)}


def test_a_crash_in_one_item_loses_only_that_item_and_a_rerun_runs_only_it() -> None:
    crash_at.add(3)
    with pytest.raises(Crash):
        asyncio.run(map_flow.arun(5))
    (execution_id,) = {e.id for e in default_store().list_executions(workflow="map_flow", limit=1)}
    assert sorted(calls) == [0, 1, 2, 3, 4]
    crash_at.clear()
    calls.clear()

    ctx = asyncio.run(map_flow.arun(execution_id=execution_id))

    assert ctx.output == [0, 1, 4, 9, 16]
    assert calls == [3]  # the others' outcomes were written as they finished


def test_a_plain_map_cancelled_writes_no_more_outcomes() -> None:
    # parallel() cancels the map's branch when its sibling fails: items still running finish unrecorded.
    ctx = cancelled_map_flow.run(5)

    assert ctx.has_failed and isinstance(ctx.output, KeyError)
    gate.set()
    deadline = time.monotonic() + 30
    while len(ended) < len(calls) and time.monotonic() < deadline:  # the bodies that started end, let go
        time.sleep(0.01)  # polling with a deadline
    assert len(ended) == len(calls)
    kinds = {kind for kind, step, name in steps(ctx.execution_id) if name == "held"}
    assert kinds == {"step_started"}


class Unstorable:
    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


class HoldsALock(Exception):
    """An error that cannot be stored as itself (a lock does not pickle)."""

    def __init__(self) -> None:
        super().__init__("held")
        self.lock = threading.Lock()


@task
def scaled(n: int, by: int = 3) -> int:  # a default: its arguments are bound, not counted
    return n * by


@task
def paired(n: int, other: int) -> int:  # one argument short in a map
    return n + other


@task
def odd(n: int) -> Any:
    if n == 1:
        return Unstorable()
    if n == 2:
        raise HoldsALock()
    logging.getLogger("plain_map_test").warning("item %s", n)
    return n


exit_at = {"item": -1}


@task
def exits_in_map(n: int) -> int:
    if n == exit_at["item"]:
        exit_at["item"] = -1
        sys.exit(3)
    calls.append(n)
    return n


@workflow
async def scaled_map(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await scaled.map(range(3))


@workflow
async def paired_map(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await paired.map(range(2))


@workflow
async def odd_map(ctx: WorkflowExecutionContext[None]) -> list[Any]:
    return await odd.map(range(4))


@workflow
async def exiting_map(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await exits_in_map.map(range(3))


def test_a_plain_maps_outcomes_name_their_task_and_keep_the_error_itself(no_policy: None) -> None:
    ctx = map_flow.run(9)  # item 7 fails

    events = default_store().load_events(ctx.execution_id)
    outcomes = [e for e in events if e.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED)]
    assert {e.name for e in outcomes} == {"square"}
    (failed,) = [e for e in outcomes if e.type is EventType.STEP_FAILED]
    assert failed.step_id == "8" and isinstance(failed.value, ValueError) and str(failed.value) == "bad 7"


def test_a_plain_map_binds_the_arguments_of_a_task_with_defaults_and_names_bad_ones(no_policy: None) -> None:
    assert scaled_map.run(None).output == [0, 3, 6]

    ctx = paired_map.run(None)

    assert ctx.has_failed and isinstance(ctx.output, TypeError)
    assert "task 'paired' called with bad arguments" in str(ctx.output)
    assert [kind for kind, _, _ in steps(ctx.execution_id)].count("step_failed") == 2


def test_a_plain_map_item_that_cannot_be_stored_fails_naming_its_task_and_step(
    no_policy: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plain_map_test")

    ctx = odd_map.run(None)

    assert ctx.has_failed
    assert "task 'odd' result (step 2): cannot store a value of type Unstorable" in str(ctx.output)
    (held,) = [
        e.value
        for e in default_store().load_events(ctx.execution_id)
        if e.step_id == "3" and e.type is EventType.STEP_FAILED
    ]
    assert str(held) == "task 'odd' (step 3): HoldsALock: held"  # replaced by its text, naming the step
    origins = {
        (r.execution_id, r.workflow, r.step_id, r.task)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "plain_map_test"
    }
    # each item's logs name its execution and its own step
    assert origins == {(ctx.execution_id, "odd_map", "1", "odd"), (ctx.execution_id, "odd_map", "4", "odd")}


def test_a_plain_map_item_that_exits_the_process_is_a_crash_and_the_execution_is_put_back() -> None:
    exit_at["item"] = 1
    execution_id = exiting_map.create()
    with pytest.raises(SystemExit):
        exiting_map.run(execution_id=execution_id)
    record = default_store().get_execution(execution_id)
    assert record is not None
    assert (record.status, record.lease_owner, record.crashes) == ("queued", None, 1)
    first = sorted(calls)
    calls.clear()

    assert exiting_map.run(execution_id=execution_id).output == [0, 1, 2]
    assert first == [0, 2] and calls == [1]  # the items that completed did not run again


def test_a_plain_map_uses_the_runs_threads_beyond_the_default_pool(no_policy: None) -> None:
    # The run's lane allows 32 at once; asyncio's default pool (min(32, cores + 4)) would stop far below.
    ctx_holder: list[Any] = []
    runner = threading.Thread(target=lambda: ctx_holder.append(wide_map.run(None)))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while len(calls) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline
        assert len(calls) >= 12, f"only {len(calls)} items ran at once"
    finally:
        gate.set()
        runner.join(30)
    assert ctx_holder[0].output == list(range(12))


@workflow
async def wide_map(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await held.map(range(12))
