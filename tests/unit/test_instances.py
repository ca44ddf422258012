"""Task instances: start once, stop gracefully, cancel, policies, async tasks, and the document's patterns."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from processes import wait_for as wait_until

from taskloom import (
    Future,
    Session,
    TaskCancelledError,
    TaskControl,
    TaskError,
    TaskInstance,
    TaskTimeoutError,
    task,
)

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
