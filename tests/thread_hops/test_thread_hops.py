"""taskloom.thread_hops with real threads and real event loops: what run_in_executor guaranteed still holds.

No test sleeps to wait: bodies wait on events and barriers the test sets, and a lane of limit 1 runs its
jobs in order, so a job awaited after another proves the other was fully handed back.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from taskloom import thread_hops
from taskloom.thread_hops import ThreadLane, run_in_thread

WAIT = 10.0  # a bound on waits for other threads, never reached when the code is right
caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="unset")


class Stop(BaseException):
    """Not an Exception: it must reach the awaiter all the same."""


class CountingLoop(asyncio.SelectorEventLoop):
    """A real loop that counts the wake-ups other threads send it."""

    wakeups = 0

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> Any:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def run(coroutine: Any) -> Any:
    with asyncio.Runner() as runner:
        return runner.run(coroutine)


@pytest.fixture
def no_lane_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="taskloom.thread_hops"):
        yield
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_many_concurrent_jobs_return_their_own_results(no_lane_errors: None) -> None:
    lane = ThreadLane(8, "hops")

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(run_in_thread(lambda i=i: i * i, executor=lane, isolated=False) for i in range(500))
        )

    assert run(main()) == [i * i for i in range(500)]


def test_no_job_is_left_behind_when_drains_end_as_jobs_arrive(no_lane_errors: None) -> None:
    # Drains end as soon as their lane is empty: many small bursts make jobs arrive just as they end.
    # A job left without a drain would never settle, and wait_for would time out.
    lane = ThreadLane(2, "bursts")

    async def main() -> int:
        settled = 0
        for burst in range(300):
            hops = [run_in_thread(lambda i=i: i, executor=lane, isolated=False) for i in range(burst % 5 + 1)]
            settled += len(await asyncio.wait_for(asyncio.gather(*hops), WAIT))
        return settled

    assert run(main()) == sum(b % 5 + 1 for b in range(300))


def test_a_lane_runs_exactly_its_limit_at_once() -> None:
    limit = 4
    together = threading.Barrier(limit, timeout=WAIT)  # breaks if fewer than `limit` ever run at once
    lock = threading.Lock()
    active = [0, 0]  # now, most

    def body() -> str:
        with lock:
            active[0] += 1
            active[1] = max(active[1], active[0])
        together.wait()
        with lock:
            active[0] -= 1
        return threading.current_thread().name

    async def main() -> list[str]:
        lane = ThreadLane(limit, "limited")
        return await asyncio.gather(*(run_in_thread(body, executor=lane, isolated=False) for _ in range(limit * 6)))

    names = run(main())
    assert active[1] == limit
    assert all(name.startswith("limited_") for name in names), names


def test_a_body_that_runs_a_loop_of_its_own_gets_threads_while_it_holds_one() -> None:
    # A sync step body running a workflow of its own (asyncio.run in its thread) needs threads while it
    # holds one: lanes bound their own jobs, the process's pool does not, so this never waits on itself.
    outer, inner = ThreadLane(1, "outer"), ThreadLane(1, "inner")

    def nested() -> list[str]:
        async def inside() -> list[str]:
            names = [run_in_thread(lambda: threading.current_thread().name, executor=inner, isolated=False)]
            return list(await asyncio.wait_for(asyncio.gather(*names), WAIT))

        return [threading.current_thread().name, *run(inside())]

    async def main() -> list[str]:
        return list(await run_in_thread(nested, executor=outer, isolated=False))

    outer_name, inner_name = run(main())
    assert outer_name.startswith("outer_") and inner_name.startswith("inner_")


def test_exceptions_reach_the_awaiter_as_themselves_base_exceptions_too() -> None:
    lane = ThreadLane(2)
    value_error = ValueError("bad")
    stop = Stop()

    def raises(error: BaseException) -> Callable[[], None]:
        def body() -> None:
            raise error

        return body

    async def outcome(error: BaseException) -> BaseException | None:
        try:
            await run_in_thread(raises(error), executor=lane, isolated=False)
        except BaseException as caught:
            return caught
        return None

    async def main() -> list[BaseException | None]:
        return [await outcome(value_error), await outcome(stop)]

    assert run(main()) == [value_error, stop]


def test_a_stop_iteration_arrives_as_runtime_error_caused_by_it() -> None:
    # An asyncio future refuses StopIteration; it must not leave the awaiter hanging.
    stop = StopIteration(7)

    def body() -> None:
        raise stop

    async def main() -> BaseException:
        with pytest.raises(RuntimeError) as caught:
            await run_in_thread(body, executor=ThreadLane(1), isolated=False)
        return caught.value

    assert run(main()).__cause__ is stop


def test_the_body_sees_the_callers_context_and_its_changes_stay_in_the_job() -> None:
    def body() -> str:
        seen = caller.get()
        caller.set("changed by the body")
        return seen

    async def main() -> tuple[str, str, str]:
        caller.set("the caller")
        seen = await run_in_thread(body, executor=ThreadLane(1), isolated=False)
        timed = await run_in_thread(body, executor=None, isolated=True)
        return seen, timed, caller.get()

    assert run(main()) == ("the caller", "the caller", "the caller")


def finish(hub: Any, future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    """What a worker does when a job ends with ``value`` or ``error``."""
    hop = thread_hops._Hop(hub, future, contextvars.copy_context(), lambda: None)
    hop.value, hop.error = value, error
    hub.finished(hop)


def test_finished_jobs_wake_the_loop_once_per_batch_and_a_cancelled_awaiter_is_skipped() -> None:
    loop = CountingLoop()
    try:

        async def main() -> list[Any]:
            hub = thread_hops._hub(asyncio.get_running_loop())
            gone, kept, failed = (loop.create_future() for _ in range(3))
            gone.cancel()
            error = ValueError("kept")
            # Three outcomes arrive before the loop runs again: one batch, settled in one callback.
            finish(hub, gone, "dropped")
            finish(hub, kept, "kept")
            finish(hub, failed, error=error)
            assert loop.wakeups == 1
            return [await kept, await asyncio.gather(failed, return_exceptions=True) == [error], gone.cancelled()]

        assert loop.run_until_complete(main()) == ["kept", True, True]
    finally:
        loop.close()


def test_a_job_whose_awaiter_was_cancelled_before_it_started_does_not_run() -> None:
    release = threading.Event()
    ran: list[str] = []

    def first() -> None:
        release.wait(WAIT)
        ran.append("first")

    async def main() -> None:
        lane = ThreadLane(1)  # one at a time, in order
        blocker = run_in_thread(first, executor=lane, isolated=False)
        queued = run_in_thread(lambda: ran.append("queued"), executor=lane, isolated=False)
        queued.cancel()
        release.set()
        await blocker
        await run_in_thread(lambda: ran.append("last"), executor=lane, isolated=False)

    run(main())
    assert ran == ["first", "last"]


def test_cancelling_the_awaiter_of_a_running_job_leaves_the_others_alone() -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(WAIT)
        return "slow"

    async def main() -> list[Any]:
        lane = ThreadLane(2)
        abandoned = run_in_thread(slow, executor=lane, isolated=False)
        others = [run_in_thread(lambda i=i: i, executor=lane, isolated=False) for i in range(20)]
        await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)
        abandoned.cancel()
        release.set()
        return await asyncio.gather(*others)

    assert run(main()) == list(range(20))


def test_a_job_that_ends_after_its_loop_closed_does_not_break_its_lane(no_lane_errors: None) -> None:
    lane = ThreadLane(1)
    started, release = threading.Event(), threading.Event()

    def outlives_its_loop() -> str:
        started.set()
        release.wait(WAIT)
        return "nobody awaits this"

    async def leave_it_running() -> None:
        run_in_thread(outlives_its_loop, executor=lane, isolated=False)
        await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)

    async def next_job() -> str:
        release.set()  # the first job now ends, its loop closed; the lane's next job runs after it
        return str(await run_in_thread(lambda: "next", executor=lane, isolated=False))

    run(leave_it_running())
    assert run(next_job()) == "next"


def test_an_isolated_job_that_ends_after_its_loop_closed_does_not_raise() -> None:
    started, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    raised: list[Any] = []

    def body() -> None:
        threads.append(threading.current_thread())
        started.set()
        release.wait(WAIT)

    async def leave_it_running() -> None:
        run_in_thread(body, executor=None, isolated=True)

    previous = threading.excepthook
    threading.excepthook = raised.append
    try:
        run(leave_it_running())
        assert started.wait(WAIT)
        release.set()
        threads[0].join(WAIT)
    finally:
        threading.excepthook = previous
    assert not threads[0].is_alive() and raised == []
    assert threads[0].name == "taskloom-attempt" and threads[0].daemon


def test_no_executor_runs_on_a_lane_of_asyncios_size_and_a_loops_own_default_is_kept() -> None:
    def name() -> str:
        return threading.current_thread().name

    async def default() -> str:
        return str(await run_in_thread(name, executor=None, isolated=False))

    async def own_default() -> str:
        with ThreadPoolExecutor(1, thread_name_prefix="users-own") as pool:
            asyncio.get_running_loop().set_default_executor(pool)
            return str(await run_in_thread(name, executor=None, isolated=False))

    assert run(default()).startswith("asyncio_")
    assert run(own_default()).startswith("users-own")


def test_another_executor_is_used_as_before() -> None:
    async def main() -> str:
        with ThreadPoolExecutor(1, thread_name_prefix="other-executor") as pool:
            return str(await run_in_thread(lambda: threading.current_thread().name, executor=pool, isolated=False))

    assert run(main()).startswith("other-executor")


def test_a_lane_is_an_executor_that_refuses_work_after_shutdown() -> None:
    lane = ThreadLane(2, "as-executor")
    assert lane.submit(pow, 2, 10).result(WAIT) == 1024
    with pytest.raises(ZeroDivisionError):
        lane.submit(divmod, 1, 0).result(WAIT)
    lane.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        lane.submit(pow, 2, 2)


def test_an_idle_pool_thread_ends_and_the_next_job_starts_another() -> None:
    pool = thread_hops._Threads(idle_seconds=0.01)
    seen: list[threading.Thread] = []
    done = threading.Event()

    def work() -> None:
        seen.append(threading.current_thread())
        done.set()

    pool.start(work)
    assert done.wait(WAIT)
    seen[0].join(WAIT)  # it retires once idle
    assert not seen[0].is_alive() and seen[0].daemon
    done.clear()
    pool.start(work)
    assert done.wait(WAIT) and seen[1] is not seen[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_gets_threads_of_its_own() -> None:
    # The parent has pool threads waiting for work; none of them exists in the child.
    assert run(_in_child()) == "child"
    parents = thread_hops._threads
    pid = os.fork()
    if pid == 0:
        try:
            fresh = thread_hops._threads is not parents
            os._exit(0 if fresh and run(_in_child()) == "child" else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


async def _in_child() -> str:
    return str(await run_in_thread(lambda: "child", executor=ThreadLane(1), isolated=False))


def test_pool_threads_that_all_retired_leave_no_idle_count_and_the_next_job_gets_a_thread() -> None:
    # Three threads run at once, then wait idle and retire; each counts itself idle and uncounts itself
    # when it retires, so the pool ends believing no thread waits. A count gone wrong (one thread counted
    # for several, or a thread that fails to count) would hand the next job to a thread that is gone.
    pool = thread_hops._Threads(idle_seconds=0.05)
    together = threading.Barrier(4, timeout=WAIT)  # the three jobs and this test
    seen: list[threading.Thread] = []
    raised: list[Any] = []

    def work() -> None:
        seen.append(threading.current_thread())
        together.wait()

    previous = threading.excepthook
    threading.excepthook = raised.append
    try:
        for _ in range(3):
            pool.start(work)
        together.wait()  # all three have started, each on a thread of its own
        for thread in seen:
            thread.join(WAIT)
        assert not any(thread.is_alive() for thread in seen) and len(set(seen)) == 3
        assert pool._idle == 0
        done = threading.Event()
        pool.start(done.set)
        assert done.wait(WAIT)
    finally:
        threading.excepthook = previous
    assert raised == []


def test_a_lane_passes_keyword_arguments_to_submitted_functions() -> None:
    lane = ThreadLane(1, "keywords")
    assert lane.submit(int, "ff", base=16).result(WAIT) == 255


def test_after_a_fork_the_child_gets_an_empty_pool_of_the_same_idle_time_and_no_hubs() -> None:
    # What the fork hook does, called here in the parent (mutmut cannot see what runs in a child), with
    # the process's pool and hubs put back after.
    parents, local = thread_hops._threads, thread_hops._local
    try:
        parents.idle_seconds = 12.5
        thread_hops._after_fork_in_child()
        fresh = thread_hops._threads
        assert fresh is not parents and fresh.idle_seconds == 12.5 and fresh._idle == 0
        assert thread_hops._local is not local and getattr(thread_hops._local, "hub", None) is None
        assert run(_in_child()) == "child"
    finally:
        parents.idle_seconds = thread_hops.IDLE_SECONDS
        thread_hops._threads, thread_hops._local = parents, local


def test_a_shut_lane_refuses_with_the_message_of_a_shut_thread_pool() -> None:
    lane = ThreadLane(1, "shut")
    lane.shutdown()
    with ThreadPoolExecutor(1) as pool:
        pass
    with pytest.raises(RuntimeError) as from_pool:
        pool.submit(pow, 2, 2)
    with pytest.raises(RuntimeError) as from_lane:
        lane.submit(pow, 2, 2)
    assert str(from_lane.value) == str(from_pool.value) == "cannot schedule new futures after shutdown"


def test_a_lane_needs_a_limit_of_at_least_one_and_is_named_taskloom_by_default() -> None:
    with pytest.raises(ValueError) as caught:
        ThreadLane(0)
    assert str(caught.value) == "a thread lane needs a limit of at least 1, not 0"

    async def main() -> str:
        return str(await run_in_thread(lambda: threading.current_thread().name, executor=ThreadLane(1), isolated=False))

    assert run(main()).startswith("taskloom_")


def test_a_job_that_raises_is_logged_with_its_lane_and_the_lane_runs_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # push() takes jobs that must not raise; one that does is logged, and its drain goes on.
    lane = ThreadLane(1, "raising")
    after = threading.Event()

    def raises() -> None:
        raise ValueError("a job that did not catch its error")

    with caplog.at_level(logging.ERROR, logger="taskloom.thread_hops"):
        lane.push(raises)
        lane.push(after.set)  # one drain at a time, in order: it runs after the first was logged
        assert after.wait(WAIT)
    messages = [(r.name, r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in caplog.records]
    assert [(name, text) for name, text, _ in messages] == [
        ("taskloom.thread_hops", "a job of thread lane 'raising' raised")
    ]
    assert isinstance(messages[0][2], ValueError)


def test_a_stop_iteration_is_named_in_the_runtime_errors_message() -> None:
    def body() -> None:
        raise StopIteration(7)

    async def main() -> str:
        with pytest.raises(RuntimeError) as caught:
            await run_in_thread(body, executor=ThreadLane(1), isolated=False)
        return str(caught.value)

    assert run(main()) == "the function raised StopIteration: StopIteration(7)"


def test_a_lane_starts_no_more_drains_than_its_limit_while_its_jobs_run() -> None:
    # Jobs that block until released keep every drain started busy, so the count of drains read right
    # after the pushes is exact (a drain ends only after its lane is empty).
    release = threading.Event()
    lane = ThreadLane(2, "busy")
    done: list[Future[Any]] = []
    try:
        for _ in range(5):
            done.append(lane.submit(release.wait, WAIT))
        assert lane._running == 2
    finally:
        release.set()
    assert [future.result(WAIT) for future in done] == [True] * 5


class SignallingLock:
    """A real lock that tells, before it blocks, that a thread other than the test's wants it."""

    def __init__(self) -> None:
        self.inner = threading.Lock()
        self.wanted = threading.Event()
        self._test_thread = threading.current_thread()

    def __enter__(self) -> None:
        if threading.current_thread() is not self._test_thread:
            self.wanted.set()
        self.inner.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.inner.release()


