"""The failure policy: retries with backoff, per-attempt timeout, fallback, rollback, in every mode.

Each behaviour is checked on direct calls (sync and async) and, where the event log shows it, on workflow
steps. Delays are short; timing is asserted only as lower bounds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskloom import TaskError, TaskTimeoutError, WorkflowExecutionContext, task, workflow
from taskloom.events import EventType

FAST = {"retry_delay": 0.01, "retry_backoff": 1}


class Flaky:
    """Fails the first ``failures`` calls with ValueError, then returns ``"ok <n>"``; keeps every call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.times: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        self.times.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise ValueError(f"failure {len(self.calls)}")
        return f"ok {len(self.calls)}"


class Recorder:
    """A fallback or rollback that keeps the arguments it was called with."""

    def __init__(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An Event that hung task bodies wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def step_event_types(ctx: WorkflowExecutionContext[Any], step_id: str = "1") -> list[str]:
    return [str(e.type) for e in ctx.events if e.step_id == step_id]


# -- retries ---------------------------------------------------------------------------------------
def test_sync_task_retries_until_it_succeeds() -> None:
    flaky = Flaky(failures=2)
    retried = task(retry_max_attempts=2, **FAST)(flaky)
    assert retried() == "ok 3"
    assert len(flaky.calls) == 3


def test_async_task_retries_until_it_succeeds() -> None:
    flaky = Flaky(failures=3)

    async def body() -> str:
        return flaky()

    retried = task(retry_max_attempts=3, **FAST)(body)
    assert asyncio.run(retried()) == "ok 4"
    assert len(flaky.calls) == 4


def test_retries_are_extra_attempts_after_the_first() -> None:
    flaky = Flaky(failures=10)
    retried = task(retry_max_attempts=2, **FAST)(flaky)
    with pytest.raises(ValueError, match="failure 3"):  # the last attempt's error
        retried()
    assert len(flaky.calls) == 3


def test_no_retries_by_default() -> None:
    flaky = Flaky(failures=1)
    with pytest.raises(ValueError, match="failure 1"):
        task(flaky)()
    assert len(flaky.calls) == 1


def test_each_retry_gets_the_same_arguments() -> None:
    flaky = Flaky(failures=2)
    task(retry_max_attempts=2, **FAST)(flaky)(1, b=2)
    assert flaky.calls == [((1,), {"b": 2})] * 3


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_retry_delays_follow_delay_times_backoff_to_the_k(is_async: bool) -> None:
    flaky = Flaky(failures=3)
    options = {"retry_max_attempts": 3, "retry_delay": 0.02, "retry_backoff": 3}
    if is_async:

        async def body() -> str:
            return flaky()

        asyncio.run(task(**options)(body)())
    else:
        task(**options)(flaky)()
    gaps = [later - earlier for earlier, later in zip(flaky.times, flaky.times[1:], strict=False)]
    assert len(gaps) == 3
    for gap, expected in zip(gaps, [0.02, 0.06, 0.18], strict=True):
        assert gap >= expected * 0.95  # lower bounds only: a busy machine may be slower, never faster


def test_workflow_records_each_retry_with_its_delay() -> None:
    flaky = Flaky(failures=3)
    step = task(name="flaky", retry_max_attempts=3, retry_delay=0.01, retry_backoff=2)(flaky)

    @workflow
    async def retrying(ctx: WorkflowExecutionContext[None]) -> str:
        return await step()

    ctx = retrying.run()
    assert ctx.output == "ok 4"
    retries = [e for e in ctx.events if e.type is EventType.STEP_RETRYING]
    assert [e.data["attempt"] for e in retries] == [1, 2, 3]
    assert [e.data["delay"] for e in retries] == [0.01, 0.02, 0.04]
    assert [e.data["error"] for e in retries] == [f"ValueError: failure {n}" for n in (1, 2, 3)]
    assert all(e.step_id == "1" and e.name == "flaky" for e in retries)


# -- timeout ---------------------------------------------------------------------------------------
def test_timeout_error_is_a_task_error_and_a_timeout_error() -> None:
    assert issubclass(TaskTimeoutError, TaskError)
    assert issubclass(TaskTimeoutError, TimeoutError)


def test_sync_attempt_that_hangs_times_out(release: threading.Event) -> None:
    @task(name="hangs", timeout=0.1)
    def hangs() -> None:
        release.wait()

    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match="'hangs'") as caught:
        hangs()
    assert time.monotonic() - started >= 0.09
    assert isinstance(caught.value, TimeoutError)


