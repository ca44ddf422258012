"""Sessions, the details test_session.py leaves open (mutation testing of taskloom/runtime/session.py, issue 14).

One session entered again while active (refused, issue 8), or left by another task than the one that entered
it; the exact texts of its errors; ``running_count`` of a task it never ran; a cancelled waiting instance
that leaves the queue; and ``async with`` that keeps waiting when an instance starts just as the last one
finishes.

Where the order of events matters, the instances run on :class:`HeldBackend`, a backend (the seam of
``taskloom/backends/base.py``) that runs nothing by itself: the test begins and ends each run, so no
thread races it. These tests never open the default store.
"""

from __future__ import annotations

import asyncio
import contextvars
import linecache
import sys
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from taskloom import MaxInstancesReachedError, Session, TaskError, task
from taskloom.errors import SessionError
from taskloom.runtime import current_session
from taskloom.runtime.future import Future
from taskloom.runtime.instance import InstanceRun, TaskInstance

DEADLINE = 5.0


@task
def double(value: int) -> int:
    return value * 2


@task
def held() -> str:
    return "never called: HeldBackend runs nothing"


class HeldBackend:
    """Keeps every run it is given; the test ends them with :meth:`finish`, in the order it chooses."""

    name = "held"

    def __init__(self) -> None:
        self.runs: list[InstanceRun] = []

    def submit(self, run: InstanceRun) -> None:
        self.runs.append(run)

    def close(self) -> None:
        """Nothing to release."""

    def finish(self, index: int, value: object) -> None:
        run = self.runs[index]
        assert run.begin()
        run.succeed(value)


# -- entering and leaving --------------------------------------------------------------------------
def test_a_session_entered_again_inside_itself_is_refused_and_the_outer_block_keeps_it() -> None:
    with Session(name="twice") as session:
        with pytest.raises(SessionError) as raised, session:
            pass
        assert str(raised.value) == (
            "session 'twice' is already active: a session is entered once at a time; code inside its block (and "
            "threads and tasks started there) already sees it, so use it as it is, or enter a new Session()"
        )
        assert current_session() is session
        assert double.instance().start(2).result(DEADLINE) == 4
    assert current_session() is None
    with pytest.raises(SessionError, match="has ended"):
        TaskInstance(double, session, HeldBackend()).start(3)


def test_a_session_active_in_one_asyncio_task_is_refused_to_another_and_may_be_entered_once_left() -> None:
    session = Session(name="shared")

    async def first(entered: asyncio.Event, leave: asyncio.Event) -> Session | None:
        async with session:
            entered.set()
            await leave.wait()
        return current_session()

    async def second() -> tuple[Session | None, int, Session | None]:
        async with session:
            inside = current_session()
            value = await double.instance().start(5)
        return inside, value, current_session()

    async def main() -> tuple[Session | None, Session | None, tuple[Session | None, int, Session | None]]:
        entered, leave = asyncio.Event(), asyncio.Event()
        holder = asyncio.create_task(first(entered, leave))
        await asyncio.wait_for(entered.wait(), DEADLINE)
        with pytest.raises(SessionError, match="'shared' is already active"):
            await asyncio.wait_for(asyncio.create_task(second()), DEADLINE)
        refused_here = current_session()  # the refused entry left nothing behind
        leave.set()
        after_first = await asyncio.wait_for(holder, DEADLINE)
        return refused_here, after_first, await asyncio.wait_for(asyncio.create_task(second()), DEADLINE)

    refused_here, after_first, (inside_second, value, after_second) = asyncio.run(main())
    assert refused_here is None and after_first is None
    assert inside_second is session and value == 10
    assert after_second is None


def test_a_session_left_by_another_asyncio_task_than_the_one_that_entered_it_ends_cleanly() -> None:
    """As in an async generator (a pytest-asyncio fixture, say) whose setup and teardown run in two tasks."""
    session = Session(name="fixture")

    async def scope() -> AsyncGenerator[None, None]:
        async with session:
            yield

    async def main() -> None:
        generator = scope()
        await asyncio.ensure_future(generator.__anext__())  # entered in one task
        await asyncio.ensure_future(generator.aclose())  # left in another

    asyncio.run(main())
    assert current_session() is None
    with pytest.raises(TaskError, match="has ended"):
        TaskInstance(double, session, HeldBackend()).start(1)


def test_a_session_left_in_a_copy_of_the_context_that_entered_it_is_no_longer_current_there() -> None:
    """As pytest-asyncio runs a fixture's teardown: in another task whose context is a copy of the setup's,
    so the session's context token cannot be reset there; the copy must not keep the session current."""
    session = Session(name="copied")

    async def scope() -> AsyncGenerator[contextvars.Context, None]:
        async with session:
            yield contextvars.copy_context()

    async def main() -> tuple[Session | None, Session | None]:
        generator = scope()
        copied = await asyncio.ensure_future(generator.__anext__())
        seen_in_copy = copied.run(current_session)
        await asyncio.get_running_loop().create_task(generator.aclose(), context=copied)
        return seen_in_copy, copied.run(current_session)

    assert asyncio.run(main()) == (session, None)
    assert current_session() is None


# -- names and messages ----------------------------------------------------------------------------
def test_a_generated_session_name_is_session_and_the_first_eight_hex_digits_of_its_id() -> None:
    session = Session()
    assert len(session.id) == len("session_") + 32 and session.id.startswith("session_")
    assert session.name == session.id[: len("session_") + 8]


