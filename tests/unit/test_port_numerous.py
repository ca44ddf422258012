"""Code written for Numerous Tasks runs on taskloom after the import rewrite (issue 8, items 6, 7, 9, 11).

One test per behaviour of Numerous's public surface that taskloom did not have: the handler reset by
``set_task_control_handler(None)`` and duck-typed handlers; ``TaskControl.status`` starting as ``""``;
``SessionError`` on entering an active session, and the error tree (``SessionError`` and ``BackendError``
are ``TaskError``); ``Session.current()``, ``Session.tasks``, ``get_running_instances_count``,
``Session(session_id=...)`` and generated ``session_`` names; ``TaskInstance.task_definition``,
``task_control`` and ``is_running``; ``TaskStatus``; and error messages that keep what Numerous puts in
them. Everything runs on the real local backend; a gate (an Event) holds a task where a test needs it
running.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from processes import wait_for as wait_until

from taskloom import (
    MaxInstancesReachedError,
    Session,
    SessionNotFoundError,
    TaskControl,
    TaskError,
    TaskInstance,
    task,
)
from taskloom.control import TaskControlHandler, get_task_control_handler, set_task_control_handler
from taskloom.errors import BackendError, SessionError
from taskloom.runtime import TaskStatus

DEADLINE = 5.0


@pytest.fixture(autouse=True)
def restore_handler() -> Iterator[None]:
    """Every test leaves the process's handler as it found it."""
    previous = get_task_control_handler()
    yield
    set_task_control_handler(previous)


@task
def reporting(tc: TaskControl, name: str) -> str:
    tc.log(f"hello {name}", "info")
    tc.update_progress(50.0, "half way")
    tc.update_status("finishing")
    return name.upper()


@task
def double(value: int) -> int:
    return value * 2


def held_task(max_parallel: int = 1) -> tuple[Any, threading.Event]:
    """A task that runs until the returned gate is set (or the deadline passes)."""
    gate = threading.Event()

    @task(max_parallel=max_parallel)
    def held() -> str:
        gate.wait(DEADLINE)
        return "released"

    return held, gate


