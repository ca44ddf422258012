"""Sessions: the current session, max_parallel slots, queueing, on_limit, and leaving the block."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
from processes import wait_for as wait_until

from taskloom import (
    MaxInstancesReachedError,
    Session,
    SessionNotFoundError,
    TaskCancelledError,
    TaskControl,
    TaskError,
    task,
)
from taskloom.errors import BackendError

DEADLINE = 5.0


@task
def double(value: int) -> int:
    return value * 2


def test_instance_outside_a_session_raises_session_not_found() -> None:
    with pytest.raises(SessionNotFoundError, match=r"double\.instance\(\) needs a session"):
        double.instance()


def test_direct_call_needs_no_session() -> None:
    assert double(5) == 10


def test_session_has_a_name_and_a_generated_one_by_default() -> None:
    assert Session(name="data-processing-batch").name == "data-processing-batch"
    assert Session().name.startswith("session_")


def test_on_limit_must_be_queue_or_raise() -> None:
    with pytest.raises(ValueError, match="on_limit"):
        Session(on_limit="drop")  # type: ignore[arg-type]


def test_never_more_than_max_parallel_run_at_once_under_contention() -> None:
    lock = threading.Lock()
    counts = {"now": 0, "peak": 0}
    gate = threading.Event()

    @task(max_parallel=3)
    def counted(value: int) -> int:
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
        gate.wait(DEADLINE)
        with lock:
            counts["now"] -= 1
        return value

    with Session() as session:
        barrier = threading.Barrier(4)
        futures: dict[int, object] = {}

        def starter(offset: int) -> None:
            barrier.wait()
            for value in range(offset, offset + 10):
                futures[value] = counted.instance().start(value)

        # Threads see the session through a copy of this context (the usual contextvars idiom).
        contexts = [contextvars.copy_context() for _ in range(4)]
        threads = [threading.Thread(target=c.run, args=(starter, k * 10)) for k, c in enumerate(contexts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_until(lambda: counts["now"] == 3)
        statuses = [f.status for f in futures.values()]  # type: ignore[attr-defined]
        assert statuses.count("running") == 3 and statuses.count("pending") == 37
        assert session.running_count("counted") == 3
        gate.set()
        results = {value: f.result(DEADLINE) for value, f in futures.items()}  # type: ignore[attr-defined]
    assert results == {value: value for value in range(40)}
    assert counts["peak"] == 3
    assert session.running_count("counted") == 0


def test_queued_instances_start_in_order_as_slots_free() -> None:
    gates = [threading.Event() for _ in range(3)]
    started: list[int] = []

    @task(max_parallel=1)
    def step(index: int) -> int:
        started.append(index)
        gates[index].wait(DEADLINE)
        return index

    with Session():
        futures = [step.instance().start(i) for i in range(3)]
        wait_until(lambda: started == [0])
        assert [f.status for f in futures] == ["running", "pending", "pending"]
        gates[0].set()
        wait_until(lambda: started == [0, 1])
        assert futures[0].result() == 0
        assert [f.status for f in futures[1:]] == ["running", "pending"]
        gates[1].set()
        wait_until(lambda: started == [0, 1, 2])
        gates[2].set()
    assert [f.result() for f in futures] == [0, 1, 2]


def test_limits_are_counted_per_session() -> None:
    gate = threading.Event()
    running = threading.Semaphore(0)

    @task(max_parallel=1)
    def blocker() -> str:
        running.release()
        gate.wait(DEADLINE)
        return "done"

    results: list[str] = []

    def other_session() -> None:
        with Session():
            results.append(blocker.instance().start().result(DEADLINE))

    with Session(on_limit="raise"):
        first = blocker.instance().start()
        assert running.acquire(timeout=DEADLINE)
        thread = threading.Thread(target=other_session)
        thread.start()
        assert running.acquire(timeout=DEADLINE)  # the other session's instance runs despite this one
        gate.set()
        thread.join()
    assert first.result() == "done" and results == ["done"]


def test_on_limit_raise_names_the_task_and_its_limit_and_start_works_once_a_slot_frees() -> None:
    gate = threading.Event()

    @task(max_parallel=1)
    def exclusive(value: int) -> int:
        gate.wait(DEADLINE)
        return value

    with Session(on_limit="raise"):
        first = exclusive.instance().start(1)
        second = exclusive.instance()
        with pytest.raises(MaxInstancesReachedError, match=r"'exclusive'.*max_parallel limit is 1"):
            second.start(2)
        assert second.status == "pending"
        gate.set()
        assert first.result(DEADLINE) == 1
        assert second.start(2).result(DEADLINE) == 2


def test_leaving_the_block_waits_for_running_instances() -> None:
    order: list[str] = []
    gate = threading.Event()

    @task
    def slow() -> str:
        gate.wait(DEADLINE)
        order.append("returned")
        return "ok"

    with Session() as session:
        future = slow.instance().start()

        def release() -> None:
            wait_until(lambda: future.status == "running")
            order.append("released")
            gate.set()

        threading.Thread(target=release).start()
    order.append("left the block")
    assert order == ["released", "returned", "left the block"]
    assert future.result() == "ok" and session.instances == []


def test_leaving_by_an_exception_stops_running_and_cancels_pending_instances() -> None:
    ran: list[int] = []

    @task(max_parallel=1)
    def worker(tc: TaskControl, index: int) -> str:
        ran.append(index)
        deadline = time.monotonic() + DEADLINE
        while not tc.should_stop and time.monotonic() < deadline:
            time.sleep(0.001)
        return f"stopped {index}"

    with pytest.raises(RuntimeError, match="boom"), Session():
        running = worker.instance().start(0)
        pending = worker.instance().start(1)
        wait_until(lambda: running.status == "running")
        raise RuntimeError("boom")
    assert running.result() == "stopped 0"
    assert pending.status == "cancelled"
    with pytest.raises(TaskCancelledError):
        pending.result()
    assert ran == [0]


def test_start_after_the_session_ended_is_an_error() -> None:
    with Session():
        instance = double.instance()
    with pytest.raises(TaskError, match="has ended"):
        instance.start(1)


def test_the_current_session_is_per_thread() -> None:
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            double.instance()
        except BaseException as error:
            errors.append(error)

    with Session():
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert double.instance().start(2).result() == 4
    assert len(errors) == 1 and isinstance(errors[0], SessionNotFoundError)


def test_nested_sessions_restore_the_outer_one() -> None:
    with Session(name="outer") as outer:
        with Session(name="inner"):
            inner_instance = double.instance()
        outer_instance = double.instance()
    assert inner_instance.session.name == "inner"
    assert outer_instance.session is outer


def test_the_current_session_is_per_asyncio_task() -> None:
    async def use(name: str, entered: asyncio.Event, other_entered: asyncio.Event) -> str:
        async with Session(name=name):
            entered.set()
            await other_entered.wait()  # both sessions are open at once
            instance = double.instance()
            assert await instance.start(1) == 2
            return instance.session.name

    async def main() -> list[str]:
        a, b = asyncio.Event(), asyncio.Event()
        return list(await asyncio.gather(use("a", a, b), use("b", b, a)))

    assert asyncio.run(main()) == ["a", "b"]


def test_async_with_waits_for_instances_without_blocking_the_loop() -> None:
    gate = threading.Event()

    @task
    def blocked() -> str:
        return "released" if gate.wait(DEADLINE) else "never released: the loop was blocked"

    async def release_soon() -> None:
        gate.set()

    async def main() -> str:
        async with Session():
            future = blocked.instance().start()
            releaser = asyncio.ensure_future(release_soon())  # runs only if the loop is free
        await releaser
        return str(future.result(0))

    assert asyncio.run(main()) == "released"


def test_an_unknown_backend_fails_at_instance_naming_it_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLOOM_BACKEND", "threads-please")
    with Session() as session:
        with pytest.raises(BackendError, match=r"'threads-please'.*'local', 'local-process', 'remote'"):
            double.instance()
        assert session.instances == []


def test_the_remote_backend_without_a_server_url_is_a_clear_error_at_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLOOM_BACKEND", "remote")
    monkeypatch.delenv("TASKLOOM_SERVER_URL", raising=False)
    with Session() as session:
        with pytest.raises(BackendError, match=r"TASKLOOM_BACKEND=remote: no server URL.*TASKLOOM_SERVER_URL"):
            double.instance()
        assert session.instances == []


def test_local_is_the_default_backend_and_can_be_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with Session():
        assert double.instance().backend_name == "local"
        monkeypatch.setenv("TASKLOOM_BACKEND", "local")
        assert double.instance().backend_name == "local"


# -- a cancel that lands before the run begins (issue 14) ------------------------------------------
def test_an_instance_cancelled_after_launch_but_before_it_began_never_runs_and_stays_cancelled() -> None:
    """The backend has the instance but no thread for it yet; a cancel then must win over the late start.

    A real local backend on a pool of one thread, kept busy, whose watchdog would add a thread only
    after a minute: the instance sits in the pool's queue, launched but not begun, until the blocker ends.
    """
    from taskloom.backends.local import LocalBackend
    from taskloom.backends.pool import ElasticThreadPool
    from taskloom.runtime.instance import TaskInstance

    pool = ElasticThreadPool("strength", core=1, max_wait=60.0)
    blocker_running, release_blocker = threading.Event(), threading.Event()

    def blocker() -> None:
        blocker_running.set()
        release_blocker.wait(DEADLINE)

    pool.submit(blocker)
    assert blocker_running.wait(DEADLINE)
    ran: list[str] = []
    statuses: list[str] = []

    @task
    def body() -> str:
        ran.append("body")
        return "ran"

    with Session() as session:
        instance = TaskInstance(body, session, LocalBackend(pool))
        session_future = instance.start()
        assert session_future.status == "pending"  # launched, waiting for the pool's only thread
        session_future.add_done_callback(lambda f: statuses.append(f.status))
        assert session_future.cancel()
        assert session_future.status == "cancelled"
        release_blocker.set()  # now the pool reaches the instance: begin() must refuse to run it
    # leaving the block waited until the backend had reported the instance
    assert ran == []
    assert session_future.status == "cancelled"
    assert statuses == ["cancelled"]
    with pytest.raises(TaskCancelledError):
        session_future.result(DEADLINE)
    assert session.instances == []


def test_a_cancelled_future_never_becomes_running() -> None:
    from taskloom.runtime.future import Future

    future = Future("t", "i")
    assert future._set_cancelled()
    assert future._set_running() is False
    assert future.status == "cancelled" and future.done
    finished = Future("t", "j")
    assert finished._set_running() is True
    assert finished.status == "running"
    assert finished._set_result(1)
    assert finished._set_running() is False
    assert finished.status == "completed"