def test_a_session_name_that_is_not_a_string_is_refused_with_the_value() -> None:
    with pytest.raises(ValueError) as raised:
        Session(name=5)  # type: ignore[arg-type]
    assert str(raised.value) == "Session: option 'name' must be a string or None, got 5"


def test_the_limit_error_names_the_task_the_count_the_session_and_the_limit_and_says_what_to_do() -> None:
    gate = threading.Event()

    @task(max_parallel=1)
    def gated() -> None:
        gate.wait(DEADLINE)

    with Session(name="limits", on_limit="raise"):
        gated.instance().start()
        with pytest.raises(MaxInstancesReachedError) as raised:
            gated.instance().start()
        gate.set()
    assert str(raised.value) == (
        "task 'gated' already runs 1 instance(s) in session 'limits', its max_parallel limit is 1; wait for "
        "one to finish, raise max_parallel, or use Session(on_limit='queue') to queue instead"
    )


def test_the_ended_session_error_names_the_task_and_the_session_and_says_where_to_start() -> None:
    with Session(name="closed"):
        instance = double.instance()
    with pytest.raises(TaskError) as raised:
        instance.start(1)
    assert str(raised.value) == (
        "task 'double': session 'closed' has ended; start instances inside its `with Session():` block"
    )


def test_running_count_of_a_task_the_session_never_ran_is_zero() -> None:
    with Session() as session:
        assert session.running_count("never-started") == 0
        assert double.instance().start(1).result(DEADLINE) == 2
        assert session.running_count("never-started") == 0
        assert session.running_count("double") == 0


# -- the queue ---------------------------------------------------------------------------------------
def test_a_cancelled_waiting_instance_leaves_the_session_at_once_and_never_reaches_the_backend() -> None:
    backend = HeldBackend()
    with Session() as session:
        running = TaskInstance(held, session, backend)
        running.start()
        cancelled = TaskInstance(held, session, backend)
        cancelled_future = cancelled.start()
        next_in_line = TaskInstance(held, session, backend)
        next_future = next_in_line.start()
        assert session.instances == [running, cancelled, next_in_line]

        assert cancelled_future.cancel() is True
        assert session.instances == [running, next_in_line]
        backend.finish(0, "first")  # the slot goes straight to the next in line
        assert [run.instance_id for run in backend.runs] == [running.id, next_in_line.id]
        assert session.running_count("held") == 1
        backend.finish(1, "third")
    assert cancelled_future.status == "cancelled"
    assert next_future.result(0) == "third"
    assert session.instances == []


_INSTANCE_FILE = str(Path("taskloom", "runtime", "instance.py"))


def test_an_instance_cancelled_as_it_is_handed_a_slot_counts_until_its_backend_has_closed_its_run() -> None:
    """The race of ``cancel()`` with the slot passing to the next in line, made certain by a tracer: the
    instance is cancelled after it left the queue and before it is launched. It is too late to withdraw it:
    it is asked to stop, and the session counts it (and ``with`` waits for it) until the backend has
    reported it, like any cancelled instance that was launched."""
    backend = HeldBackend()
    fired: list[bool] = []
    with Session() as session:
        running = TaskInstance(held, session, backend)
        running.start()
        waiting = TaskInstance(held, session, backend)
        waiting_future = waiting.start()

        def in_complete(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line" and not fired:
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                if line == "successor._launch()":
                    fired.append(True)
                    assert waiting_future.cancel() is True
            return in_complete

        def calls(frame: FrameType, event: str, arg: Any) -> Any:
            code = frame.f_code
            if code.co_filename.endswith(_INSTANCE_FILE) and "_complete" in code.co_name:
                return in_complete
            return None

        previous = sys.gettrace()
        sys.settrace(calls)
        try:
            backend.finish(0, "first")
        finally:
            sys.settrace(previous)
        assert fired == [True]
        assert waiting_future.status == "cancelled"
        assert waiting.control.should_stop is True
        assert [run.instance_id for run in backend.runs] == [running.id, waiting.id]
        assert session.instances == [waiting]  # its run is still open
        assert backend.runs[1].begin() is False  # the backend drops it, which closes the run
        assert session.instances == []
        assert session.running_count("held") == 0


def test_async_with_keeps_waiting_when_an_instance_starts_just_as_the_last_one_finishes() -> None:
    """``async with`` is woken when the session empties; if a new instance started before it looked again,
    it must wait for that one too."""
    backend = HeldBackend()
    session = Session(name="relay")
    started: list[Future] = []

    async def relay() -> None:
        # runs once the block is waiting for the first instance
        backend.finish(0, "first")  # the session is empty: the waiting __aexit__ is woken...
        started.append(TaskInstance(held, session, backend).start())  # ...but a new instance starts first
        for _ in range(10):  # let the woken __aexit__ run and look again
            await asyncio.sleep(0)
        backend.finish(1, "second")

    async def main() -> bool:
        async with session:
            TaskInstance(held, session, backend).start()
            relaying = asyncio.ensure_future(relay())
        second_done_when_the_block_ended = started[0].done
        await relaying
        return second_done_when_the_block_ended

    assert asyncio.run(main()) is True
    assert started[0].result(0) == "second"