def test_async_attempt_that_hangs_times_out() -> None:
    @task(name="ahangs", timeout=0.1)
    async def ahangs() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TaskTimeoutError, match="'ahangs'"):
        asyncio.run(ahangs())


def test_timeout_counts_as_a_failed_attempt(release: threading.Event) -> None:
    attempts: list[int] = []

    @task(timeout=0.1, retry_max_attempts=1, **FAST)
    def slow_once() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            release.wait()
        return "second attempt"

    assert slow_once() == "second attempt"
    assert len(attempts) == 2


def test_quick_attempt_under_a_timeout_returns_its_value() -> None:
    assert task(timeout=5)(lambda x: x + 1)(1) == 2


def test_timeout_then_fallback(release: threading.Event) -> None:
    @task(timeout=0.1, fallback=lambda: "fallback result")
    def timed() -> str:
        release.wait()
        return "never"

    assert timed() == "fallback result"


def test_timed_out_sync_step_does_not_keep_the_workflow_waiting(release: threading.Event) -> None:
    @task(name="blocks", timeout=0.2)
    def blocks() -> None:
        release.wait()  # never set while the workflow runs

    @task
    def after() -> str:
        return "moved on"

    @workflow
    async def stuck(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await blocks()
        except TimeoutError:
            return await after()
        return "not reached"

    started = time.monotonic()
    ctx = stuck.run()
    assert ctx.has_succeeded
    assert ctx.output == "moved on"
    assert time.monotonic() - started < 30  # finished while the attempt's thread still blocks
    assert not release.is_set()
    failed = [e for e in ctx.events if e.step_id == "1" and e.type is EventType.STEP_FAILED]
    assert isinstance(failed[0].value, TaskTimeoutError)


def test_timed_out_step_fails_the_workflow_with_task_timeout_error(release: threading.Event) -> None:
    @task(name="blocks", timeout=0.1)
    def blocks() -> None:
        release.wait()

    @workflow
    async def times_out(ctx: WorkflowExecutionContext[None]) -> None:
        await blocks()

    ctx = times_out.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, TaskTimeoutError)
    assert "'blocks'" in str(ctx.output)


# -- fallback --------------------------------------------------------------------------------------
def test_fallback_gets_the_same_arguments_and_gives_the_result() -> None:
    fallback = Recorder(result="fallback result")
    flaky = Flaky(failures=99)
    guarded = task(fallback=fallback)(flaky)
    assert guarded("a", n=1) == "fallback result"
    assert fallback.calls == [(("a",), {"n": 1})]


def test_fallback_runs_only_after_every_retry_failed() -> None:
    fallback = Recorder(result="fb")
    flaky = Flaky(failures=99)
    assert task(fallback=fallback, retry_max_attempts=2, **FAST)(flaky)() == "fb"
    assert len(flaky.calls) == 3
    assert len(fallback.calls) == 1


def test_fallback_is_not_called_when_the_task_succeeds() -> None:
    fallback = Recorder(result="fb")
    assert task(fallback=fallback, retry_max_attempts=1, **FAST)(Flaky(failures=1))() == "ok 2"
    assert fallback.calls == []


def test_async_task_with_async_fallback() -> None:
    seen: list[Any] = []

    async def fallback(x: int) -> str:
        seen.append(x)
        return f"fallback {x}"

    @task(fallback=fallback)
    async def failing(x: int) -> str:
        raise RuntimeError("no")

    assert asyncio.run(failing(7)) == "fallback 7"
    assert seen == [7]


