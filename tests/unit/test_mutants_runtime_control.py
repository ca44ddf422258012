"""TaskControl, the details test_control.py leaves open (mutation testing of taskloom/runtime/control.py,
issue 14).

A new control's state, the stop event it is given, what its reporter hears (the control itself, the
record, a status only when it changed), the log record's timestamp, level and extra data, the default
handler's ``logging`` record (in this process and in a fresh one), and the exact texts of its errors.

The reporter here is a small implementation of ``ControlReporter`` that keeps what it is told. These tests
never open the default store.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import TaskControl
from taskloom.control import TaskControlHandler, get_task_control_handler, set_task_control_handler
from taskloom.runtime.control import LogRecord, _HandlerRegistry


class RecordingReporter:
    """Keeps every call, with the control it came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_log(self, control: TaskControl, record: LogRecord) -> None:
        self.calls.append(("log", control, record))

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None:
        self.calls.append(("progress", control, progress, status))

    def on_status(self, control: TaskControl, status: str) -> None:
        self.calls.append(("status", control, status))


@pytest.fixture
def default_handler() -> Iterator[TaskControlHandler]:
    """A fresh default handler installed for the test, the previous one put back after it."""
    previous = get_task_control_handler()
    handler = TaskControlHandler()
    set_task_control_handler(handler)
    yield handler
    set_task_control_handler(previous)


def test_a_new_control_has_no_progress_no_status_no_logs_and_no_stop_request() -> None:
    control = TaskControl("t", "instance-1")
    assert control.progress == 0.0
    assert control.status == ""
    assert control.logs == []
    assert control.should_stop is False
    assert repr(control) == "TaskControl(task='t', instance='instance-1', progress=0, status='', should_stop=False)"


def test_a_control_without_an_instance_id_gets_a_random_hex_one() -> None:
    first, second = TaskControl("t"), TaskControl("t")
    assert len(first.instance_id) == 32 and int(first.instance_id, 16) >= 0
    assert first.instance_id != second.instance_id


def test_a_control_uses_the_stop_event_it_is_given_both_ways() -> None:
    outside = threading.Event()
    control = TaskControl("t", stop_event=outside)
    outside.set()
    assert control.should_stop is True
    inside = threading.Event()
    TaskControl("t", stop_event=inside).request_stop()
    assert inside.is_set()


def test_log_keeps_a_timestamped_record_with_level_info_by_default_and_reports_it_with_the_control(
    default_handler: TaskControlHandler,
) -> None:
    reporter = RecordingReporter()
    control = TaskControl("t", "instance-1", reporter=reporter)
    before = time.time()
    control.log("hello", user="ana")
    after = time.time()
    [record] = control.logs
    assert (record.level, record.message, record.extra) == ("info", "hello", {"user": "ana"})
    assert before <= record.timestamp <= after
    assert reporter.calls == [("log", control, record)]


def test_the_unknown_level_error_lists_every_level_and_the_level_given() -> None:
    with pytest.raises(ValueError) as raised:
        TaskControl("t").log("nope", "loud")
    assert (
        str(raised.value) == "TaskControl.log: level must be one of debug, info, warning, error, critical, got 'loud'"
    )


def test_the_reporter_hears_progress_and_status_with_the_control_and_a_status_only_when_one_was_given(
    default_handler: TaskControlHandler,
) -> None:
    reporter = RecordingReporter()
    control = TaskControl("t", "instance-1", reporter=reporter)
    control.update_status("reading")
    control.update_progress(0)
    control.update_progress(40, "writing")
    control.update_progress(100)
    assert reporter.calls == [
        ("status", control, "reading"),
        ("progress", control, 0.0, None),
        ("progress", control, 40.0, "writing"),
        ("progress", control, 100.0, None),
    ]
    assert (control.progress, control.status) == (100.0, "writing")


def test_the_default_handler_logs_to_the_taskloom_task_logger_with_the_task_the_instance_and_the_extra_data(
    default_handler: TaskControlHandler, caplog: pytest.LogCaptureFixture
) -> None:
    control = TaskControl("report", "instance-1")
    with caplog.at_level(logging.DEBUG, logger="taskloom.task"):
        control.log("disk almost full", "warning", free_gb=3)
        control.log("details", "debug")
    warning, debug = [r for r in caplog.records if r.name == "taskloom.task"]
    assert (warning.levelno, warning.getMessage()) == (logging.WARNING, "report: disk almost full")
    assert warning.taskloom == {"instance_id": "instance-1", "free_gb": 3}  # type: ignore[attr-defined]
    assert (debug.levelno, debug.getMessage()) == (logging.DEBUG, "report: details")
    assert debug.taskloom == {"instance_id": "instance-1"}  # type: ignore[attr-defined]


def test_in_a_fresh_process_task_control_logs_reach_logging_with_no_handler_set() -> None:
    """The default handler is installed when taskloom is imported, before anyone sets one."""
    script = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(name)s %(levelname)s %(message)s')\n"
        "from taskloom import TaskControl\n"
        "TaskControl('fresh', 'instance-1').log('hello from a new process')\n"
    )
    sources = Path(taskloom.__file__).resolve().parent.parent  # the taskloom this test imported
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=sources, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "taskloom.task INFO fresh: hello from a new process\n"


def test_a_new_handler_registry_starts_with_the_default_handler() -> None:
    """What the fresh-process test above shows, in this process: taskloom's one registry is built at import,
    before the mutation run switches a mutant on, so only a registry built during a test lets it see one."""
    handler = _HandlerRegistry().handler
    assert type(handler) is TaskControlHandler


def test_set_task_control_handler_names_the_type_it_refuses() -> None:
    with pytest.raises(TypeError) as raised:
        set_task_control_handler(object())  # type: ignore[arg-type]
    assert str(raised.value) == (
        "set_task_control_handler(handler): handler must be a TaskControlHandler, None, or an object with the "
        "methods log, update_progress, update_status; object has no log, update_progress, update_status method"
    )
    with pytest.raises(TypeError, match=r"; int has no log, update_progress, update_status method$"):
        set_task_control_handler(5)  # type: ignore[arg-type]


def test_extra_data_named_task_control_is_refused_before_anything_is_recorded(
    default_handler: TaskControlHandler,
) -> None:
    reporter = RecordingReporter()
    control = TaskControl("t", "instance-1", reporter=reporter)
    with pytest.raises(ValueError) as raised:
        control.log("hello", task_control="mine")
    assert str(raised.value) == "TaskControl.log: 'task_control' is reserved; give the extra data another name"
    assert control.logs == [] and reporter.calls == []
