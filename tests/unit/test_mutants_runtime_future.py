"""Futures, the details test_future.py leaves open (mutation testing of taskloom/runtime/future.py, issue 14).

What a future says before it has run, the exact texts of its errors and of a failing callback's log
line, ``result()`` with a zero, negative or absent timeout, a timed-out wait that leaves no waiter
behind, a future that finishes while ``result()`` is about to wait, and an outcome that is set once.

These tests never open the default store.
"""

from __future__ import annotations

import linecache
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from taskloom import Future, Session, TaskCancelledError, task

DEADLINE = 5.0


@contextmanager
def a_running_and_a_pending_instance() -> Iterator[tuple[Future, Future, str]]:
    """A session with one instance of ``gated`` (max_parallel=1) running and a second one waiting for its
    slot; yields both futures and the waiting instance's id, and lets the first one finish at the end."""
    gate = threading.Event()

    @task(max_parallel=1)
    def gated() -> str:
        gate.wait(DEADLINE)
        return "done"

    with Session():
        running = gated.instance().start()
        instance = gated.instance()
        pending = instance.start()
        try:
            yield running, pending, instance.id
        finally:
            gate.set()


def test_a_future_that_has_not_run_yet_has_no_outcome_no_progress_and_no_status_text() -> None:
    with a_running_and_a_pending_instance() as (_, pending, instance_id):
        assert pending.status == "pending"
        assert pending.done is False
        assert pending.error is None
        assert pending.progress == 0.0
        assert pending.status_message is None
        assert pending.logs == []
        assert pending.task_name == "gated"
        assert pending.instance_id == instance_id
        assert repr(pending) == f"<Future task='gated' instance={instance_id} status='pending' progress=0>"


def test_a_running_future_has_no_error_and_is_not_done() -> None:
    with a_running_and_a_pending_instance() as (running, _, _):
        assert running.error is None
        assert running.done is False


def test_the_timeout_error_names_the_task_the_instance_and_the_wait_and_says_what_to_do() -> None:
    with a_running_and_a_pending_instance() as (_, pending, instance_id), pytest.raises(TimeoutError) as raised:
        pending.result(0.01)
    assert str(raised.value) == (
        f"task 'gated' (instance {instance_id}) has not finished after 0.01s; "
        "call result() again to keep waiting, or cancel() it"
    )


@pytest.mark.parametrize("timeout", [0, 0.0, -1])
def test_result_with_a_zero_or_negative_timeout_raises_timeout_error_at_once_on_an_unfinished_future(
    timeout: float,
) -> None:
    with a_running_and_a_pending_instance() as (running, pending, _):
        for future in (running, pending):
            with pytest.raises(TimeoutError, match="has not finished after"):
                future.result(timeout)
            assert future.done is False


def test_a_timed_out_result_call_leaves_no_waiter_behind() -> None:
    """Polling ``result(timeout)`` in a loop must not grow the future by one lock per call."""
    with a_running_and_a_pending_instance() as (running, _, _):
        for _ in range(3):
            with pytest.raises(TimeoutError):
                running.result(0.01)
        assert running._waiters == []
    assert running.result(DEADLINE) == "done"


def test_result_without_a_timeout_waits_for_a_task_that_takes_more_than_a_second() -> None:
    @task
    def slow() -> str:
        time.sleep(1.5)  # the task's own work: result() must wait all of it out, however long it is
        return "late"

    with Session():
        future = slow.instance().start()
        assert future.result() == "late"


def test_the_cancelled_error_names_the_task_and_the_instance() -> None:
    with a_running_and_a_pending_instance() as (_, pending, instance_id):
        assert pending.cancel() is True
    assert isinstance(pending.error, TaskCancelledError)
    assert str(pending.error) == f"task 'gated' (instance {instance_id}) was cancelled"
    with pytest.raises(TaskCancelledError, match=r"^task 'gated' \(instance [0-9a-f]{32}\) was cancelled$"):
        pending.result(DEADLINE)


def test_a_failing_callback_is_logged_with_the_callback_the_future_and_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = RuntimeError("callback bug")

    def broken(_: Future) -> None:
        raise error

    future = Future("logged", "instance-1")
    future._set_result(1)
    with caplog.at_level(logging.ERROR, logger="taskloom.future"):
        future.add_done_callback(broken)
    [record] = [r for r in caplog.records if r.name == "taskloom.future"]
    assert record.getMessage() == f"done callback {broken!r} of {future!r} raised"
    assert record.exc_info is not None and record.exc_info[1] is error


def test_a_future_keeps_its_first_outcome_and_says_so_to_the_later_ones() -> None:
    """The runtime relies on the answer: cancelling an instance that finished meanwhile must return False."""
    future = Future("once", "instance-1")
    assert future._set_result(1) is True
    assert future._set_error(ValueError("late")) is False
    assert future._set_cancelled() is False
    assert future._set_result(2) is False
    assert (future.status, future.result(0), future.error) == ("completed", 1, None)


_FUTURE_FILE = str(Path("taskloom", "runtime", "future.py"))


def test_a_future_finishing_just_before_result_takes_its_lock_is_seen_as_finished() -> None:
    """The race of ``result()`` with the backend finishing the instance, made certain by a tracer: the
    future finishes after ``result()`` found it unfinished and before it takes the future's lock."""
    future = Future("racing", "instance-1")
    fired: list[bool] = []

    def in_wait(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and not fired:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            if line == "with self._lock:":
                fired.append(True)
                future._set_result(42)
        return in_wait

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_filename.endswith(_FUTURE_FILE) and "_wait" in code.co_name:
            return in_wait
        return None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        value = future.result()
    finally:
        sys.settrace(previous)
    assert fired == [True]
    assert value == 42