def test_a_job_pushed_while_its_drain_is_about_to_end_is_run_by_that_drain() -> None:
    # The drain found its lane empty and waits for the lock to end; a job pushed now sees a drain running
    # and starts none, so the ending drain must look again under the lock and take it.
    lane = ThreadLane(1, "handover")
    lock = lane._lock = SignallingLock()  # type: ignore[assignment]
    go, second = threading.Event(), threading.Event()
    lane.push(lambda: go.wait(WAIT))  # starts the drain (the test's own use of the lock)
    with lock.inner:
        go.set()  # the first job ends; the drain finds nothing and asks for the lock
        assert lock.wanted.wait(WAIT)
        # A push to a lane at its limit takes no lock (the loop thread must not queue behind its workers
        # for it): from another thread, it returns while the drain still waits for the lock.
        pusher = threading.Thread(target=lane.push, args=(second.set,))
        pusher.start()
        pusher.join(WAIT)
        pushed_without_the_lock = not pusher.is_alive()
    pusher.join(WAIT)
    assert pushed_without_the_lock
    assert second.wait(WAIT)


class SignallingQueue(queue.SimpleQueue[Any]):
    """A real queue that tells when a thread starts waiting on it (a pool thread gone idle)."""

    def __init__(self) -> None:
        self.waiting = threading.Event()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        self.waiting.set()
        return super().get(block, timeout)


