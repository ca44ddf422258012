"""call_sync's and call_async's two ways to a task run, each checked to pass on everything it is given.

A task runs without a secret scope of its own (the fast path) when it asks for no secret and none is
active, and inside one otherwise. Each test below runs both ways (``scope``: the second registers a secret
in an open scope, as a task that received one does for what it calls), so an argument dropped on either
way (the observer, the cache entry, the lane, the plain-call hook, ``inline``) fails a test. Also: the
first attempt of ``call_async``, made without the policy's generator, behaves as any later one (its
number in the timeout message, its thread when timed, its result cached).

No test sleeps to wait: hung bodies wait on an Event set at teardown, and timeouts only need to fire.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from taskloom import TaskControl, TaskTimeoutError, masking, policy, task
from taskloom.thread_hops import ThreadLane

SECRET = "s3cr3t-value-for-the-policy-tests"
ran: list[Any] = []


@pytest.fixture(autouse=True)
def reset_ran() -> None:
    ran.clear()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An Event that hung task bodies wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(params=["no secret", "a secret active"])
def scope(request: pytest.FixtureRequest) -> Callable[[], AbstractContextManager[Any]]:
    """How the test calls the policy: with no secret scope open, or inside one holding :data:`SECRET`."""
    if request.param == "no secret":
        return nullcontext

    class _Holding:
        def __enter__(self) -> None:
            self._scope = masking.secret_scope()
            self._scope.__enter__()
            masking.register_secrets([SECRET])

        def __exit__(self, *exc_info: object) -> None:
            self._scope.__exit__(*exc_info)

    return _Holding


class Turns:
    """An AttemptObserver that writes down what it is told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self.seen.append(f"retry {attempt} {error}")

    def on_fallback(self, error: BaseException) -> None:
        self.seen.append(f"fallback {error}")

    def on_rollback(self, error: BaseException) -> None:
        self.seen.append(f"rollback {error}")


def _thread() -> tuple[int, str]:
    current = threading.current_thread()
    return current.ident or 0, current.name


