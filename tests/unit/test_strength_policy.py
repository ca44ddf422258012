"""The failure policy's upper bounds and edge cases, which test_policy.py checks only from below (issue 14).

Each test names a change it catches: retries that wait twice as long, a timeout that fires ten times
late, an instance that keeps retrying after stop() or cancel(), and a fallback or rollback that receives
the TaskControl meant for the task. Time is bounded only from above, generously, against the configured
value (1.5x the configured delay sum; 1.5 s for a 0.2 s timeout), with delays large enough to tell the
right value from a doubled one.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskloom import Session, TaskControl, TaskTimeoutError, WorkflowExecutionContext, task, workflow
from taskloom.events import EventType

#: retry delays 0.2 s then 0.4 s: 0.6 s in all; doubled they would be 1.2 s, above the 0.9 s bound
RETRIES = {"retry_max_attempts": 2, "retry_delay": 0.2, "retry_backoff": 2}
CONFIGURED_WAIT = 0.2 + 0.4
#: a timeout of 0.2 s must fire well within 1.5 s (ten times late would be 2 s)
TIMEOUT = 0.2
TIMEOUT_BOUND = 1.5
DEADLINE = 30.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An Event that hung task bodies wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def always_fails(calls: list[float]) -> Callable[[], None]:
    def body() -> None:
        calls.append(time.monotonic())
        raise ValueError(f"failure {len(calls)}")

    return body


# -- retry delays: not longer than configured ---------------------------------------------------------
def _check_retry_timing(calls: list[float], started: float, finished: float) -> None:
    assert len(calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert gaps[0] >= 0.2 * 0.95 and gaps[1] >= 0.4 * 0.95  # not shorter than configured either
    assert finished - started < 1.5 * CONFIGURED_WAIT, f"retries waited {finished - started:.2f}s; configured 0.6s"


def test_sync_retries_wait_no_longer_than_configured() -> None:
    calls: list[float] = []
    retried = task(name="sync_retried", **RETRIES)(always_fails(calls))
    started = time.monotonic()
    with pytest.raises(ValueError, match="failure 3"):
        retried()
    _check_retry_timing(calls, started, time.monotonic())


def test_async_retries_wait_no_longer_than_configured() -> None:
    calls: list[float] = []
    fail = always_fails(calls)

    async def body() -> None:
        fail()

    retried = task(name="async_retried", **RETRIES)(body)
    started = time.monotonic()
    with pytest.raises(ValueError, match="failure 3"):
        asyncio.run(retried())
    _check_retry_timing(calls, started, time.monotonic())


def test_workflow_step_retries_wait_no_longer_than_configured() -> None:
    calls: list[float] = []
    step = task(name="step_retried", **RETRIES)(always_fails(calls))

    @workflow
    async def retrying(ctx: WorkflowExecutionContext[None]) -> None:
        await step()

    started = time.monotonic()
    ctx = retrying.run()
    finished = time.monotonic()
    assert ctx.has_failed
    assert [e.data["delay"] for e in ctx.events if e.type is EventType.STEP_RETRYING] == [0.2, 0.4]
    _check_retry_timing(calls, started, finished)


# -- timeouts: not late -----------------------------------------------------------------------------
def test_sync_timeout_fires_on_time(release: threading.Event) -> None:
    @task(name="hangs", timeout=TIMEOUT)
    def hangs() -> None:
        release.wait()

    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match="'hangs'"):
        hangs()
    assert time.monotonic() - started < TIMEOUT_BOUND


def test_async_timeout_fires_on_time() -> None:
    @task(name="ahangs", timeout=TIMEOUT)
    async def ahangs() -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(TaskTimeoutError, match="'ahangs'"):
        asyncio.run(ahangs())
    assert time.monotonic() - started < TIMEOUT_BOUND


def test_workflow_step_timeout_fires_on_time(release: threading.Event) -> None:
    @task(name="blocks", timeout=TIMEOUT)
    def blocks() -> None:
        release.wait()

    @task(name="ablocks", timeout=TIMEOUT)
    async def ablocks() -> None:
        await asyncio.Event().wait()

    @workflow
    async def times_out(ctx: WorkflowExecutionContext[None]) -> list[str]:
        outcomes = []
        for step in (blocks, ablocks):
            try:
                await step()
            except TaskTimeoutError as error:
                outcomes.append(str(error))
        return outcomes

    started = time.monotonic()
    ctx = times_out.run()
    elapsed = time.monotonic() - started
    assert ctx.has_succeeded, ctx.output
    assert len(ctx.output) == 2
    assert elapsed < 2 * TIMEOUT_BOUND, f"two steps timing out after {TIMEOUT}s each took {elapsed:.2f}s"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_instance_timeout_fires_on_time(release: threading.Event, is_async: bool) -> None:
    if is_async:

        async def body() -> None:
            await asyncio.Event().wait()

    else:

        def body() -> None:  # type: ignore[misc]
            release.wait()

    hangs = task(name="instance_hangs", timeout=TIMEOUT)(body)
    with Session():
        started = time.monotonic()
        future = hangs.instance().start()
        with pytest.raises(TaskTimeoutError):
            future.result(DEADLINE)
        assert time.monotonic() - started < TIMEOUT_BOUND


# -- a stopped or cancelled instance stops retrying -------------------------------------------------
@pytest.mark.parametrize("how", ["stop", "cancel"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_stopped_or_cancelled_instance_does_not_keep_retrying(how: str, is_async: bool) -> None:
    """After stop() or cancel() the attempt in flight may finish, but no new attempt starts."""
    attempts: list[int] = []
    first_attempt = threading.Event()
    may_fail = threading.Event()

    def attempt() -> None:
        attempts.append(1)
        first_attempt.set()
        may_fail.wait(DEADLINE)
        raise ValueError(f"attempt {len(attempts)} failed")

    if is_async:

        async def body(tc: TaskControl) -> None:
            await asyncio.to_thread(attempt)

    else:

        def body(tc: TaskControl) -> None:  # type: ignore[misc]
            attempt()

    flaky = task(name=f"flaky_{how}", retry_max_attempts=20, retry_delay=0.01, retry_backoff=1)(body)
    with Session():  # leaving the block waits until the function has really returned
        instance = flaky.instance()
        future = instance.start()
        assert first_attempt.wait(DEADLINE)
        if how == "stop":
            instance.stop()
        else:
            assert future.cancel()
        may_fail.set()
    assert len(attempts) == 1, f"{len(attempts)} attempts after {how}()"
    if how == "stop":
        with pytest.raises(ValueError, match="attempt 1 failed"):
            future.result(DEADLINE)
    else:
        assert future.status == "cancelled"


# -- fallback and rollback never receive the task's TaskControl -----------------------------------
class Recorder:
    """A fallback or rollback that keeps the arguments it was called with."""

    def __init__(self, result: Any = None) -> None:
        self.result = result
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result


def _controlled_task(fallback: Recorder | None, rollback: Recorder | None, is_async: bool) -> Any:
    def fail(tc: TaskControl, order: str, *, amount: int) -> str:
        assert isinstance(tc, TaskControl)
        raise ValueError(f"charge {order} {amount} failed")

    if is_async:

        async def charge(tc: TaskControl, order: str, *, amount: int) -> str:
            return fail(tc, order, amount=amount)

        return task(name="acharge", fallback=fallback, rollback=rollback)(charge)

    def charge_sync(tc: TaskControl, order: str, *, amount: int) -> str:
        return fail(tc, order, amount=amount)

    return task(name="charge", fallback=fallback, rollback=rollback)(charge_sync)


EXPECTED_CALL = (("A-1",), {"amount": 5})


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_fallback_of_a_task_taking_task_control_gets_only_the_callers_arguments_when_called(
    is_async: bool,
) -> None:
    fallback = Recorder(result="from fallback")
    charge = _controlled_task(fallback, None, is_async)
    result = asyncio.run(charge("A-1", amount=5)) if is_async else charge("A-1", amount=5)
    assert result == "from fallback"
    assert fallback.calls == [EXPECTED_CALL]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_rollback_of_a_task_taking_task_control_gets_only_the_callers_arguments_when_called(
    is_async: bool,
) -> None:
    rollback = Recorder()
    charge = _controlled_task(None, rollback, is_async)
    with pytest.raises(ValueError, match="charge A-1 5 failed"):
        asyncio.run(charge("A-1", amount=5)) if is_async else charge("A-1", amount=5)
    assert rollback.calls == [EXPECTED_CALL]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_fallback_and_rollback_of_an_instance_get_only_the_callers_arguments(is_async: bool) -> None:
    fallback, rollback = Recorder(result="from fallback"), Recorder()
    with Session():
        assert _controlled_task(fallback, None, is_async).instance().start("A-1", amount=5).result(DEADLINE) == (
            "from fallback"
        )
        with pytest.raises(ValueError, match="charge A-1 5 failed"):
            _controlled_task(None, rollback, is_async).instance().start("A-1", amount=5).result(DEADLINE)
    assert fallback.calls == [EXPECTED_CALL]
    assert rollback.calls == [EXPECTED_CALL]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_fallback_and_rollback_of_a_workflow_step_get_only_the_callers_arguments(is_async: bool) -> None:
    fallback, rollback = Recorder(result="from fallback"), Recorder()
    with_fallback = _controlled_task(fallback, None, is_async)
    with_rollback = _controlled_task(None, rollback, is_async)

    @workflow
    async def charging(ctx: WorkflowExecutionContext[None]) -> str:
        result: str = await with_fallback("A-1", amount=5)
        try:
            await with_rollback("A-1", amount=5)
        except ValueError:
            return result
        return "not reached"

    ctx = charging.run()
    assert ctx.has_succeeded, ctx.output
    assert ctx.output == "from fallback"
    assert fallback.calls == [EXPECTED_CALL]
    assert rollback.calls == [EXPECTED_CALL]


def test_async_fallback_and_rollback_of_a_task_taking_task_control_get_only_the_callers_arguments() -> None:
    """Coroutine handlers are awaited on the loop, a different path from plain ones."""
    fallback, rollback = Recorder(result="from fallback"), Recorder()

    async def async_fallback(*args: Any, **kwargs: Any) -> Any:
        return fallback(*args, **kwargs)

    async def async_rollback(*args: Any, **kwargs: Any) -> Any:
        return rollback(*args, **kwargs)

    async def charge(tc: TaskControl, order: str, *, amount: int) -> str:
        raise ValueError(f"charge {order} {amount} failed")

    with_fallback = task(name="charge_fb", fallback=async_fallback)(charge)
    with_rollback = task(name="charge_rb", rollback=async_rollback)(charge)
    assert asyncio.run(with_fallback("A-1", amount=5)) == "from fallback"
    with pytest.raises(ValueError, match="charge A-1 5 failed"):
        asyncio.run(with_rollback("A-1", amount=5))
    assert fallback.calls == [EXPECTED_CALL]
    assert rollback.calls == [EXPECTED_CALL]