# -- 6. handlers: None resets, any object with the methods will do ------------------------------------
class Printing(TaskControlHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
        self.seen.append(message)


def test_set_task_control_handler_none_puts_the_default_handler_back(caplog: pytest.LogCaptureFixture) -> None:
    custom = Printing()
    set_task_control_handler(custom)
    set_task_control_handler(None)
    restored = get_task_control_handler()
    assert type(restored) is TaskControlHandler and restored is not custom
    with caplog.at_level(logging.INFO, logger="taskloom.task"):
        assert reporting("ada") == "ADA"
    assert custom.seen == []  # the custom handler is no longer told
    assert [record.getMessage() for record in caplog.records] == ["reporting: hello ada"]


def test_a_handler_need_not_subclass_taskcontrolhandler() -> None:
    class Duck:  # the three methods of Numerous's handler, no base class, no request_stop
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
            self.calls.append(("log", task_control.task_definition_name, message, level))

        def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
            self.calls.append(("progress", progress, status))

        def update_status(self, task_control: TaskControl, status: str) -> None:
            self.calls.append(("status", status))

    duck = Duck()
    set_task_control_handler(duck)
    assert get_task_control_handler() is duck
    with Session():
        instance = reporting.instance()
        assert instance.start("bob").result(DEADLINE) == "BOB"
        instance.stop()  # a handler without request_stop is simply not told
    assert instance.control.should_stop
    assert duck.calls == [
        ("log", "reporting", "hello bob", "info"),
        ("progress", 50.0, "half way"),
        ("status", "finishing"),
    ]


def test_a_mock_is_accepted_as_a_handler_and_receives_every_call() -> None:
    handler = mock.Mock()
    set_task_control_handler(handler)
    with Session():
        instance = reporting.instance()
        instance.start("eve").result(DEADLINE)
        instance.stop()
    control = instance.control
    handler.log.assert_called_once_with(control, "hello eve", "info")
    handler.update_progress.assert_called_once_with(control, 50.0, "half way")
    handler.update_status.assert_called_once_with(control, "finishing")
    handler.request_stop.assert_called_once_with(control)


def test_an_object_without_a_handler_method_is_refused_naming_what_it_lacks() -> None:
    class Partial:
        def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None: ...

        update_status = "not a method"

    before = get_task_control_handler()
    with pytest.raises(TypeError) as raised:
        set_task_control_handler(Partial())  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith("set_task_control_handler(handler): ")
    assert message.endswith("Partial has no update_progress, update_status method")
    assert get_task_control_handler() is before  # nothing was installed


# -- 7. TaskControl.status starts as "" --------------------------------------------------------------
def test_a_task_control_status_starts_as_an_empty_string() -> None:
    @task
    def first_status(tc: TaskControl) -> tuple[str, str]:
        before = tc.status
        tc.update_progress(10.0)  # progress without a status leaves it as it was
        return before, tc.status

    assert TaskControl("t").status == ""
    with Session():
        assert first_status.instance().start().result(DEADLINE) == ("", "")
    assert first_status() == ("", "")


# -- 9. SessionError, and the error tree ------------------------------------------------------------
def test_entering_a_session_that_is_already_active_raises_session_error_naming_it() -> None:
    with Session(name="nightly") as session:
        with pytest.raises(SessionError, match=r"^session 'nightly' is already active"), session:
            pass
        assert Session.current() is session  # the refused entry changed nothing
        assert double.instance().start(4).result(DEADLINE) == 8


def test_a_session_active_in_one_thread_cannot_be_entered_in_another() -> None:
    errors: list[BaseException] = []

    def enter(session: Session) -> None:
        try:
            with session:
                pass
        except BaseException as error:
            errors.append(error)

    with Session(name="owned") as session:
        intruder = threading.Thread(target=enter, args=(session,))
        intruder.start()
        intruder.join(DEADLINE)
    assert not intruder.is_alive()
    assert [type(error) for error in errors] == [SessionError]
    assert "'owned' is already active" in str(errors[0])


def test_a_session_left_can_be_entered_again() -> None:
    session = Session(name="again")
    with session:
        assert double.instance().start(1).result(DEADLINE) == 2
    with session:
        assert Session.current() is session
        assert double.instance().start(2).result(DEADLINE) == 4
    assert Session.current() is None


def test_session_error_and_backend_error_are_task_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert issubclass(SessionError, TaskError) and issubclass(BackendError, TaskError)
    monkeypatch.setenv("TASKLOOM_BACKEND", "numerous-cloud")
    with Session(), pytest.raises(TaskError) as raised:  # `except TaskError` catches a bad backend
        double.instance()
    assert type(raised.value) is BackendError and "'numerous-cloud'" in str(raised.value)


# -- 11. Session.current(), session ids and names -----------------------------------------------------
def test_session_current_is_the_active_session_or_none() -> None:
    @task
    def where() -> Session | None:
        return Session.current()

    assert Session.current() is None
    with Session() as outer:
        assert Session.current() is outer
        with Session() as inner:
            assert Session.current() is inner
            assert where.instance().start().result(DEADLINE) is inner  # a running instance sees its session
        assert Session.current() is outer
    assert Session.current() is None


def test_a_session_takes_its_id_from_session_id() -> None:
    given = Session(session_id="order-42")
    assert (given.id, given.name) == ("order-42", "order-42")  # a session given only an id is named by it
    named = Session("checkout", "order-43")  # Numerous's positional order: name, session_id
    assert (named.id, named.name) == ("order-43", "checkout")
    with given:
        assert double.instance().start(3).result(DEADLINE) == 6


@pytest.mark.parametrize("session_id", ["", "   ", 42])
def test_a_session_id_that_is_not_a_non_empty_string_is_refused_naming_the_option(session_id: Any) -> None:
    with pytest.raises(ValueError) as raised:
        Session(session_id=session_id)
    assert str(raised.value) == (f"Session: option 'session_id' must be a non-empty string or None, got {session_id!r}")


def test_a_generated_session_id_and_name_start_with_session_underscore() -> None:
    first, second = Session(), Session()
    assert re.fullmatch(r"session_[0-9a-f]{8}", first.name)
    assert re.fullmatch(r"session_[0-9a-f]{32}", first.id) and first.id != second.id
    assert first.id.startswith(first.name)  # the name is the id, shortened
    assert Session(name="mine").name == "mine"


# -- 11. Session.tasks and get_running_instances_count -------------------------------------------------
def test_session_tasks_holds_every_instance_created_in_it_by_task_name_and_id() -> None:
    with Session() as session:
        assert session.tasks == {}
        first, second = double.instance(), double.instance()
        other = reporting.instance()  # created, never started: listed too
        assert first.start(1).result(DEADLINE) == 2
        assert second.start(2).result(DEADLINE) == 4
        tasks = session.tasks
    assert tasks == {"double": {first.id: first, second.id: second}, "reporting": {other.id: other}}
    assert session.tasks == tasks  # finished instances stay listed
    tasks["double"].clear()  # a copy: the session's own record is untouched
    assert set(session.tasks["double"]) == {first.id, second.id}
    with Session() as elsewhere:
        assert elsewhere.tasks == {}  # per session


def test_get_running_instances_count_counts_the_running_instances_of_one_task() -> None:
    held, gate = held_task(max_parallel=2)
    with Session() as session:
        futures = [held.instance().start() for _ in range(3)]  # the third waits for a slot: not running
        assert session.get_running_instances_count(held.name) == 2
        assert session.get_running_instances_count("double") == 0
        assert session.get_running_instances_count("never-defined") == 0
        gate.set()
        assert [future.result(DEADLINE) for future in futures] == ["released"] * 3
        assert session.get_running_instances_count(held.name) == 0


def test_get_running_instances_count_refuses_what_is_not_a_task_name() -> None:
    with Session() as session, pytest.raises(TypeError) as raised:
        session.get_running_instances_count(double)  # type: ignore[arg-type]
    assert str(raised.value).startswith(
        "Session.get_running_instances_count(task_name): task_name must be a task's name (a string), got "
    )


# -- 11. TaskInstance.task_definition, task_control, is_running ---------------------------------------
def test_an_instance_names_its_task_and_its_control_as_numerous_does() -> None:
    seen: list[TaskControl] = []

    @task
    def capture(tc: TaskControl) -> str:
        seen.append(tc)
        return tc.task_definition_name

    with Session():
        instance = capture.instance()
        assert instance.task_definition is capture
        assert instance.start().result(DEADLINE) == "capture"
    assert seen == [instance.task_control] and instance.task_control is instance.control
    assert instance.task_control.instance_id == instance.id


def test_is_running_from_launch_until_the_future_is_done() -> None:
    held, gate = held_task(max_parallel=1)
    with Session():
        running, waiting = held.instance(), held.instance()
        assert not running.is_running  # created, not started
        running_future = running.start()
        waiting_future = waiting.start()
        assert running.is_running
        assert not waiting.is_running and waiting.status == "pending"  # waits for a slot
        gate.set()
        assert running_future.result(DEADLINE) == "released"
        assert not running.is_running  # as soon as result() returns
        assert waiting_future.result(DEADLINE) == "released"
        assert not waiting.is_running


def test_a_cancelled_instance_is_not_running() -> None:
    held, gate = held_task()
    with Session():
        instance = held.instance()
        future = instance.start()
        assert instance.is_running
        assert future.cancel() is True
        assert not instance.is_running  # its future is done, though the function may still wind down
        gate.set()


# -- 11. TaskStatus ------------------------------------------------------------------------------------
def test_task_status_names_every_status_string_taskloom_uses() -> None:
    assert issubclass(TaskStatus, str)
    assert list(TaskStatus) == ["pending", "running", "completed", "failed", "cancelled"]
    for member in TaskStatus:
        assert member == member.name.lower()
        assert f"{member}" == str(member) == json.loads(json.dumps(member)) == member.value  # prints as the string


def test_future_statuses_compare_equal_to_task_status_members() -> None:
    held, gate = held_task()

    @task
    def fails() -> None:
        raise ValueError("boom")

    with Session():
        instance = held.instance()
        assert instance.status == TaskStatus.PENDING
        future = instance.start()
        # running once its thread has begun it: poll, with a deadline
        wait_until(lambda: future.status == TaskStatus.RUNNING, DEADLINE, "the instance to run")
        gate.set()
        future.result(DEADLINE)
        assert future.status == TaskStatus.COMPLETED
        failed = fails.instance().start()
        with pytest.raises(ValueError):
            failed.result(DEADLINE)
        assert failed.status == TaskStatus.FAILED
        cancelled = double.instance()
        cancelled.future.cancel()
        assert cancelled.status == TaskStatus.CANCELLED
    assert future.status is TaskStatus.COMPLETED and repr(future).count("status='completed'") == 1
    assert {"completed": "done"}[future.status] == "done"  # hashes as the string


# -- 11. messages keep what Numerous puts in them ------------------------------------------------------
def test_the_max_parallel_error_names_the_task_the_limit_and_the_session() -> None:
    held, gate = held_task(max_parallel=1)
    with Session(name="limited", on_limit="raise"):
        held.instance().start()
        with pytest.raises(MaxInstancesReachedError) as raised:
            held.instance().start()
        gate.set()
    message = str(raised.value)
    assert "'held'" in message and "max_parallel limit is 1" in message and "session 'limited'" in message


def test_the_no_session_error_names_the_task_and_says_how_to_open_one() -> None:
    with pytest.raises(SessionNotFoundError) as raised:
        double.instance()
    assert "double.instance() needs a session" in str(raised.value) and "with Session()" in str(raised.value)


def test_the_second_start_error_names_the_task_and_the_instance() -> None:
    with Session():
        instance: TaskInstance = double.instance()
        instance.start(1).result(DEADLINE)
        with pytest.raises(TaskError) as raised:
            instance.start(2)
    assert str(raised.value).startswith(f"task 'double': instance {instance.id} was already started")
