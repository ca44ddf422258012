"""Instances, the details test_instances.py leaves open (mutation testing of taskloom/runtime/instance.py,
issue 14).

Instance ids, the backends imported on first use, what a backend sees (``check_start``, ``on_stop``, an
outcome reported twice, a ``submit`` that fails), the exact texts of a refused ``start``, and cancels
that meet an instance before it started or just as it finished.

The instances run on small backends written here against the seam of ``taskloom/backends/base.py``
(:class:`HeldBackend` runs nothing by itself: the test begins and ends each run, so no thread races it).
These tests never open the default store.
"""

from __future__ import annotations

import linecache
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import taskloom.backends
from taskloom import Session, TaskControl, TaskError, task
from taskloom.control import TaskControlHandler, get_task_control_handler, set_task_control_handler
from taskloom.errors import BackendError
from taskloom.runtime import instance as instance_module
from taskloom.runtime.instance import InstanceRun, StopSignal, TaskInstance, new_instance_id
from taskloom.task import Task

DEADLINE = 5.0


@task
def double(value: int) -> int:
    return value * 2


@task
def held(value: int = 0, *, label: str = "") -> str:
    return "never called: these backends run nothing"


class HeldBackend:
    """Keeps every run it is given; the test begins and ends them itself."""

    name = "held"

    def __init__(self) -> None:
        self.runs: list[InstanceRun] = []

    def submit(self, run: InstanceRun) -> None:
        self.runs.append(run)

    def close(self) -> None:
        """Nothing to release."""


