"""Caller-chosen execution ids, ``wf.start()`` and ``ExecutionHandle``, in this process, on both stores.

The processes side (racing processes, a SIGKILL of the process that started an execution, the CLI and
HTTP) is in ``tests/integration/test_own_ids.py``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from taskloom import ExecutionHandle, WorkflowExecutionContext, task, workflow
from taskloom.errors import (
    ExecutionIdError,
    ExecutionNotFoundError,
    ExecutionStateError,
    TaskCancelledError,
    TaskloomError,
    WorkflowError,
)
from taskloom.events import EventType
from taskloom.executions import MAX_EXECUTION_ID_LENGTH, queue_execution
from taskloom.runner import runner
from taskloom.settings import Settings, WorkerSettings
from taskloom.store import default_store
from taskloom.worker import Worker

#: how often each labelled step body ran in this process
ran: collections.Counter[str] = collections.Counter()
#: gates that hold a step until the test opens them
gates: dict[str, threading.Event] = collections.defaultdict(threading.Event)
#: generous bound on anything that should happen "soon" (a slow, shared machine)
SOON = 30.0


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    """Each test (and each store) counts its own step runs and has its own gates."""
    ran.clear()
    gates.clear()


@task
def count(label: str, value: int) -> int:
    ran[label] += 1
    return value * 2


@task
def gated(label: str) -> str:
    ran[label] += 1
    if not gates[label].wait(SOON):
        raise TimeoutError(f"gate {label} never opened")
    return label


@workflow
async def doubler(ctx: WorkflowExecutionContext[dict[str, Any]]) -> int:
    return await count(ctx.input["label"], ctx.input["value"])  # type: ignore[no-any-return]


@workflow
async def waits_for_gate(ctx: WorkflowExecutionContext[str]) -> str:
    first = await gated(ctx.input)
    await count(f"{ctx.input}-after", 1)
    return first  # type: ignore[no-any-return]


class OrderRejected(ValueError):
    def __init__(self, order: str, reason: str) -> None:
        super().__init__(f"order {order} rejected: {reason}")
        self.order, self.reason = order, reason


@workflow
async def rejects(ctx: WorkflowExecutionContext[str]) -> None:
    await count(f"{ctx.input}-before", 1)
    raise OrderRejected(ctx.input, "no stock")


def _executions_with(execution_id: str) -> int:
    return sum(1 for r in default_store().list_executions(limit=1000) if r.id == execution_id)


# -- caller-chosen ids ------------------------------------------------------------------------------
def test_run_with_a_new_id_creates_it_and_a_second_run_returns_it_without_running_again() -> None:
    first = doubler.run({"label": "own-1", "value": 21}, execution_id="order-42")
    assert (first.execution_id, first.status, first.output) == ("order-42", "completed", 42)
    again = doubler.run({"label": "own-1", "value": 1000}, execution_id="order-42")
    assert (again.execution_id, again.status, again.output) == ("order-42", "completed", 42)
    assert again.input == {"label": "own-1", "value": 21}  # the stored input: the id names that work
    assert ran["own-1"] == 1
    assert len(again.events) == len(first.events)
    assert _executions_with("order-42") == 1


def test_run_with_an_id_continues_a_queued_execution() -> None:
    queue_execution(default_store(), "doubler", doubler.target, {"label": "own-q", "value": 4}, execution_id="q-1")
    ctx = doubler.run(execution_id="q-1")
    assert (ctx.status, ctx.output, ran["own-q"]) == ("completed", 8, 1)


def test_an_id_of_another_workflow_is_refused_naming_both() -> None:
    doubler.run({"label": "own-other", "value": 1}, execution_id="taken")
    with pytest.raises(WorkflowError, match="'doubler'"):
        waits_for_gate.run("x", execution_id="taken")
    with pytest.raises(WorkflowError, match="'doubler'"):
        waits_for_gate.start("x", execution_id="taken")


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "empty"),
        ("   ", "blank"),
        ("x" * (MAX_EXECUTION_ID_LENGTH + 1), f"at most {MAX_EXECUTION_ID_LENGTH}"),
        ("order\n42", "control"),
        ("order\x0042", "control"),
        ("order\x7f", "control"),
        (42, "must be a string"),
    ],
)
def test_a_bad_id_is_a_clear_error_naming_the_argument_and_writes_nothing(bad: Any, message: str) -> None:
    calls = [
        lambda: doubler.run({"label": "never", "value": 1}, execution_id=bad),
        lambda: doubler.start({"label": "never", "value": 1}, execution_id=bad),
        lambda: doubler.create({"label": "never", "value": 1}, execution_id=bad),
        lambda: doubler.handle(bad),
    ]
    for call in calls:
        with pytest.raises(ExecutionIdError, match=f"execution_id.*{message}"):
            call()
    assert isinstance(ExecutionIdError("x"), ValueError)
    assert default_store().list_executions() == []
    assert ran["never"] == 0


def test_the_longest_id_and_unicode_are_accepted() -> None:
    longest = "é" * MAX_EXECUTION_ID_LENGTH
    assert doubler.run({"label": "own-long", "value": 2}, execution_id=longest).output == 4
    assert doubler.run({"label": "own-unicode", "value": 3}, execution_id="bestelling/42 ✓").output == 6


def test_threads_racing_with_one_new_id_start_it_once() -> None:
    callers = 8
    barrier = threading.Barrier(callers)
    outputs: list[Any] = []

    def caller(n: int) -> None:
        barrier.wait()
        outputs.append(doubler.run({"label": "race-run", "value": n}, execution_id="race-run").output)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOON)
    assert len(outputs) == callers and len(set(outputs)) == 1  # every caller got the one execution's output
    assert ran["race-run"] == 1
    assert _executions_with("race-run") == 1


def test_threads_racing_to_start_one_new_id_start_it_once() -> None:
    callers = 8
    barrier = threading.Barrier(callers)
    handles: list[ExecutionHandle[Any]] = []

    def caller(n: int) -> None:
        barrier.wait()
        handles.append(doubler.start({"label": "race-start", "value": n}, execution_id="race-start"))

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOON)
    results = {handle.result(timeout=SOON) for handle in handles}
    assert len(handles) == callers and len(results) == 1
    assert ran["race-start"] == 1
    assert _executions_with("race-start") == 1


# -- start and handles ------------------------------------------------------------------------------
def test_start_returns_at_once_and_the_handle_follows_the_execution() -> None:
    handle = waits_for_gate.start("h-1", execution_id="h-1")
    assert isinstance(handle, ExecutionHandle) and handle.execution_id == "h-1"
    assert handle.status() == "running"  # returned while the body waits at its gate
    with pytest.raises(TimeoutError, match="h-1"):
        handle.result(timeout=0.05)
    with pytest.raises(TimeoutError):  # still usable, and still waiting
        handle.result(timeout=0)
    gates["h-1"].set()
    assert handle.result(timeout=SOON) == "h-1"
    assert handle.result() == "h-1"  # again: read from the store
    assert handle.status() == "completed"
    assert ran["h-1"] == 1 and ran["h-1-after"] == 1


def test_a_failed_execution_raises_the_workflows_own_exception() -> None:
    handle = rejects.start("o-7")
    with pytest.raises(OrderRejected, match="order o-7 rejected: no stock") as raised:
        handle.result(timeout=SOON)
    assert (raised.value.order, raised.value.reason) == ("o-7", "no stock")
    with pytest.raises(OrderRejected):  # every time it is asked
        handle.result(timeout=SOON)
    assert handle.status() == "failed"


def test_cancel_stops_a_running_execution_and_its_result_says_so() -> None:
    handle = waits_for_gate.start("c-1")
    assert handle.status() == "running"
    handle.cancel()
    gates["c-1"].set()
    with pytest.raises(TaskCancelledError, match="cancelled"):
        handle.result(timeout=SOON)
    assert handle.status() == "cancelled"
    assert ran["c-1-after"] == 0  # the step after the one it was in never started
    with pytest.raises(ExecutionStateError, match="already cancelled"):
        handle.cancel()


def test_start_with_an_existing_id_returns_its_handle_and_starts_nothing() -> None:
    first = doubler.start({"label": "s-dup", "value": 5}, execution_id="s-dup")
    assert first.result(timeout=SOON) == 10
    second = doubler.start({"label": "s-dup", "value": 6}, execution_id="s-dup")
    assert second.result(timeout=SOON) == 10
    assert ran["s-dup"] == 1


def test_handle_of_an_existing_id() -> None:
    ctx = doubler.run({"label": "h-existing", "value": 3})
    handle = doubler.handle(ctx.execution_id)
    assert handle.status() == "completed" and handle.result() == 6
    with pytest.raises(ExecutionNotFoundError, match="no-such-id"):
        doubler.handle("no-such-id")
    with pytest.raises(WorkflowError, match="'doubler'"):
        rejects.handle(ctx.execution_id)


def test_await_the_handle_and_astart_in_async_code() -> None:
    async def main() -> tuple[int, int]:
        handle = await doubler.astart({"label": "a-1", "value": 7})
        with pytest.raises(WorkflowError, match="await handle"):
            handle.result()  # the sync form inside a running loop is a clear error, not a hang
        gated_handle = await waits_for_gate.astart("a-2")
        with pytest.raises(TimeoutError):
            await gated_handle.aresult(timeout=0.05)
        gates["a-2"].set()
        assert await gated_handle == "a-2"
        return await handle, await doubler.handle(handle.execution_id)

    assert asyncio.run(main()) == (14, 14)


def test_unknown_start_options_are_refused() -> None:
    # queue= and priority= are taskloom.queues' now: tests/queues
    with pytest.raises(TypeError, match="unknown_option"):
        doubler.start({"label": "never", "value": 1}, unknown_option=True)  # type: ignore[call-arg]
    assert default_store().list_executions() == []


@pytest.mark.parametrize("delay", [-1, float("nan"), float("inf"), "5", True])
def test_a_bad_delay_is_a_clear_error_naming_it(delay: Any) -> None:
    with pytest.raises(ValueError, match="delay"):
        doubler.start({"label": "never", "value": 1}, delay=delay)
    assert default_store().list_executions() == []


# -- delay ------------------------------------------------------------------------------------------
DELAY = 0.4


def _first_step_started(execution_id: str) -> float:
    events = default_store().load_events(execution_id)
    return next(e.timestamp.timestamp() for e in events if e.type is EventType.STEP_STARTED)


@pytest.mark.parametrize("delay", [DELAY, timedelta(seconds=DELAY)])
def test_a_delayed_start_runs_no_earlier_than_its_delay(delay: float | timedelta) -> None:
    called = time.time()
    handle = doubler.start({"label": "d-1", "value": 1}, delay=delay)
    assert handle.status() == "queued"
    assert handle.result(timeout=SOON) == 2
    waited = _first_step_started(handle.execution_id) - called
    assert DELAY <= waited < DELAY + 10  # not before; and not unboundedly late


def test_a_delayed_execution_is_not_started_early_by_run_or_recover() -> None:
    from taskloom.recovery import interrupted

    called = time.time()
    handle = doubler.start({"label": "d-2", "value": 2}, delay=DELAY, execution_id="d-2")
    assert [r.id for r in interrupted(default_store())] == []  # recover leaves it to its time
    ctx = doubler.run(execution_id="d-2")  # continuing it waits for its time too
    assert ctx.output == 4 and handle.result(timeout=SOON) == 4
    assert _first_step_started("d-2") - called >= DELAY
    assert ran["d-2"] == 1


# -- queued for workers -----------------------------------------------------------------------------
def test_start_queue_leaves_the_execution_to_workers_which_respect_its_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_START", "queue")
    called = time.time()
    handle = doubler.start({"label": "w-1", "value": 3}, delay=DELAY)
    assert handle.status() == "queued" and runner.running(handle.execution_id) is None
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)  # nobody runs it here
    worker = Worker({"doubler": doubler}, WorkerSettings(poll_seconds=0.05))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert handle.result(timeout=SOON) == 6
    finally:
        worker.stop()
        thread.join(SOON)
    assert _first_step_started(handle.execution_id) - called >= DELAY
    assert ran["w-1"] == 1


def test_an_unknown_start_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_START", "sometimes")
    with pytest.raises(TaskloomError, match=r"TASKLOOM_START='sometimes'.*auto, local, queue"):
        Settings.from_env()
    monkeypatch.setenv("TASKLOOM_START", " Queue ")
    assert Settings.from_env().start == "queue"
