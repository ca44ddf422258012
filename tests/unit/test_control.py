"""TaskControl: injection by annotation (this module uses ``from __future__ import annotations``, so the
annotations are strings), range checks, and the handler that receives every call."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import taskloom.control
from taskloom import Session, TaskControl, task
from taskloom.control import TaskControlHandler, get_task_control_handler, set_task_control_handler

DEADLINE = 5.0


class RecordingHandler(TaskControlHandler):
    """Overrides every method and keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
        with self.lock:
            self.calls.append(("log", task_control.task_definition_name, message, level, extra_data))

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
        with self.lock:
            self.calls.append(("progress", task_control.task_definition_name, progress, status))

    def update_status(self, task_control: TaskControl, status: str) -> None:
        with self.lock:
            self.calls.append(("status", task_control.task_definition_name, status))

    def request_stop(self, task_control: TaskControl) -> None:
        with self.lock:
            self.calls.append(("stop", task_control.task_definition_name))


@pytest.fixture
def handler() -> Iterator[RecordingHandler]:
    previous = get_task_control_handler()
    recording = RecordingHandler()
    set_task_control_handler(recording)
    yield recording
    set_task_control_handler(previous)


@task
def reporting(tc: TaskControl, name: str) -> str:
    tc.log(f"hello {name}", "info", user=name)
    tc.update_progress(50.0, "half way")
    tc.update_status("finishing")
    return f"{tc.task_definition_name}:{tc.instance_id}"


def test_taskloom_control_exports_the_documented_names() -> None:
    assert taskloom.control.TaskControl is TaskControl
    for name in ("TaskControlHandler", "set_task_control_handler", "get_task_control_handler"):
        assert name in taskloom.control.__all__


def test_a_control_is_injected_under_future_annotations_in_instances() -> None:
    assert reporting.wants_control
    with Session():
        instance = reporting.instance()
        assert instance.start("ada").result(DEADLINE) == f"reporting:{instance.id}"


def test_a_control_is_injected_in_direct_calls_too() -> None:
    assert reporting("bob").startswith("reporting:")


def test_a_custom_handler_receives_every_call_of_an_instance(handler: RecordingHandler) -> None:
    with Session():
        instance = reporting.instance()
        instance.start("ada").result(DEADLINE)
        instance.stop()
    assert handler.calls == [
        ("log", "reporting", "hello ada", "info", {"user": "ada"}),
        ("progress", "reporting", 50.0, "half way"),
        ("status", "reporting", "finishing"),
        ("stop", "reporting"),
    ]


def test_a_handler_needs_to_override_only_what_it_uses() -> None:
    class ProgressOnly(TaskControlHandler):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
            self.seen.append(progress)

    previous = get_task_control_handler()
    only = ProgressOnly()
    set_task_control_handler(only)
    try:
        reporting("eve")
    finally:
        set_task_control_handler(previous)
    assert only.seen == [50.0]


def test_set_task_control_handler_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="TaskControlHandler"):
        set_task_control_handler(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("percentage", [-1, 100.5, "lots"])
def test_update_progress_outside_0_to_100_is_a_value_error(percentage: Any) -> None:
    with pytest.raises(ValueError, match="percentage"):
        TaskControl("t").update_progress(percentage)


def test_log_levels_are_checked() -> None:
    control = TaskControl("t")
    for level in ("debug", "info", "warning", "error"):
        control.log("fine", level)
    with pytest.raises(ValueError, match="level"):
        control.log("nope", "loud")


def test_a_control_keeps_its_progress_status_and_stop_request() -> None:
    control = TaskControl("t", "instance-1")
    control.update_progress(30, "reading")
    assert (control.progress, control.status, control.instance_id) == (30.0, "reading", "instance-1")
    control.update_status("writing")
    assert control.status == "writing" and not control.should_stop
    control.request_stop()
    assert control.should_stop
