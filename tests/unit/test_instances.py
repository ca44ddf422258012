"""Task instances: start once, stop gracefully, cancel, policies, async tasks, and the document's patterns."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from processes import wait_for as wait_until

from taskloom import (
    Future,
    MaxInstancesReachedError,
    Session,
    TaskCancelledError,
    TaskControl,
    TaskError,
    TaskInstance,
    TaskTimeoutError,
    task,
)
from taskloom.errors import SessionError
from taskloom.runtime.session import current_session

DEADLINE = 5.0


class InventoryError(Exception):
    """A user's own exception type, to check it is re-raised as itself."""


@task
def double(value: int) -> int:
    return value * 2


def test_start_returns_a_future_at_once_and_result_gives_the_value() -> None:
    gate = threading.Event()

    @task
    def waits() -> str:
        gate.wait(DEADLINE)
        return "value"

    with Session():
        instance = waits.instance()
        assert isinstance(instance, TaskInstance) and instance.status == "pending"
        future = instance.start()
        assert isinstance(future, Future) and future is instance.future
        assert not future.done
        gate.set()
        assert future.result(DEADLINE) == "value"
        assert future.status == "completed" and future.done and future.error is None


def test_a_second_start_is_an_error() -> None:
    with Session():
        instance = double.instance()
        instance.start(1)
        with pytest.raises(TaskError, match="already started"):
            instance.start(2)
        assert instance.future.result() == 2


def test_each_instance_has_its_own_id_and_control() -> None:
    with Session():
        first, second = double.instance(), double.instance()
    assert first.id != second.id
    assert first.control.instance_id == first.id
    assert first.control.task_definition_name == "double"
    assert first.task is double


def test_a_stopped_task_returns_gracefully_and_that_is_its_result() -> None:
    @task
    def cancellable(tc: TaskControl, steps: int) -> str:
        for step in range(steps):
            if tc.should_stop:
                return f"Cancelled at step {step}"
            tc.update_progress(step / steps * 100)
            time.sleep(0.001)
        return "Completed"

    with Session():
        instance = cancellable.instance()
        future = instance.start(100_000)
        wait_until(lambda: future.progress > 0)
        instance.stop()
        result = future.result(DEADLINE)
    assert result.startswith("Cancelled at step")
    assert future.status == "completed"
    assert instance.control.should_stop


def test_a_failing_task_re_raises_its_own_exception_type() -> None:
    @task
    def failing(sku: str) -> None:
        raise InventoryError(f"no stock for {sku}")

    with Session():
        future = failing.instance().start("A-1")
        with pytest.raises(InventoryError, match="no stock for A-1"):
            future.result(DEADLINE)
    assert future.status == "failed"
    assert isinstance(future.error, InventoryError)
    with pytest.raises(InventoryError):  # and again, for every caller
        future.result()


def test_a_cancelled_pending_instance_never_runs_and_raises_task_cancelled() -> None:
    gate = threading.Event()
    ran: list[str] = []

    @task(max_parallel=1)
    def job(name: str) -> str:
        ran.append(name)
        gate.wait(DEADLINE)
        return name

    with Session():
        first = job.instance().start("first")
        second = job.instance().start("second")
        wait_until(lambda: ran == ["first"])
        assert second.status == "pending"
        assert second.cancel() is True
        assert second.status == "cancelled" and second.done
        with pytest.raises(TaskCancelledError):
            second.result()
        assert isinstance(second.error, TaskCancelledError)
        gate.set()
    assert first.result() == "first"
    assert ran == ["first"]


def test_cancelling_a_running_instance_asks_it_to_stop_and_holds_the_slot_until_it_returns() -> None:
    may_return = threading.Event()
    saw_stop = threading.Event()
    started: list[str] = []

    @task(max_parallel=1)
    def long_job(tc: TaskControl, name: str) -> str:
        started.append(name)
        wait_until(lambda: tc.should_stop or name == "next")
        if tc.should_stop:
            saw_stop.set()
            may_return.wait(DEADLINE)
        return name

    with Session() as session:
        running = long_job.instance().start("running")
        queued = long_job.instance().start("next")
        wait_until(lambda: started == ["running"])
        assert running.cancel() is True
        assert running.status == "cancelled"
        with pytest.raises(TaskCancelledError):
            running.result(0)
        assert saw_stop.wait(DEADLINE)
        assert queued.status == "pending" and session.running_count("long_job") == 1
        may_return.set()
        assert queued.result(DEADLINE) == "next"
    assert started == ["running", "next"]
    assert running.status == "cancelled"