def test_a_drain_that_ended_gave_its_count_back_and_its_thread_waits_under_the_pools_name() -> None:
    # One pool thread runs a lane's drain under the lane's name, then waits idle; the next work handed
    # to the pool runs on that same thread, whose name must be the idle one again.
    pool = thread_hops._Threads(idle_seconds=WAIT)
    pool._queue = idle = SignallingQueue()
    parents = thread_hops._threads
    thread_hops._threads = pool
    try:
        ran = threading.Event()
        lane = ThreadLane(1, "named")
        lane.push(ran.set)
        assert ran.wait(WAIT) and idle.waiting.wait(WAIT)  # the drain ended, its thread waits for work
        assert lane._running == 0  # the drain gave its count back, once
        seen: list[threading.Thread] = []
        again = threading.Event()
        pool.start(lambda: (seen.append(threading.current_thread()), again.set()))
        assert again.wait(WAIT)
        assert seen[0].name == thread_hops.IDLE_NAME
    finally:
        thread_hops._threads = parents
        pool.idle_seconds = 0  # its thread retires after its current wait


def test_no_executor_takes_the_process_pools_daemon_threads_not_a_default_executor_of_the_loop() -> None:
    # asyncio's own default executor would name its threads asyncio_N too, but they are not daemons and
    # the loop would keep the executor (and shut it down at its end).
    async def main() -> tuple[bool, Any]:
        daemon = await run_in_thread(lambda: threading.current_thread().daemon, executor=None, isolated=False)
        return daemon, getattr(asyncio.get_running_loop(), "_default_executor", None)

    assert run(main()) == (True, None)


