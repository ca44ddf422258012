"""The failure policy's upper bounds and edge cases, which test_policy.py checks only from below (issue 14).

Each test names a change it catches: retries that wait twice as long, a timeout that fires ten times
late, an instance that keeps retrying after stop() or cancel(), and a fallback or rollback that receives
the TaskControl meant for the task. Time is bounded only from above, generously, against the configured
value (1.5x the configured delay sum; 1.5 s for a 0.2 s timeout), with delays large enough to tell the
right value from a doubled one.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskloom import Session, TaskControl, TaskTimeoutError, WorkflowExecutionContext, task, workflow
from taskloom.events import EventType
from taskloom.tasks import parallel

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


# -- where each kind of attempt runs --------------------------------------------------------------------
def _where() -> tuple[int, str, bool]:
    thread = threading.current_thread()
    return threading.get_ident(), thread.name, thread.daemon


def test_each_kind_of_sync_step_runs_where_it_should() -> None:
    """Alone and without timeout: on the loop's thread (nothing else to block). Beside other steps: on
    the workflow's own pool, concurrently. With a timeout: on a daemon thread of its own, so a hung
    attempt can neither take a pool thread nor hold up the interpreter's exit."""
    both_started = threading.Barrier(2, timeout=DEADLINE)

    @task(name="alone")
    def alone() -> tuple[int, str, bool]:
        return _where()

    @task(name="beside")
    def beside() -> tuple[int, str, bool]:
        both_started.wait()  # passes only if the two parallel steps run at the same time
        return _where()

    @task(name="timed", timeout=5)
    def timed() -> tuple[int, str, bool]:
        return _where()

    @workflow(name="where_steps_run")
    async def where_steps_run(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        return [await alone(), await parallel(beside(), beside()), await timed()]

    ctx = where_steps_run.run()
    assert ctx.has_succeeded, ctx.output
    (alone_ident, _, _), pair, (_, timed_name, timed_daemon) = ctx.output
    assert alone_ident == threading.get_ident()
    for ident, name, _ in pair:
        assert ident != threading.get_ident()
        assert name.startswith("taskloom-where_steps_run"), name
    assert pair[0][0] != pair[1][0]
    assert timed_name == "taskloom-attempt"
    assert timed_daemon is True


def test_a_direct_call_under_a_timeout_runs_on_a_daemon_attempt_thread() -> None:
    @task(timeout=5)
    def timed() -> tuple[int, str, bool]:
        return _where()

    ident, name, daemon = timed()
    assert ident != threading.get_ident()
    assert (name, daemon) == ("taskloom-attempt", True)


# -- values and errors come back through the timeout's thread ------------------------------------------
class OwnError(Exception):
    """A user's exception type: it must come back as itself."""


def test_a_direct_sync_call_under_a_timeout_returns_its_value_and_raises_its_own_error() -> None:
    @task(timeout=5)
    def value(x: int) -> int:
        return x + 1

    @task(timeout=5)
    def fails() -> None:
        raise OwnError("own failure")

    assert value(1) == 2
    with pytest.raises(OwnError, match="own failure"):
        fails()


def test_a_sync_step_under_a_timeout_returns_its_value_and_raises_its_own_error() -> None:
    @task(name="value", timeout=5)
    def value(x: int) -> int:
        return x + 1

    @task(name="fails", timeout=5)
    def fails() -> None:
        raise OwnError("own failure")

    @workflow
    async def timed_steps(ctx: WorkflowExecutionContext[None]) -> str:
        got = await value(1)
        try:
            await fails()
        except OwnError as error:
            return f"{got} {error}"
        return "not reached"

    ctx = timed_steps.run()
    assert ctx.output == "2 own failure"


# -- timeout messages name the attempt and the timeout ----------------------------------------------
def test_timeout_errors_name_the_attempt_and_the_timeout(release: threading.Event) -> None:
    @task(name="hangs", timeout=TIMEOUT, retry_max_attempts=1, retry_delay=0)
    def hangs() -> None:
        release.wait()

    @task(name="ahangs", timeout=TIMEOUT, retry_max_attempts=1, retry_delay=0)
    async def ahangs() -> None:
        await asyncio.Event().wait()

    @workflow
    async def step_hangs(ctx: WorkflowExecutionContext[None]) -> None:
        await hangs()

    expected = "task '{}': attempt 2 timed out after 0.2s"
    with pytest.raises(TaskTimeoutError) as sync_error:
        hangs()
    assert str(sync_error.value) == expected.format("hangs")
    with pytest.raises(TaskTimeoutError) as async_error:
        asyncio.run(ahangs())
    assert str(async_error.value) == expected.format("ahangs")
    ctx = step_hangs.run()
    assert str(ctx.output) == expected.format("hangs")


# -- handlers that return awaitables ------------------------------------------------------------------
def test_a_sync_task_with_async_handlers_awaits_them() -> None:
    fallback, rollback = Recorder(result="from fallback"), Recorder()

    async def async_fallback(order: str) -> Any:
        return fallback(order)

    async def async_rollback(order: str) -> Any:
        return rollback(order)

    def charge(order: str) -> str:
        raise ValueError(f"charge {order} failed")

    assert task(name="sync_fb", fallback=async_fallback)(charge)("A-1") == "from fallback"
    with pytest.raises(ValueError, match="charge A-1 failed"):
        task(name="sync_rb", rollback=async_rollback)(charge)("A-1")
    assert fallback.calls == rollback.calls == [(("A-1",), {})]


def test_an_async_task_awaits_a_plain_handler_that_returns_an_awaitable() -> None:
    async def later(order: str) -> str:
        return f"fallback for {order}"

    async def charge(order: str) -> str:
        raise ValueError("failed")

    guarded = task(name="lambda_fb", fallback=lambda order: later(order))(charge)
    assert asyncio.run(guarded("A-1")) == "fallback for A-1"


# -- task calls inside a sync step's body are plain calls -----------------------------------------------
@task(name="inner")
def inner(x: int) -> int:
    return x * 10


def test_a_task_called_inside_a_sync_steps_body_is_a_plain_call_wherever_the_step_runs() -> None:
    @task(name="outer")
    def outer(x: int) -> int:
        result = inner(x)
        assert isinstance(result, int), f"the inner call gave {result!r}, not a value"
        return result + 1

    @task(name="outer_timed", timeout=5)
    def outer_timed(x: int) -> int:
        return outer.fn(x)

    @workflow
    async def nesting(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        return [await outer(1), await parallel(outer(2), outer(3)), await outer_timed(4)]

    ctx = nesting.run()
    assert ctx.output == [11, [21, 31], 41], ctx.output
    assert {e.name for e in ctx.events if e.type is EventType.STEP_STARTED} == {"outer", "outer_timed"}


# -- the drivers tell an observer about every turn -----------------------------------------------------
class Turns:
    """An AttemptObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.seen.append(f"retry {attempt} {error} {delay}")

    def on_fallback(self, error: BaseException) -> None:
        self.seen.append(f"fallback {error}")

    def on_rollback(self, error: BaseException) -> None:
        self.seen.append(f"rollback {error}")


def test_both_drivers_tell_the_observer_of_retries_fallback_and_rollback() -> None:
    from taskloom import policy

    def failing_fallback() -> None:
        raise ValueError("fallback failed")

    def fails() -> None:
        raise ValueError("attempt failed")

    async def afails() -> None:
        raise ValueError("attempt failed")

    options = {"retry_max_attempts": 1, "retry_delay": 0, "fallback": failing_fallback, "rollback": lambda: None}
    expected = ["retry 1 attempt failed 0.0", "fallback attempt failed", "rollback fallback failed"]
    sync_turns, async_turns = Turns(), Turns()
    with pytest.raises(ValueError, match="fallback failed"):
        policy.call_sync(task(name="obs", **options)(fails), (), {}, observer=sync_turns)
    with pytest.raises(ValueError, match="fallback failed"):
        asyncio.run(policy.call_async(task(name="aobs", **options)(afails), (), {}, observer=async_turns))
    assert sync_turns.seen == expected
    assert async_turns.seen == expected


def test_a_sync_steps_plain_fallback_runs_on_the_workflows_pool() -> None:
    """Handlers take a pool thread like any sync step without a timeout, not a thread of their own."""

    def fallback() -> tuple[int, str, bool]:
        return _where()

    @task(name="falls_back", fallback=fallback)
    def falls_back() -> tuple[int, str, bool]:
        raise ValueError("failed")

    @workflow(name="handler_threads")
    async def handler_threads(ctx: WorkflowExecutionContext[None]) -> Any:
        return await falls_back()

    ident, name, _ = handler_threads.run().output
    assert ident != threading.get_ident()
    assert name.startswith("taskloom-handler_threads"), name


def test_call_async_runs_a_sync_task_off_the_loop_unless_told_it_may_block_it() -> None:
    from taskloom import policy

    where = task(name="where")(_where)

    async def both() -> tuple[int, int, int]:
        loop_thread = threading.get_ident()
        default = await policy.call_async(where, (), {})
        told = await policy.call_async(where, (), {}, inline=True)
        return loop_thread, default[0], told[0]

    loop_thread, default_thread, inline_thread = asyncio.run(both())
    assert default_thread != loop_thread
    assert inline_thread == loop_thread


REQUEST = contextvars.ContextVar("REQUEST", default="unset")


def test_sync_steps_on_the_pool_see_the_workflows_context_variables() -> None:
    """Like ``asyncio.to_thread``: a step body runs in a copy of the caller's context."""

    @task(name="reads")
    def reads() -> str:
        return REQUEST.get()

    @workflow
    async def with_context(ctx: WorkflowExecutionContext[None]) -> list[str]:
        REQUEST.set("request-42")
        return await parallel(reads(), reads())

    assert with_context.run().output == ["request-42", "request-42"]
