"""Futures: statuses, done callbacks, live progress and logs, and ``await future`` in async code."""

from __future__ import annotations

import asyncio
import threading

import pytest
from processes import wait_for as wait_until

from taskloom import Future, Session, TaskCancelledError, TaskControl, task

DEADLINE = 5.0


@task
def double(value: int) -> int:
    return value * 2


def test_status_moves_from_pending_to_running_to_completed() -> None:
    gate = threading.Event()
    seen: list[str] = []

    @task
    def gated() -> str:
        gate.wait(DEADLINE)
        return "done"

    with Session():
        future = gated.instance().start()
        wait_until(lambda: future.status == "running")
        seen.append(future.status)
        gate.set()
        future.result(DEADLINE)
        seen.append(future.status)
    assert seen == ["running", "completed"]


def test_progress_status_text_and_logs_are_visible_while_the_task_runs() -> None:
    gate = threading.Event()

    @task
    def reporting(tc: TaskControl) -> str:
        tc.log("starting", "info")
        tc.update_progress(40, "loading")
        gate.wait(DEADLINE)
        tc.update_status("saving")
        return "ok"

    with Session():
        future = reporting.instance().start()
        wait_until(lambda: future.progress == 40)
        assert future.status_message == "loading"
        assert [(r.level, r.message) for r in future.logs] == [("info", "starting")]
        gate.set()
        assert future.result(DEADLINE) == "ok"
    assert future.status_message == "saving" and future.progress == 40


def test_a_done_callback_runs_once_with_the_future() -> None:
    gate = threading.Event()
    called: list[Future] = []

    @task
    def gated() -> int:
        gate.wait(DEADLINE)
        return 1

    with Session():
        future = gated.instance().start()
        future.add_done_callback(called.append)
        assert called == []
        gate.set()
        future.result(DEADLINE)
    wait_until(lambda: len(called) == 1)
    assert called == [future]


def test_a_done_callback_added_after_completion_runs_at_once() -> None:
    called: list[str] = []
    with Session():
        future = double.instance().start(2)
        future.result(DEADLINE)
        future.add_done_callback(lambda f: called.append(f.status))
    assert called == ["completed"]


def test_a_failing_callback_does_not_break_the_others(caplog: pytest.LogCaptureFixture) -> None:
    called: list[int] = []

    def broken(_: Future) -> None:
        raise RuntimeError("callback bug")

    with Session():
        future = double.instance().start(2)
        future.result(DEADLINE)
        future.add_done_callback(broken)
        future.add_done_callback(lambda f: called.append(f.result()))
    assert called == [4]
    assert "callback bug" in caplog.text


def test_a_cancelled_future_calls_its_callbacks_and_reports_cancelled() -> None:
    gate = threading.Event()
    statuses: list[str] = []

    @task(max_parallel=1)
    def gated() -> None:
        gate.wait(DEADLINE)

    with Session():
        gated.instance().start()
        pending = gated.instance().start()
        pending.add_done_callback(lambda f: statuses.append(f.status))
        pending.cancel()
        gate.set()
    assert statuses == ["cancelled"]
    assert isinstance(pending.error, TaskCancelledError)


def test_await_future_does_not_block_the_event_loop() -> None:
    gate = threading.Event()

    @task
    def waits_for_the_loop() -> str:
        return "loop was free" if gate.wait(DEADLINE) else "loop was blocked"

    async def release() -> None:
        gate.set()

    async def main() -> str:
        async with Session():
            future = waits_for_the_loop.instance().start()
            releaser = asyncio.ensure_future(release())  # can only run while `await future` yields
            value = await future
            await releaser
            return str(value)

    assert asyncio.run(main()) == "loop was free"


def test_await_future_re_raises_the_task_exception() -> None:
    @task
    def failing() -> None:
        raise KeyError("missing")

    async def main() -> None:
        async with Session():
            await failing.instance().start()

    with pytest.raises(KeyError, match="missing"):
        asyncio.run(main())


def test_await_gathers_several_futures() -> None:
    async def main() -> list[int]:
        async with Session():
            futures = [double.instance().start(i) for i in range(5)]
            return list(await asyncio.gather(*futures))

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