def test_fallback_result_is_the_steps_result_in_a_workflow() -> None:
    fallback = Recorder(result="from fallback")
    step = task(name="guarded", fallback=fallback)(Flaky(failures=99))

    @workflow
    async def falls_back(ctx: WorkflowExecutionContext[str]) -> str:
        return await step(ctx.input)

    ctx = falls_back.run("in")
    assert ctx.output == "from fallback"
    assert fallback.calls == [(("in",), {})]
    assert step_event_types(ctx) == ["step_started", "step_fallback", "step_completed"]


# -- rollback --------------------------------------------------------------------------------------
def test_rollback_runs_with_the_same_arguments_when_there_is_no_fallback() -> None:
    rollback = Recorder()
    flaky = Flaky(failures=99)
    with pytest.raises(ValueError, match="failure 2"):
        task(rollback=rollback, retry_max_attempts=1, **FAST)(flaky)("order-1", amount=5)
    assert rollback.calls == [(("order-1",), {"amount": 5})]


def test_rollback_runs_when_the_fallback_fails_too() -> None:
    rollback = Recorder()
    fallback = Recorder(error=KeyError("fallback broke"))
    flaky = Flaky(failures=99)
    with pytest.raises(KeyError) as caught:
        task(fallback=fallback, rollback=rollback)(flaky)("x")
    assert isinstance(caught.value.__cause__, ValueError)  # the task's own failure is kept
    assert fallback.calls == [(("x",), {})]
    assert rollback.calls == [(("x",), {})]


def test_rollback_is_skipped_when_the_fallback_succeeds() -> None:
    rollback = Recorder()
    assert task(fallback=Recorder(result="fb"), rollback=rollback)(Flaky(failures=99))() == "fb"
    assert rollback.calls == []


def test_rollback_is_skipped_when_the_task_succeeds() -> None:
    rollback = Recorder()
    assert task(rollback=rollback)(Flaky(failures=0))() == "ok 1"
    assert rollback.calls == []


def test_failing_rollback_keeps_the_tasks_error_and_notes_the_rollbacks() -> None:
    rollback = Recorder(error=OSError("undo failed"))
    with pytest.raises(ValueError, match="failure 1") as caught:
        task(name="charge", rollback=rollback)(Flaky(failures=99))()
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "rollback of task 'charge' also failed: OSError: undo failed" in notes


def test_async_rollback_of_an_async_task() -> None:
    undone: list[str] = []

    async def rollback(order: str) -> None:
        undone.append(order)

    @task(rollback=rollback)
    async def reserve(order: str) -> None:
        raise LookupError(order)

    with pytest.raises(LookupError):
        asyncio.run(reserve("o-9"))
    assert undone == ["o-9"]


def test_workflow_records_retries_then_fallback_then_rollback_in_order() -> None:
    rollback = Recorder()
    fallback = Recorder(error=KeyError("fallback broke"))
    step = task(name="saga", retry_max_attempts=2, fallback=fallback, rollback=rollback, **FAST)(Flaky(99))

    @workflow
    async def saga(ctx: WorkflowExecutionContext[None]) -> str:
        return await step()

    ctx = saga.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, KeyError)
    assert step_event_types(ctx) == [
        "step_started",
        "step_retrying",
        "step_retrying",
        "step_fallback",
        "step_rollback",
        "step_failed",
    ]
    fallback_event = next(e for e in ctx.events if e.type is EventType.STEP_FALLBACK)
    rollback_event = next(e for e in ctx.events if e.type is EventType.STEP_ROLLBACK)
    assert fallback_event.data["error"] == "ValueError: failure 3"
    assert rollback_event.data["error"] == "KeyError: 'fallback broke'"
    assert len(rollback.calls) == 1


def test_workflow_rollback_without_fallback() -> None:
    rollback = Recorder()
    step = task(name="write", rollback=rollback)(Flaky(99))

    @workflow
    async def writes(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            return await step("record-7")
        except ValueError as error:
            return f"caught {error}"

    ctx = writes.run()
    assert ctx.output == "caught failure 1"
    assert rollback.calls == [(("record-7",), {})]
    assert step_event_types(ctx) == ["step_started", "step_rollback", "step_failed"]