def test_cancel_after_completion_returns_false() -> None:
    with Session():
        future = double.instance().start(3)
        assert future.result(DEADLINE) == 6
        assert future.cancel() is False
        assert future.status == "completed"


def test_a_cancelled_unstarted_instance_cannot_be_started() -> None:
    with Session():
        instance = double.instance()
        assert instance.future.cancel() is True
        with pytest.raises(TaskError, match="was cancelled"):
            instance.start(1)


def test_result_timeout_raises_timeout_error_and_a_later_result_still_works() -> None:
    gate = threading.Event()

    @task
    def slow() -> str:
        gate.wait(DEADLINE)
        return "eventually"

    with Session():
        future = slow.instance().start()
        with pytest.raises(TimeoutError, match=r"has not finished after 0\.05s"):
            future.result(timeout=0.05)
        assert future.status == "running"
        gate.set()
        assert future.result() == "eventually"


def test_the_task_policy_applies_to_instances() -> None:
    attempts: list[int] = []

    @task(retry_max_attempts=2, retry_delay=0)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return len(attempts)

    @task(timeout=0.05)
    def hangs() -> None:
        threading.Event().wait(1)

    with Session():
        assert flaky.instance().start().result(DEADLINE) == 3
        with pytest.raises(TaskTimeoutError):
            hangs.instance().start().result(DEADLINE)


def test_async_tasks_run_as_instances() -> None:
    @task
    async def add_one(tc: TaskControl, value: int) -> int:
        tc.update_progress(100, "added")
        return value + 1

    with Session():
        future = add_one.instance().start(41)
        assert future.result(DEADLINE) == 42
    assert future.status_message == "added"


def test_a_task_can_start_instances_in_its_own_session() -> None:
    @task(max_parallel=2)
    def parent(count: int) -> list[int]:
        futures = [double.instance().start(i) for i in range(count)]
        return [f.result(DEADLINE) for f in futures]

    with Session() as session:
        future = parent.instance().start(3)
        assert future.result(DEADLINE) == [0, 2, 4]
    assert session.instances == []


def test_batch_example_returns_results_in_order() -> None:
    lock = threading.Lock()
    counts = {"now": 0, "peak": 0}

    @task(max_parallel=3)
    def process_batch(tc: TaskControl, batch_id: str, items: list[int]) -> dict[str, Any]:
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
        tc.log(f"Starting batch {batch_id} with {len(items)} items", "info")
        results = []
        for i, item in enumerate(items):
            if tc.should_stop:
                break
            results.append(item * item)
            tc.update_progress((i + 1) / len(items) * 100, f"Batch {batch_id}: {i + 1}/{len(items)}")
        with lock:
            counts["now"] -= 1
        return {"batch_id": batch_id, "processed": len(results)}

    data_batches = [list(range(n)) for n in range(1, 11)]
    with Session(name="batch-processing"):
        futures = []
        for i, batch in enumerate(data_batches):
            instance = process_batch.instance()
            future = instance.start(f"batch_{i}", batch)
            futures.append(future)
        results = [f.result() for f in futures]
    assert results == [{"batch_id": f"batch_{i}", "processed": i + 1} for i in range(10)]
    assert counts["peak"] <= 3
    assert all(f.progress == 100.0 for f in futures)