def test_a_loop_keeps_one_hub_so_its_default_lane_bounds_every_call() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        first = thread_hops._hub(loop)
        await run_in_thread(lambda: None, executor=None, isolated=False)
        return thread_hops._hub(loop) is first

    assert run(main())


def test_a_new_pool_thread_is_named_idle_until_a_lane_names_it() -> None:
    pool = thread_hops._Threads(idle_seconds=0.01)
    names: list[str] = []
    done = threading.Event()
    pool.start(lambda: (names.append(threading.current_thread().name), done.set()))
    assert done.wait(WAIT)
    assert names == [thread_hops.IDLE_NAME]


def test_a_loops_own_default_executor_and_other_executors_run_the_body_in_the_callers_context() -> None:
    def body() -> str:
        return caller.get()

    async def main() -> list[str]:
        caller.set("the caller")
        with ThreadPoolExecutor(1) as other, ThreadPoolExecutor(1) as own:
            asyncio.get_running_loop().set_default_executor(own)
            return [
                await run_in_thread(body, executor=other, isolated=False),
                await run_in_thread(body, executor=None, isolated=False),
            ]

    assert run(main()) == ["the caller", "the caller"]


def test_a_thread_reused_from_idle_leaves_the_idle_count_right_when_it_retires() -> None:
    # Work handed to a waiting thread uncounts exactly that one thread: once it retired the pool must
    # believe none waits, or the next work would be queued for a thread that is gone.
    pool = thread_hops._Threads(idle_seconds=WAIT)
    pool._queue = idle = SignallingQueue()
    seen: list[threading.Thread] = []
    first, second, third = threading.Event(), threading.Event(), threading.Event()
    pool.start(lambda: (seen.append(threading.current_thread()), first.set()))
    assert first.wait(WAIT) and idle.waiting.wait(WAIT)  # its thread now waits for work (up to WAIT)
    pool.idle_seconds = 0.05  # its next wait, after the work below, is short
    pool.start(lambda: (seen.append(threading.current_thread()), second.set()))
    assert second.wait(WAIT) and seen[1] is seen[0]  # handed to the waiting thread
    seen[0].join(WAIT)  # it retires once idle again
    assert not seen[0].is_alive() and pool._idle == 0
    pool.start(third.set)
    assert third.wait(WAIT)