# -- inside_task ---------------------------------------------------------------------------------------
def test_a_task_body_knows_it_runs_inside_a_task_and_the_caller_after_it_does_not(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    def sync_body() -> Any:
        return policy.inside_task()

    async def async_body() -> Any:
        return policy.inside_task()

    sync_task, async_task = task(name="knows_sync")(sync_body), task(name="knows_async")(async_body)

    async def both() -> list[Any]:
        seen = [await policy.call_async(sync_task, (), {}), await policy.call_async(async_task, (), {})]
        return [*seen, policy.inside_task()]  # the awaiting coroutine, after the calls, is not in a task

    with scope():
        assert policy.call_sync(sync_task, (), {}) is True
        assert asyncio.run(both()) == [True, True, False]
        assert policy.inside_task() is False


# -- masking: the way taken depends on the secrets active, not only on the task's requests -------------
def test_a_task_that_asks_for_no_secret_has_an_active_secret_masked_in_its_result_and_error() -> None:
    def echo() -> str:
        return f"token={SECRET}"

    def leaks() -> None:
        raise ValueError(f"refused {SECRET}")

    async def aleaks() -> None:
        leaks()

    echoes, raises, araises = task(name="echo")(echo), task(name="leaks")(leaks), task(name="aleaks")(aleaks)
    with masking.secret_scope():
        masking.register_secrets([SECRET])
        assert policy.call_sync(echoes, (), {}) == "token=***"
        assert asyncio.run(policy.call_async(echoes, (), {})) == "token=***"
        with pytest.raises(ValueError, match=r"^refused \*\*\*$"):
            policy.call_sync(raises, (), {})
        with pytest.raises(ValueError, match=r"^refused \*\*\*$"):
            asyncio.run(policy.call_async(araises, (), {}))


# -- every argument reaches the run, on both ways ------------------------------------------------------
def test_both_drivers_tell_the_observer_with_or_without_a_secret_scope(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    def fails(n: int) -> None:
        raise ValueError(f"failed {n}")

    async def afails(n: int) -> None:
        fails(n)

    options: dict[str, Any] = {"retry_max_attempts": 1, "retry_delay": 0, "fallback": lambda n: n * 10}
    expected = ["retry 1 failed 4", "fallback failed 4"]
    sync_turns, async_turns, aasync_turns = Turns(), Turns(), Turns()
    with scope():
        assert policy.call_sync(task(name="ps_obs", **options)(fails), (4,), {}, observer=sync_turns) == 40
        sync_task, async_task = task(name="ps_aobs", **options)(fails), task(name="ps_aaobs", **options)(afails)
        assert asyncio.run(policy.call_async(sync_task, (4,), {}, observer=async_turns)) == 40
        assert asyncio.run(policy.call_async(async_task, (4,), {}, observer=aasync_turns)) == 40
    assert sync_turns.seen == async_turns.seen == aasync_turns.seen == expected


def test_a_cached_result_is_reused_with_or_without_a_secret_scope(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    def double(n: int) -> int:
        ran.append(("sync", n))
        return n * 2

    async def adouble(n: int) -> int:
        ran.append(("async", n))
        return n * 2

    doubles = task(name="strength_double", cache=True)(double)
    adoubles = task(name="strength_adouble", cache=True)(adouble)
    sync_on_loop = task(name="strength_double_on_loop", cache=True)(double)
    with scope():
        assert [policy.call_sync(doubles, (3,), {}) for _ in range(2)] == [6, 6]
        assert [asyncio.run(policy.call_async(adoubles, (3,), {})) for _ in range(2)] == [6, 6]
        assert [asyncio.run(policy.call_async(sync_on_loop, (5,), {})) for _ in range(2)] == [10, 10]
    assert ran == [("sync", 3), ("async", 3), ("sync", 5)]


def test_a_result_after_a_retry_is_cached_too(scope: Callable[[], AbstractContextManager[Any]]) -> None:
    def flaky(n: int) -> int:
        ran.append(n)
        if len(ran) == 1:
            raise ConnectionError("first attempt fails")
        return n + 1

    flakes = task(name="strength_flaky", cache=True, retry_max_attempts=1, retry_delay=0)(flaky)
    with scope():
        assert [asyncio.run(policy.call_async(flakes, (1,), {})) for _ in range(2)] == [2, 2]
    assert ran == [1, 1]


def test_a_sync_task_runs_on_the_lane_it_is_given(scope: Callable[[], AbstractContextManager[Any]]) -> None:
    lane = ThreadLane(1, "given-lane")
    where = task(name="where_lane")(_thread)

    with scope():
        _, name = asyncio.run(policy.call_async(where, (), {}, executor=lane))
    assert name.startswith("given-lane_"), name


def test_the_plain_hook_gets_the_function_and_its_prepared_arguments(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    hooked: list[tuple[Any, tuple[Any, ...], dict[str, Any], tuple[int, str]]] = []

    def plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hooked.append((fn, args, kwargs, _thread()))
        return fn(*args, **kwargs)

    def add(a: int, b: int = 0) -> int:
        return a + b

    adds = task(name="plain_add")(add)

    async def calls() -> tuple[int, list[int]]:
        loop_thread = threading.get_ident()
        return loop_thread, [
            await policy.call_async(adds, (1,), {"b": 2}, plain=plain),
            await policy.call_async(adds, (3,), {"b": 4}, plain=plain, inline=True),
        ]

    with scope():
        loop_thread, results = asyncio.run(calls())
    assert results == [3, 7]
    assert [(fn, args, kwargs) for fn, args, kwargs, _ in hooked] == [(add, (1,), {"b": 2}), (add, (3,), {"b": 4})]
    assert hooked[0][3][0] != loop_thread and hooked[1][3][0] == loop_thread


def test_a_sync_fallback_goes_through_the_plain_hook_with_the_callers_arguments(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    hooked: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hooked.append((fn, args, kwargs))
        return fn(*args, **kwargs)

    def fallback(a: int, b: int = 0) -> str:
        return f"fallback {a} {b}"

    def fails(a: int, b: int = 0) -> str:
        raise ValueError("attempt failed")

    falls = task(name="plain_fallback", fallback=fallback)(fails)
    with scope():
        assert asyncio.run(policy.call_async(falls, (1,), {"b": 2}, plain=plain)) == "fallback 1 2"
    assert hooked == [(fails, (1,), {"b": 2}), (fallback, (1,), {"b": 2})]


def test_inline_runs_on_the_loop_thread_unless_the_attempt_has_a_timeout(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    untimed = task(name="inline_untimed")(_thread)
    timed = task(name="inline_timed", timeout=30)(_thread)

    async def both() -> tuple[int, tuple[int, str], tuple[int, str]]:
        return (
            threading.get_ident(),
            await policy.call_async(untimed, (), {}, inline=True),
            await policy.call_async(timed, (), {}, inline=True),
        )

    with scope():
        loop_thread, (inline_thread, _), (timed_thread, timed_name) = asyncio.run(both())
    assert inline_thread == loop_thread
    assert timed_thread != loop_thread and timed_name == "taskloom-attempt"


# -- the first attempt, made without the policy's generator --------------------------------------------
def test_a_timed_attempt_gets_a_thread_of_its_own_not_the_lane() -> None:
    lane = ThreadLane(1, "timed-lane")
    timed = task(name="timed_on_lane", timeout=30)(_thread)
    _, name = asyncio.run(policy.call_async(timed, (), {}, executor=lane))
    assert name == "taskloom-attempt"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_each_timed_out_attempt_is_named_by_its_number(release: threading.Event, is_async: bool) -> None:
    def hangs() -> None:
        release.wait(30)

    async def ahangs() -> None:
        await asyncio.Event().wait()

    options: dict[str, Any] = {"timeout": 0.05, "retry_max_attempts": 2, "retry_delay": 0}
    hung = task(name="hangs", **options)(ahangs if is_async else hangs)
    turns = Turns()
    with pytest.raises(TaskTimeoutError) as caught:
        asyncio.run(policy.call_async(hung, (), {}, observer=turns))
    assert turns.seen == [
        "retry 1 task 'hangs': attempt 1 timed out after 0.05s",
        "retry 2 task 'hangs': attempt 2 timed out after 0.05s",
    ]
    assert str(caught.value) == "task 'hangs': attempt 3 timed out after 0.05s"


def test_inline_passes_the_positional_and_keyword_arguments(scope: Callable[[], AbstractContextManager[Any]]) -> None:
    def add(a: int, b: int = 0) -> tuple[int, int]:
        return a + b, threading.get_ident()

    adds = task(name="inline_add")(add)

    async def call() -> tuple[int, tuple[int, int]]:
        return threading.get_ident(), await policy.call_async(adds, (1,), {"b": 2}, inline=True)

    with scope():
        loop_thread, (total, thread) = asyncio.run(call())
    assert (total, thread) == (3, loop_thread)


# -- a re-run step's recorded retry --------------------------------------------------------------------
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_rerun_goes_on_with_the_attempt_after_the_recorded_one_and_caches_its_result(
    is_async: bool, scope: Callable[[], AbstractContextManager[Any]]
) -> None:
    def body(n: int) -> str:
        ran.append(n)
        if len(ran) < 2:
            raise ConnectionError("still down")
        return f"up {n}"

    async def abody(n: int) -> str:
        return body(n)

    options: dict[str, Any] = {"retry_max_attempts": 3, "retry_delay": 0, "cache": True}
    flaky = task(name=f"rerun_{is_async}", **options)(abody if is_async else body)
    turns = Turns()
    # attempt 2 failed before the crash and its wait is over: attempts 3 (fails) and 4 (succeeds) are left
    with scope():
        result = asyncio.run(policy.call_async(flaky, (7,), {}, observer=turns, retried=(2, time.time() - 1)))
        again = asyncio.run(policy.call_async(flaky, (7,), {}))
    assert result == again == "up 7" and ran == [7, 7]
    assert turns.seen == ["retry 3 still down"]


def test_a_rerun_of_a_stopped_task_does_not_retry(scope: Callable[[], AbstractContextManager[Any]]) -> None:
    def body(tc: TaskControl) -> None:
        ran.append(tc.should_stop)
        raise ConnectionError("still down")

    control = TaskControl("stopped_rerun")
    control.request_stop()
    stopped = task(name="stopped_rerun", retry_max_attempts=3, retry_delay=0)(body)
    with scope(), pytest.raises(ConnectionError):
        asyncio.run(policy.call_async(stopped, (), {}, control=control, retried=(1, time.time() - 1)))
    assert ran == [True]


def test_a_rerun_waits_until_the_recorded_end_of_its_retry_delay() -> None:
    # Not a timing bound: the attempt must simply not start before the recorded wait's end.
    started: list[float] = []
    until = time.time() + 0.3

    def body() -> str:
        started.append(time.time())
        return "done"

    waits = task(name="rerun_waits", retry_max_attempts=2, retry_delay=1)(body)
    assert asyncio.run(policy.call_async(waits, (), {}, retried=(1, until))) == "done"
    assert started[0] >= until


# -- a cached task takes the scoped way even with no secret: its arguments reach the run there too ------
def test_a_cached_task_gets_its_lane_plain_hook_inline_and_control(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    hooked: list[Any] = []

    def plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hooked.append((args, kwargs))
        return fn(*args, **kwargs)

    def where(tc: TaskControl, n: int) -> tuple[str, int, str]:
        return tc.instance_id, threading.get_ident(), threading.current_thread().name

    control = TaskControl("cached_where", "the-given-control")
    on_lane = task(name="cached_on_lane", cache=True)(where)
    hooked_call = task(name="cached_hooked", cache=True)(where)
    inline_call = task(name="cached_inline", cache=True)(where)
    lane = ThreadLane(1, "cached-lane")

    async def calls() -> tuple[int, list[tuple[str, int, str]]]:
        return threading.get_ident(), [
            await policy.call_async(on_lane, (1,), {}, control=control, executor=lane),
            await policy.call_async(hooked_call, (2,), {}, control=control, plain=plain),
            await policy.call_async(inline_call, (3,), {}, control=control, inline=True),
        ]

    with scope():
        loop_thread, (lane_run, hooked_run, inline_run) = asyncio.run(calls())
    assert {lane_run[0], hooked_run[0], inline_run[0]} == {"the-given-control"}
    assert lane_run[2].startswith("cached-lane_"), lane_run
    assert hooked == [((control, 2), {})]
    assert inline_run[1] == loop_thread and hooked_run[1] != loop_thread


def test_a_task_without_cache_runs_on_every_call_in_a_secret_scope_too(
    scope: Callable[[], AbstractContextManager[Any]],
) -> None:
    def counts(n: int) -> int:
        ran.append(n)
        return n

    uncached = task(name="uncached_counts")(counts)
    with scope():
        assert [asyncio.run(policy.call_async(uncached, (1,), {})) for _ in range(2)] == [1, 1]
        assert [policy.call_sync(uncached, (1,), {}) for _ in range(2)] == [1, 1]
    assert ran == [1, 1, 1, 1]