def test_pipeline_example_feeds_each_stage_the_previous_result() -> None:
    @task
    def stage_1(tc: TaskControl, data: dict[str, Any]) -> dict[str, Any]:
        tc.update_status("Stage 1: Data validation")
        return {"validated": data, "stage": 1}

    @task
    def stage_2(tc: TaskControl, data: dict[str, Any]) -> dict[str, Any]:
        tc.update_status("Stage 2: Data transformation")
        return {"transformed": data, "stage": 2}

    with Session(name="data-pipeline"):
        first = stage_1.instance().start({"id": 1})
        second = stage_2.instance().start(first.result())
        final = second.result()
    assert final == {"transformed": {"validated": {"id": 1}, "stage": 1}, "stage": 2}
    assert second.status_message == "Stage 2: Data transformation"


# -- the runtime's contract, checked closely (mutation testing, issue 14) -----------------------------------
class ManualBackend:
    """A backend that keeps the runs it is given until the test runs them: the seam a new backend uses
    (``taskloom/backends/base.py``), with the test deciding when each step happens."""

    name = "manual"

    def __init__(self, refuse_start: Exception | None = None, refuse_submit: Exception | None = None) -> None:
        self.runs: list[Any] = []
        self.checked: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
        self.refuse_start, self.refuse_submit = refuse_start, refuse_submit

    def check_start(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.checked.append((task, args, kwargs))
        if self.refuse_start is not None:
            raise self.refuse_start

    def submit(self, run: Any) -> None:
        if self.refuse_submit is not None:
            raise self.refuse_submit
        self.runs.append(run)

    def close(self) -> None:
        """Nothing to release."""

    def run_next(self) -> None:
        run = self.runs.pop(0)
        if run.begin():
            run.succeed(run.task.fn(*run.args, **run.kwargs))


def _manual_instance(session: Session, backend: ManualBackend, fn: Any = None) -> TaskInstance:
    return TaskInstance(task(name="manual_task")(fn or (lambda x=1: x * 2)), session, backend)


def test_a_backend_checks_the_arguments_before_anything_is_registered() -> None:
    backend = ManualBackend(refuse_start=TypeError("not JSON"))
    with Session() as session:
        instance = _manual_instance(session, backend)
        with pytest.raises(TypeError, match="not JSON"):
            instance.start(5, key="v")
        assert backend.checked == [(instance.task, (5,), {"key": "v"})]
        assert session.instances == [] and backend.runs == []
        backend.refuse_start = None
        future = instance.start(3)  # refused before: still startable
        backend.run_next()
        assert future.result(DEADLINE) == 6


def test_a_backend_that_cannot_take_the_instance_fails_its_future_with_the_reason() -> None:
    backend = ManualBackend(refuse_submit=OSError("no worker reachable"))
    with Session() as session:
        future = _manual_instance(session, backend).start()
        with pytest.raises(OSError, match="no worker reachable"):
            future.result(DEADLINE)
        assert future.status == "failed"
        assert session.instances == [] and session.running_count("manual_task") == 0


def test_a_backend_hears_a_stop_once_and_a_late_listener_at_once() -> None:
    backend = ManualBackend()
    heard: list[str] = []
    with Session() as session:
        instance = _manual_instance(session, backend)
        instance.start()
        run = backend.runs[0]
        run.on_stop(lambda: heard.append("early"))
        instance.stop()
        instance.stop()
        assert heard == ["early"]
        run.on_stop(lambda: heard.append("late"))
        assert heard == ["early", "late"]
        assert run.control.should_stop
        backend.run_next()


def test_a_backend_that_reports_twice_is_told() -> None:
    backend = ManualBackend()
    with Session() as session:
        instance = _manual_instance(session, backend)
        instance.start()
        run = backend.runs[0]
        assert run.begin()
        run.succeed(1)
        with pytest.raises(RuntimeError) as caught:
            run.fail(ValueError("again"))
        assert str(caught.value) == f"backend reported the outcome of instance {instance.id} twice"
        assert instance.future.result() == 1


def test_a_cancelled_queued_instance_leaves_the_session_at_once_and_never_runs() -> None:
    backend = ManualBackend()
    with Session() as session:
        limited = task(name="limited", max_parallel=1)(lambda: "ran")
        first = TaskInstance(limited, session, backend)
        second = TaskInstance(limited, session, backend)
        first.start()
        second_future = second.start()
        assert second_future.status == "pending" and len(backend.runs) == 1
        assert second_future.cancel()
        assert session.instances == [first]  # withdrawn: not waited for, not holding a place in line
        backend.run_next()
        assert backend.runs == []  # the freed slot was not handed to the cancelled instance
        assert session.running_count("limited") == 0
    assert second_future.status == "cancelled"


def test_cancel_reports_whether_it_did_anything() -> None:
    backend = ManualBackend()
    with Session() as session:
        running = _manual_instance(session, backend)
        running.start()
        assert running.future.cancel() is True
        assert running.control.should_stop  # a launched instance is asked to stop
        backend.run_next()
        done = _manual_instance(session, backend)
        done.start()
        backend.run_next()
        assert done.future.cancel() is False
        assert done.future.status == "completed"


def test_an_instance_cancelled_before_start_cannot_be_started() -> None:
    with Session():
        instance = double.instance()
        assert instance.future.cancel()
        with pytest.raises(TaskError) as cancelled:
            instance.start(1)
        assert str(cancelled.value) == (
            f"task 'double': instance {instance.id} was cancelled; create a new one with double.instance()"
        )
        with pytest.raises(TaskCancelledError) as result:
            instance.future.result()
        assert str(result.value) == f"task 'double' (instance {instance.id}) was cancelled"
        started = double.instance()
        started.start(1)
        with pytest.raises(TaskError) as again:
            started.start(1)
        assert str(again.value) == (
            f"task 'double': instance {started.id} was already started; create a new one with double.instance()"
        )


def test_instance_ids_are_version_4_uuids() -> None:
    import uuid

    from taskloom.runtime.instance import new_instance_id

    ids = [new_instance_id() for _ in range(300)]
    assert len(set(ids)) == 300
    for made in ids:
        assert len(made) == 32
        parsed = uuid.UUID(made)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_the_first_instance_of_a_process_finds_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskloom.runtime import instance as instance_module

    monkeypatch.setattr(instance_module, "_backend_from_settings", None)  # as in a fresh process
    with Session():
        assert double.instance().start(2).result(DEADLINE) == 4
    assert instance_module._backend_from_settings is not None


# -- futures -------------------------------------------------------------------------------------------
def test_a_new_future_is_pending_with_nothing_reported() -> None:
    future = Future("t", "i")
    assert (future.task_name, future.instance_id) == ("t", "i")
    assert future.status == "pending" and future.done is False and future.error is None
    assert future.progress == 0.0 and future.status_message is None and future.logs == []


def test_a_future_settles_once() -> None:
    future = Future("t", "i")
    assert future._set_result(1) is True
    assert future._set_result(2) is False and future._set_error(ValueError()) is False
    assert future._set_cancelled() is False
    assert future.result() == 1


def test_result_with_no_wait_on_a_pending_future_says_how_to_go_on() -> None:
    future = Future("slow", "abc")
    with pytest.raises(TimeoutError) as caught:
        future.result(timeout=0)
    assert str(caught.value) == (
        "task 'slow' (instance abc) has not finished after 0s; call result() again to keep waiting, or cancel() it"
    )


def test_polling_result_with_a_timeout_leaves_no_waiters_behind() -> None:
    future = Future("t", "i")
    for _ in range(50):
        with pytest.raises(TimeoutError):
            future.result(timeout=0.001)
    assert future._waiters == []
    future._set_result("done")
    assert future.result(timeout=0.001) == "done"


def test_result_without_a_timeout_waits_as_long_as_it_takes() -> None:
    """Longer than a second (a wait that gave up after one second would raise TimeoutError)."""
    future = Future("t", "i")
    finisher = threading.Timer(1.5, future._set_result, args=("late",))  # the workload, not a sync point
    finisher.start()
    try:
        assert future.result() == "late"
    finally:
        finisher.cancel()


def test_a_failing_callback_is_logged_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    future = Future("t", "i")

    def broken(_: Future) -> None:
        raise ValueError("callback broke")

    future.add_done_callback(broken)
    with caplog.at_level("ERROR", logger="taskloom.future"):
        future._set_result(1)
    assert caplog.messages == [f"done callback {broken!r} of {future!r} raised"]


# -- task control ----------------------------------------------------------------------------------------
def test_a_new_task_control_has_no_progress_no_status_and_is_not_stopped() -> None:
    control = TaskControl("t")
    assert control.progress == 0.0 and control.status == "" and not control.should_stop


def test_task_control_logs_default_to_info_and_go_to_the_taskloom_task_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = TaskControl("charge", "instance-1")
    with caplog.at_level("DEBUG", logger="taskloom.task"):
        control.log("hello", order="A-1")
    (record,) = control.logs
    assert (record.level, record.message, record.extra) == ("info", "hello", {"order": "A-1"})
    assert isinstance(record.timestamp, float) and abs(record.timestamp - time.time()) < 60
    (logged,) = caplog.records
    assert logged.levelname == "INFO" and logged.getMessage() == "charge: hello"
    assert logged.taskloom == {"instance_id": "instance-1", "order": "A-1"}  # type: ignore[attr-defined]
    with pytest.raises(ValueError) as caught:
        control.log("x", level="loud")
    assert str(caught.value) == (
        "TaskControl.log: level must be one of debug, info, warning, error, critical, got 'loud'"
    )


def test_an_instances_logs_progress_and_status_reach_its_future() -> None:
    @task
    def reports(tc: TaskControl) -> None:
        tc.log("working", level="warning", step=1)
        tc.update_status("half way")
        tc.update_progress(75)

    with Session():
        future = reports.instance().start()
        future.result(DEADLINE)
    assert [(r.level, r.message, r.extra) for r in future.logs] == [("warning", "working", {"step": 1})]
    assert future.status_message == "half way" and future.progress == 75.0


# -- sessions --------------------------------------------------------------------------------------------
def test_session_names_and_their_errors() -> None:
    session = Session()
    assert session.name == session.id[:16] and session.name.startswith("session_")
    with pytest.raises(ValueError) as caught:
        Session(name=3)  # type: ignore[arg-type]
    assert str(caught.value) == "Session: option 'name' must be a string or None, got 3"
    assert session.running_count("never started") == 0


def test_the_limit_and_the_ended_session_errors_say_what_to_do() -> None:
    gate = threading.Event()

    @task(max_parallel=1)
    def one_at_a_time() -> None:
        gate.wait(DEADLINE)

    with Session(name="batch", on_limit="raise") as session:
        one_at_a_time.instance().start()
        with pytest.raises(MaxInstancesReachedError) as limit:
            one_at_a_time.instance().start()
        gate.set()
    assert str(limit.value) == (
        "task 'one_at_a_time' already runs 1 instance(s) in session 'batch', its max_parallel limit is 1; wait "
        "for one to finish, raise max_parallel, or use Session(on_limit='queue') to queue instead"
    )
    late = TaskInstance(double, session, ManualBackend())
    with pytest.raises(TaskError) as ended:
        late.start(1)
    assert str(ended.value) == (
        "task 'double': session 'batch' has ended; start instances inside its `with Session():` block"
    )


def test_a_session_entered_again_inside_itself_is_refused_and_stays_open() -> None:
    session = Session()
    with session:
        with pytest.raises(SessionError, match="already active"), session:
            pass
        assert current_session() is session
        assert double.instance().start(1).result(DEADLINE) == 2  # still open
    assert current_session() is None


def test_asyncio_tasks_started_in_a_session_share_it_and_one_entering_it_again_is_refused() -> None:
    session = Session()

    async def user() -> Session | None:
        return current_session()

    async def intruder() -> None:
        async with session:
            pass

    async def main() -> list[Session | None]:
        async with session:
            shared = await asyncio.wait_for(asyncio.create_task(user()), DEADLINE)
            with pytest.raises(SessionError, match="already active"):
                await asyncio.wait_for(asyncio.create_task(intruder()), DEADLINE)
            still = current_session()
        return [shared, still, current_session()]

    assert asyncio.run(main()) == [session, session, None]