class CheckingBackend(HeldBackend):
    """Refuses, at ``start``, arguments that are not all ints (as the remote backend refuses non-JSON)."""

    name = "checking"

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[tuple[Task[Any, Any], tuple[Any, ...], dict[str, Any]]] = []

    def check_start(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.checked.append((task, args, kwargs))
        if not all(isinstance(value, int) for value in (*args, *kwargs.values())):
            raise BackendError(f"task {task.name!r}: the checking backend takes ints only")


class RefusingBackend(HeldBackend):
    """Whose ``submit`` fails, as a remote backend does when the server refuses the instance."""

    name = "refusing"

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def submit(self, run: InstanceRun) -> None:
        raise self.error


class StopRecorder(TaskControlHandler):
    """Keeps the instance ids it was asked to stop."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def request_stop(self, task_control: TaskControl) -> None:
        self.stopped.append(task_control.instance_id)


# -- ids and the backend -----------------------------------------------------------------------------
def test_instance_ids_are_distinct_random_version_4_uuids_in_32_hex_characters() -> None:
    ids = [new_instance_id() for _ in range(500)]
    assert len(set(ids)) == 500
    for instance_id in ids:
        parsed = uuid.UUID(instance_id)
        assert parsed.hex == instance_id
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    with Session():
        instance = double.instance()
    assert uuid.UUID(instance.id).version == 4 and len(instance.id) == 32


def test_the_first_instance_in_a_process_imports_the_backends_then_keeps_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(instance_module, "_backend_from_settings", None)  # as in a fresh process
    with Session():
        assert double.instance().start(4).result(DEADLINE) == 8
    assert instance_module._backend_from_settings is taskloom.backends.backend_from_settings


def test_an_instances_future_and_control_carry_its_task_name_and_id() -> None:
    with Session() as session:
        instance = TaskInstance(held, session, HeldBackend())
    assert (instance.future.task_name, instance.future.instance_id) == ("held", instance.id)
    assert (instance.control.task_definition_name, instance.control.instance_id) == ("held", instance.id)


# -- what the backend sees ---------------------------------------------------------------------------
def test_the_backend_checks_the_arguments_at_start_before_the_session_counts_the_instance() -> None:
    backend = CheckingBackend()
    with Session() as session:
        instance = TaskInstance(held, session, backend)
        with pytest.raises(BackendError, match="ints only"):
            instance.start("one", label="x")
        assert session.instances == [] and backend.runs == []
        future = instance.start(1, label=2)  # refused once, it can start again
        assert session.instances == [instance]
        assert backend.checked == [(held, ("one",), {"label": "x"}), (held, (1,), {"label": 2})]
        [run] = backend.runs
        assert (run.args, run.kwargs) == ((1,), {"label": 2})
        assert run.begin()
        run.succeed("checked")
    assert future.result(0) == "checked"


def test_a_backend_is_told_of_a_stop_once_and_at_once_if_it_was_already_asked() -> None:
    backend = HeldBackend()
    heard: list[str] = []
    with Session() as session:
        instance = TaskInstance(held, session, backend)
        instance.start()
        [run] = backend.runs
        assert run.begin()
        run.on_stop(lambda: heard.append("early"))
        assert heard == []
        instance.stop()
        assert heard == ["early"]
        instance.stop()
        assert heard == ["early"]
        run.on_stop(lambda: heard.append("late"))
        assert heard == ["early", "late"]
        run.succeed("stopped")
    assert instance.control.should_stop


def test_a_new_stop_signal_is_not_set_and_calls_its_listeners_once_when_set() -> None:
    signal = StopSignal()
    heard: list[int] = []
    assert signal.is_set() is False
    signal.add_listener(lambda: heard.append(1))
    signal.set()
    signal.set()
    assert signal.is_set() is True
    assert heard == [1]


def test_a_backend_that_reports_an_outcome_twice_is_an_error_naming_the_instance() -> None:
    backend = HeldBackend()
    with Session() as session:
        instance = TaskInstance(held, session, backend)
        future = instance.start()
        [run] = backend.runs
        assert run.begin()
        run.succeed("first")
        message = f"backend reported the outcome of instance {instance.id} twice"
        with pytest.raises(RuntimeError) as raised:
            run.succeed("second")
        assert str(raised.value) == message
        with pytest.raises(RuntimeError, match="twice"):
            run.fail(ValueError("third"))
    assert future.result(0) == "first"


def test_a_backend_that_cannot_take_an_instance_fails_its_future_with_that_error_and_frees_the_slot() -> None:
    refusal = BackendError("the server refused the instance")
    with Session() as session:
        future = TaskInstance(held, session, RefusingBackend(refusal)).start()
        assert future.status == "failed"
        assert future.error is refusal
        assert session.running_count("held") == 0 and session.instances == []
        backend = HeldBackend()  # the slot is free: the next instance is launched at once
        TaskInstance(held, session, backend).start()
        [run] = backend.runs
        assert run.begin()
        run.succeed("next")
    with pytest.raises(BackendError, match="refused"):
        future.result(0)


# -- start refused -----------------------------------------------------------------------------------
def test_a_second_start_says_the_instance_was_already_started_and_how_to_make_a_new_one() -> None:
    with Session():
        instance = double.instance()
        instance.start(1).result(DEADLINE)
        with pytest.raises(TaskError) as raised:
            instance.start(1)
    assert str(raised.value) == (
        f"task 'double': instance {instance.id} was already started; create a new one with double.instance()"
    )


def test_a_start_after_a_cancel_says_the_instance_was_cancelled_and_how_to_make_a_new_one() -> None:
    with Session():
        instance = double.instance()
        assert instance.future.cancel() is True
        with pytest.raises(TaskError) as raised:
            instance.start(1)
    assert str(raised.value) == (
        f"task 'double': instance {instance.id} was cancelled; create a new one with double.instance()"
    )


# -- cancels -----------------------------------------------------------------------------------------
def test_cancelling_an_instance_that_never_started_asks_nobody_to_stop() -> None:
    previous = get_task_control_handler()
    recorder = StopRecorder()
    set_task_control_handler(recorder)
    try:
        with Session():
            instance = double.instance()
            assert instance.future.cancel() is True
    finally:
        set_task_control_handler(previous)
    assert instance.future.status == "cancelled"
    assert instance.control.should_stop is False
    assert recorder.stopped == []


_INSTANCE_FILE = str(Path("taskloom", "runtime", "instance.py"))


def test_an_instance_that_finishes_just_as_it_is_cancelled_keeps_its_result_and_cancel_says_false() -> None:
    """The race of ``cancel()`` with the backend reporting the outcome, made certain by a tracer: the run
    succeeds after ``cancel()`` found the future unfinished and before it marks it cancelled."""
    backend = HeldBackend()
    fired: list[bool] = []

    with Session() as session:
        instance = TaskInstance(held, session, backend)
        future = instance.start()
        [run] = backend.runs
        assert run.begin()

        def in_cancel(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line" and not fired:
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                if line == "if not self.future._set_cancelled():":
                    fired.append(True)
                    run.succeed("finished first")
            return in_cancel

        def calls(frame: FrameType, event: str, arg: Any) -> Any:
            code = frame.f_code
            if code.co_filename.endswith(_INSTANCE_FILE) and "_cancel" in code.co_name:
                return in_cancel
            return None

        previous = sys.gettrace()
        sys.settrace(calls)
        try:
            cancelled = future.cancel()
        finally:
            sys.settrace(previous)
    assert fired == [True]
    assert cancelled is False
    assert (future.status, future.result(0)) == ("completed", "finished first")
    assert instance.control.should_stop is False
