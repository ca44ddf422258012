"""The ``local-process`` backend with real worker processes: results, errors, TaskControl calls and stop
requests cross the process boundary, and a timed-out or cancelled attempt's process is really ended.

The tasks are module-level so worker processes can import them by reference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for as wait_until

from taskloom import Session, TaskCancelledError, TaskControl, TaskTimeoutError, task
from taskloom.backends import get_backend
from taskloom.backends.process import ProcessBackend
from taskloom.control import TaskControlHandler, get_task_control_handler, set_task_control_handler

pytestmark = pytest.mark.integration

DEADLINE = 10.0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LedgerError(Exception):
    """A user exception type that must arrive as itself from a worker process."""


@task
def where_am_i(tc: TaskControl, steps: int) -> int:
    tc.log("starting", "info")
    for step in range(steps):
        tc.update_progress((step + 1) / steps * 100, f"step {step + 1}/{steps}")
    tc.update_status("done")
    return os.getpid()


@task
def until_stopped(tc: TaskControl) -> str:
    tc.update_progress(50, "waiting for a stop request")
    deadline = time.monotonic() + DEADLINE
    while not tc.should_stop and time.monotonic() < deadline:
        time.sleep(0.005)
    return "stopped gracefully" if tc.should_stop else "never saw the stop"


@task
def failing(account: str) -> None:
    raise LedgerError(f"account {account} is closed")


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task(timeout=0.3)
def overruns(folder: str) -> str:
    Path(folder, "pid").write_text(str(os.getpid()))
    time.sleep(0.8)
    Path(folder, "written-after-timeout").write_text("the attempt was not ended")
    return "too late"


@task
def ignores_stop(folder: str) -> str:
    Path(folder, "pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:  # never looks at should_stop
        time.sleep(0.005)
    Path(folder, "finished").write_text("the cancelled attempt was not ended")
    return "finished"


@pytest.fixture(autouse=True)
def process_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessBackend]:
    monkeypatch.setenv("TASKLOOM_BACKEND", "local-process")
    backend = get_backend("local-process")
    assert isinstance(backend, ProcessBackend)
    yield backend


def test_results_progress_logs_and_status_cross_from_the_worker() -> None:
    with Session():
        instance = where_am_i.instance()
        assert instance.backend_name == "local-process"
        future = instance.start(4)
        pid = future.result(DEADLINE)
    assert pid != os.getpid()
    assert future.progress == 100.0
    assert future.status_message == "done"
    assert [(r.level, r.message) for r in future.logs] == [("info", "starting")]
    assert instance.control.progress == 100.0


def test_the_parent_handler_receives_the_workers_calls() -> None:
    class Recording(TaskControlHandler):
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def log(self, task_control: TaskControl, message: str, level: str, **extra: Any) -> None:
            self.calls.append(("log", message))

        def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
            self.calls.append(("progress", progress, status))

    previous = get_task_control_handler()
    recording = Recording()
    set_task_control_handler(recording)
    try:
        with Session():
            where_am_i.instance().start(2).result(DEADLINE)
    finally:
        set_task_control_handler(previous)
    assert recording.calls == [
        ("log", "starting"),
        ("progress", 50.0, "step 1/2"),
        ("progress", 100.0, "step 2/2"),
    ]


def test_live_progress_and_a_stop_request_cross_processes() -> None:
    with Session():
        instance = until_stopped.instance()
        future = instance.start()
        wait_until(lambda: future.progress == 50)
        assert future.status_message == "waiting for a stop request"
        instance.stop()
        assert future.result(DEADLINE) == "stopped gracefully"
    assert future.status == "completed"


def test_a_failing_task_re_raises_its_own_exception_type() -> None:
    with Session():
        future = failing.instance().start("42")
        with pytest.raises(LedgerError, match="account 42 is closed") as raised:
            future.result(DEADLINE)
    assert any("worker process" in note for note in raised.value.__notes__)


def test_async_tasks_run_in_the_worker() -> None:
    with Session():
        assert async_add.instance().start(2, 3).result(DEADLINE) == 5


def test_a_timed_out_sync_task_is_terminated(tmp_path: Path) -> None:
    started = time.monotonic()
    with Session():
        future = overruns.instance().start(str(tmp_path))
        with pytest.raises(TaskTimeoutError):
            future.result(DEADLINE)
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not process_alive(pid), timeout=2)
    time.sleep(max(0.0, started + 1.0 - time.monotonic()))  # past the moment it would have written
    assert not (tmp_path / "written-after-timeout").exists()


def test_a_cancelled_task_that_ignores_stop_is_terminated(
    tmp_path: Path, process_backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_backend, "cancel_grace", 0.1)
    with Session() as session:
        future = ignores_stop.instance().start(str(tmp_path))
        wait_until(lambda: (tmp_path / "pid").exists())
        assert future.cancel() is True
        with pytest.raises(TaskCancelledError):
            future.result(0)
        cancelled_at = time.monotonic()
    assert time.monotonic() - cancelled_at < 2.0  # the session did not wait for the loop to end by itself
    assert session.instances == []
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not process_alive(pid), timeout=2)
    assert not (tmp_path / "finished").exists()


def test_workers_are_reused_between_instances() -> None:
    with Session():
        first = where_am_i.instance().start(1).result(DEADLINE)
        second = where_am_i.instance().start(1).result(DEADLINE)
    assert first == second


SECRET = "sk-proc-7Hq2Lm9Xw4"


@task(secret_requests=["PROC_KEY"])
def tells_its_secret(tc: TaskControl, secrets: dict[str, str] = {}) -> str:  # noqa: B006 (the seeds' form)
    tc.log(f"using key {secrets['PROC_KEY']}", "info")
    tc.update_status(f"authenticated as {secrets['PROC_KEY']}")
    return "done"


def test_a_secret_is_masked_in_what_the_worker_process_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskloom.secret_store import default_secret_store

    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    default_secret_store().set("PROC_KEY", SECRET)

    class Recording(TaskControlHandler):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def log(self, task_control: TaskControl, message: str, level: str, **extra: Any) -> None:
            self.seen.append(message)

        def update_status(self, task_control: TaskControl, status: str) -> None:
            self.seen.append(status)

    previous = get_task_control_handler()
    recording = Recording()
    set_task_control_handler(recording)
    try:
        with Session():
            future = tells_its_secret.instance().start()
            assert future.result(DEADLINE) == "done"
    finally:
        set_task_control_handler(previous)
    assert recording.seen == ["using key ***", "authenticated as ***"]
    assert all(SECRET not in record.message for record in future.logs)
    assert future.status_message == "authenticated as ***"
