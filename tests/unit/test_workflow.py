"""Workflows: run, continue, resume, status, events and failure, as SPEC section 2 describes them."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from taskloom import (
    ExecutionContext,
    ExecutionNotFoundError,
    ExecutionStateError,
    SerializationError,
    TaskControl,
    TaskDefinitionError,
    TaskError,
    TaskTimeoutError,
    WorkflowError,
    WorkflowExecutionContext,
    task,
    workflow,
)
from taskloom.events import EventType
from taskloom.executions import record_cancel
from taskloom.outputs import InlineOutputStorage, LocalFileOutputStorage
from taskloom.store import default_store
from taskloom.tasks import parallel, pause

calls: dict[str, int] = {}


def counted(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


@pytest.fixture(autouse=True)
def reset_calls() -> None:
    calls.clear()


@task
def add_one(x: int) -> int:
    counted("add_one")
    return x + 1


@task
async def double(x: int) -> int:
    counted("double")
    return x * 2


@workflow
async def arithmetic(ctx: WorkflowExecutionContext[int]) -> int:
    return await double(await add_one(ctx.input))


@workflow
async def approval(ctx: WorkflowExecutionContext[str]) -> str:
    prepared = await add_one(1)
    decision = await pause("approve")
    return f"{ctx.input}: {decision} after {prepared}"


class ChargeDeclined(Exception):
    pass


@task
def charge(amount: int) -> int:
    try:
        raise KeyError("card")
    except KeyError as error:
        raise ChargeDeclined(f"declined {amount}") from error


def types(ctx: WorkflowExecutionContext[Any]) -> list[str]:
    return [str(e.type) for e in ctx.events]


# -- run and the context ---------------------------------------------------------------------------
def test_run_returns_the_finished_context() -> None:
    ctx = arithmetic.run(4)
    assert ctx.output == 10
    assert ctx.input == 4
    assert ctx.status == "completed"
    assert ctx.has_finished and ctx.has_succeeded
    assert not ctx.has_failed and not ctx.is_paused
    assert isinstance(ctx.execution_id, str) and ctx.execution_id
    assert ctx.workflow_name == "arithmetic"


def test_execution_context_is_the_same_class() -> None:
    assert ExecutionContext is WorkflowExecutionContext
    assert isinstance(arithmetic.run(1), ExecutionContext)


def test_each_run_is_a_new_execution() -> None:
    first, second = arithmetic.run(1), arithmetic.run(1)
    assert first.execution_id != second.execution_id
    assert calls == {"add_one": 2, "double": 2}


def test_events_are_typed_timestamped_and_in_order() -> None:
    ctx = arithmetic.run(2)
    events = ctx.events
    assert types(ctx) == [
        "execution_started",
        "step_started",
        "step_completed",
        "step_started",
        "step_completed",
        "execution_completed",
    ]
    assert all(isinstance(e.type, EventType) for e in events)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    # a seq numbers a stored row: a step's start and outcome, written together, are one row and share it
    shared = [(a.type, b.type) for a, b in pairwise(events) if a.seq == b.seq]
    assert shared == [(EventType.STEP_STARTED, EventType.STEP_COMPLETED)] * 2
    assert all(e.timestamp.tzinfo is not None for e in events)
    assert all(e.timestamp.utcoffset() == UTC.utcoffset(None) for e in events)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all(e.execution_id == ctx.execution_id for e in events)
    assert [(e.step_id, e.name) for e in events if e.type is EventType.STEP_COMPLETED] == [
        ("1", "add_one"),
        ("2", "double"),
    ]
    assert [e.value for e in events if e.type is EventType.STEP_COMPLETED] == [3, 6]
    assert events[0].value == 2  # the input
    assert events[-1].value == 6  # the output


def test_event_json_view() -> None:
    view = arithmetic.run(2).events[-1].to_json()
    assert view["type"] == "execution_completed"
    assert view["value"] == 6
    assert view["timestamp"].endswith("+00:00")


def test_status_reads_the_execution_without_running_it() -> None:
    ctx = arithmetic.run(3)
    calls.clear()
    seen = arithmetic.status(ctx.execution_id)
    assert (seen.status, seen.output, seen.input) == ("completed", 8, 3)
    assert seen.execution_id == ctx.execution_id
    assert calls == {}


def test_run_with_the_id_of_a_finished_execution_returns_it() -> None:
    ctx = arithmetic.run(3)
    calls.clear()
    again = arithmetic.run(execution_id=ctx.execution_id)
    assert again.output == 8
    assert again.has_succeeded
    assert calls == {}
    assert len(again.events) == len(ctx.events)  # nothing was appended


def test_create_then_run_by_id() -> None:
    execution_id = arithmetic.create(5)
    assert arithmetic.status(execution_id).status == "running"
    ctx = arithmetic.run(execution_id=execution_id)
    assert ctx.execution_id == execution_id
    assert ctx.input == 5
    assert ctx.output == 12


def test_unknown_execution_id_is_a_clear_error() -> None:
    # run(execution_id=...) of an unknown id creates it (caller-chosen ids: tests/unit/test_start_handles.py)
    with pytest.raises(ExecutionNotFoundError, match="no-such-id"):
        arithmetic.status("no-such-id")
    with pytest.raises(ExecutionNotFoundError, match="no-such-id"):
        approval.resume("no-such-id", "x")


def test_an_execution_of_another_workflow_is_refused() -> None:
    ctx = arithmetic.run(1)
    with pytest.raises(WorkflowError, match="'arithmetic'"):
        approval.run(execution_id=ctx.execution_id)


def test_with_options_names_the_workflow() -> None:
    @workflow.with_options(name="renamed")
    async def original(ctx: WorkflowExecutionContext[None]) -> str:
        return "done"

    ctx = original.run()
    assert ctx.workflow_name == "renamed"
    assert original.status(ctx.execution_id).output == "done"
    assert ctx.events[0].name == "renamed"


def test_workflow_called_with_options_form() -> None:
    @workflow(name="called")
    async def flow(ctx: WorkflowExecutionContext[None]) -> int:
        return 1

    assert flow.name == "called"
    assert flow.run().output == 1


BAD_WORKFLOW_OPTIONS = [("name", ""), ("secret_requests", "KEY"), ("output_storage", object())]


@pytest.mark.parametrize(("option", "value"), BAD_WORKFLOW_OPTIONS)
def test_invalid_workflow_option_names_the_option(option: str, value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=f"'{option}'"):
        workflow.with_options(**{option: value})


# -- async entry points ----------------------------------------------------------------------------
def test_sync_run_inside_a_running_loop_is_a_clear_error() -> None:
    async def misuse() -> None:
        arithmetic.run(1)

    with pytest.raises(WorkflowError, match=r"arun"):
        asyncio.run(asyncio.wait_for(misuse(), 10))


def test_sync_resume_inside_a_running_loop_is_a_clear_error() -> None:
    paused = approval.run("x")

    async def misuse() -> None:
        approval.resume(paused.execution_id, "yes")

    with pytest.raises(WorkflowError, match=r"aresume"):
        asyncio.run(asyncio.wait_for(misuse(), 10))
    assert approval.status(paused.execution_id).is_paused  # nothing happened to it


def test_arun_and_aresume_in_async_code() -> None:
    async def main() -> tuple[Any, ...]:
        done = await arithmetic.arun(1)
        paused = await approval.arun("expense")
        resumed = await approval.aresume(paused.execution_id, "yes")
        continued = await arithmetic.arun(execution_id=done.execution_id)
        return done.output, paused.status, resumed.output, continued.output

    assert asyncio.run(main()) == (4, "paused", "expense: yes after 2", 4)


def test_arun_in_the_users_loop_does_not_block_other_coroutines_during_a_sync_step() -> None:
    signal = threading.Event()

    @task
    def waits_for_a_coroutine() -> bool:
        return signal.wait(timeout=5)  # only a coroutine on the same loop sets it

    @workflow
    async def waiting(ctx: WorkflowExecutionContext[None]) -> bool:
        return await waits_for_a_coroutine()

    async def sets_the_signal() -> None:
        signal.set()  # runs only if the sync step leaves the loop free

    async def main() -> WorkflowExecutionContext[None]:
        ctx, _ = await asyncio.gather(waiting.arun(), sets_the_signal())
        return ctx

    assert asyncio.run(main()).output is True


def test_sync_steps_inside_parallel_overlap() -> None:
    barrier = threading.Barrier(2, timeout=5)

    @task
    def meet(n: int) -> int:
        barrier.wait()  # BrokenBarrierError (and a failed workflow) if the steps ran one at a time
        return n

    @workflow
    async def meeting(ctx: WorkflowExecutionContext[None]) -> list[int]:
        return await parallel(meet(1), meet(2))

    ctx = meeting.run()
    assert ctx.has_succeeded, ctx.output
    assert ctx.output == [1, 2]


def test_sync_steps_of_a_map_overlap() -> None:
    barrier = threading.Barrier(3, timeout=5)

    @task
    def meet(n: int) -> int:
        barrier.wait()
        return n

    @workflow
    async def meeting(ctx: WorkflowExecutionContext[None]) -> list[int]:
        return await meet.map([1, 2, 3])

    ctx = meeting.run()
    assert ctx.output == [1, 2, 3], ctx.output


# -- failure ---------------------------------------------------------------------------------------
def test_failure_sets_status_failed_and_output_to_the_exception() -> None:
    @workflow
    async def failing(ctx: WorkflowExecutionContext[int]) -> int:
        return await charge(ctx.input)

    ctx = failing.run(30)
    assert ctx.status == "failed"
    assert ctx.has_failed and ctx.has_finished and not ctx.has_succeeded
    assert isinstance(ctx.output, ChargeDeclined)
    assert str(ctx.output) == "declined 30"
    assert types(ctx)[-2:] == ["step_failed", "execution_failed"]
    stored = failing.status(ctx.execution_id)
    assert stored.status == "failed"
    assert isinstance(stored.output, ChargeDeclined)
    assert isinstance(stored.output.__cause__, KeyError)


def test_failing_step_reaches_the_body_as_its_original_type() -> None:
    @workflow
    async def catches(ctx: WorkflowExecutionContext[None]) -> tuple[str, str, str]:
        try:
            await charge(5)
        except ChargeDeclined as error:
            assert error.__cause__ is not None
            return type(error).__name__, str(error), type(error.__cause__).__name__
        return "not", "caught", ""

    assert catches.run().output == ("ChargeDeclined", "declined 5", "KeyError")


def test_failed_step_is_replayed_as_the_same_exception() -> None:
    seen: list[tuple[type[BaseException], type[BaseException] | None, str]] = []

    @workflow
    async def catches_then_pauses(ctx: WorkflowExecutionContext[None]) -> int:
        try:
            await charge(7)
        except ChargeDeclined as error:
            seen.append((type(error), type(error.__cause__) if error.__cause__ else None, str(error)))
        return await pause("after")  # type: ignore[no-any-return]

    ctx = catches_then_pauses.run()
    assert ctx.is_paused
    done = catches_then_pauses.resume(ctx.execution_id, 1)
    assert done.output == 1
    assert seen == [(ChargeDeclined, KeyError, "declined 7")] * 2  # run, then replay from the log
    failed = [e for e in done.events if e.type is EventType.STEP_FAILED]
    assert len(failed) == 1  # the replay did not run charge again


def test_exception_in_the_body_itself_fails_the_workflow() -> None:
    @workflow
    async def raises(ctx: WorkflowExecutionContext[None]) -> None:
        raise LookupError("in the body")

    ctx = raises.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, LookupError)


# -- pause and resume ------------------------------------------------------------------------------
def test_pause_then_resume_returns_the_input_from_pause() -> None:
    ctx = approval.run("expense E-1")
    assert ctx.status == "paused"
    assert ctx.is_paused and not ctx.has_finished
    assert ctx.output is None
    assert types(ctx)[-2:] == ["step_started", "execution_paused"]
    assert approval.status(ctx.execution_id).is_paused
    resumed = approval.resume(ctx.execution_id, {"approved": True})
    assert resumed.has_succeeded
    assert resumed.output == "expense E-1: {'approved': True} after 2"
    assert resumed.execution_id == ctx.execution_id
    assert calls == {"add_one": 1}  # the step before the pause was not run again
    assert "execution_resumed" in types(resumed)


def test_run_by_id_of_a_paused_execution_continues_it_with_none() -> None:
    ctx = approval.run("x")
    again = approval.run(execution_id=ctx.execution_id)
    assert again.output == "x: None after 2"
    assert calls == {"add_one": 1}  # replayed, not run again


def test_pause_is_not_swallowed_by_except_exception() -> None:
    @workflow
    async def swallows(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            value = await pause("careful")
        except Exception:
            return "swallowed"
        return f"resumed with {value}"

    ctx = swallows.run()
    assert ctx.is_paused
    assert swallows.resume(ctx.execution_id, 9).output == "resumed with 9"


def test_pause_inside_parallel_pauses_the_workflow() -> None:
    @workflow
    async def waits(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        return await parallel(add_one(1), pause("gate"))

    ctx = waits.run()
    assert ctx.is_paused
    assert waits.resume(ctx.execution_id, "open").output == [2, "open"]
    assert calls == {"add_one": 1}


def test_several_pauses_each_get_their_input() -> None:
    @workflow
    async def twice(ctx: WorkflowExecutionContext[None]) -> tuple[Any, Any]:
        return await pause("first"), await pause("second")

    ctx = twice.run()
    ctx = twice.resume(ctx.execution_id, "a")
    assert ctx.is_paused
    ctx = twice.resume(ctx.execution_id, "b")
    assert ctx.output == ("a", "b")


def test_resume_of_an_execution_that_is_not_paused_is_a_clear_error() -> None:
    done = arithmetic.run(1)
    with pytest.raises(WorkflowError, match="not paused"):
        arithmetic.resume(done.execution_id, "x")
    ctx = approval.run("x")
    approval.resume(ctx.execution_id, "first")
    with pytest.raises(WorkflowError, match="completed, not paused"):
        approval.resume(ctx.execution_id, "second")


def test_pause_outside_a_workflow_is_an_error() -> None:
    with pytest.raises(WorkflowError, match="inside a running workflow"):
        pause("nowhere")


# -- nested calls ----------------------------------------------------------------------------------
def test_calls_made_by_an_async_step_are_steps_under_it() -> None:
    @task
    async def outer(x: int) -> int:
        return await add_one(x) + await add_one(x)

    @workflow
    async def nests(ctx: WorkflowExecutionContext[None]) -> int:
        return await outer(1)

    ctx = nests.run()
    assert ctx.output == 4
    completed = [e.step_id for e in ctx.events if e.type is EventType.STEP_COMPLETED]
    assert completed == ["1.1", "1.2", "1"]


def test_calls_made_by_a_sync_step_are_plain_calls() -> None:
    @task
    def outer(x: int) -> int:
        return add_one(x) * 10  # type: ignore[no-any-return]

    @workflow
    async def nests(ctx: WorkflowExecutionContext[None]) -> int:
        return await outer(1)

    ctx = nests.run()
    assert ctx.output == 20
    assert [e.step_id for e in ctx.events if e.type is EventType.STEP_COMPLETED] == ["1"]


# -- serialisation ---------------------------------------------------------------------------------
class Unpicklable:
    def __init__(self) -> None:
        self.lock = threading.Lock()


@task
def takes_anything(value: Any) -> str:
    counted("takes_anything")
    return "ran"


@task
def returns_unpicklable() -> Unpicklable:
    return Unpicklable()


def test_unserialisable_result_fails_naming_the_task_and_the_store_stays_usable() -> None:
    @workflow
    async def bad_result(ctx: WorkflowExecutionContext[None]) -> Any:
        return await returns_unpicklable()

    ctx = bad_result.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SerializationError)
    assert isinstance(ctx.output, TaskError)
    assert "'returns_unpicklable'" in str(ctx.output)
    assert "Unpicklable" in str(ctx.output)
    assert arithmetic.run(1).output == 4  # the store is fine


def test_unserialisable_argument_fails_naming_the_task_before_it_runs() -> None:
    @workflow
    async def bad_argument(ctx: WorkflowExecutionContext[None]) -> Any:
        return await takes_anything(Unpicklable())

    ctx = bad_argument.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SerializationError)
    assert "'takes_anything'" in str(ctx.output)
    assert "Unpicklable" in str(ctx.output)
    assert calls == {}
    assert arithmetic.run(1).output == 4


def test_unserialisable_argument_can_be_caught_as_a_task_error() -> None:
    @workflow
    async def catches(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await takes_anything(Unpicklable())
        except TaskError as error:
            return type(error).__name__
        return "no error"

    assert catches.run().output == "SerializationError"


def test_unserialisable_map_item_fails_only_its_step() -> None:
    @workflow
    async def maps(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await takes_anything.map([1, Unpicklable(), 3])
        except SerializationError as error:
            return str(error)
        return "no error"

    ctx = maps.run()
    assert "'takes_anything'" in ctx.output
    assert calls == {"takes_anything": 2}
    failed = [e.step_id for e in ctx.events if e.type is EventType.STEP_FAILED]
    assert failed == ["2"]


def test_unserialisable_workflow_input_fails_at_run() -> None:
    with pytest.raises(SerializationError, match="'arithmetic'"):
        arithmetic.run(Unpicklable())  # type: ignore[arg-type]


def test_unserialisable_workflow_output_fails_the_workflow() -> None:
    @workflow
    async def bad_output(ctx: WorkflowExecutionContext[None]) -> Any:
        return Unpicklable()

    ctx = bad_output.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SerializationError)
    assert "'bad_output'" in str(ctx.output)


# -- TaskControl in steps --------------------------------------------------------------------------
def test_task_control_progress_and_logs_land_in_the_store() -> None:
    @task(name="reports")
    def reports(tc: TaskControl, n: int) -> int:
        tc.log(f"started with {n}")
        tc.update_progress(40, "loading")
        tc.update_status("writing")
        tc.log("finished", level="debug")
        return n

    @task(name="areports")
    async def areports(tc: TaskControl) -> str:
        tc.update_progress(100)
        return tc.instance_id

    @workflow
    async def reporting(ctx: WorkflowExecutionContext[None]) -> Any:
        return await reports(3), await areports()  # type: ignore[call-arg]

    ctx = reporting.run()
    assert ctx.output[0] == 3
    assert ctx.output[1].startswith(ctx.execution_id)  # the control of a step is named after it
    step_one = [(str(e.type), e.data) for e in ctx.events if e.step_id == "1"]
    assert step_one == [
        ("step_started", {}),
        ("step_log", {"level": "info", "message": "started with 3"}),
        ("step_progress", {"progress": 40.0, "status": "loading"}),
        ("step_progress", {"progress": 40.0, "status": "writing"}),
        ("step_log", {"level": "debug", "message": "finished"}),
        ("step_completed", {}),
    ]
    progress = [e for e in ctx.events if e.step_id == "2" and e.type is EventType.STEP_PROGRESS]
    assert [(e.name, e.data) for e in progress] == [("areports", {"progress": 100.0})]


# -- output storage --------------------------------------------------------------------------------
class DictStorage:
    """A custom output storage: values in a dict, the event log holds only ``ref:<reference>``."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.retrieved: list[str] = []

    def store(self, reference: str, value: Any) -> str:
        self.values[reference] = value
        return f"ref:{reference}"

    def retrieve(self, reference: Any) -> Any:
        self.retrieved.append(reference)
        return self.values[reference.removeprefix("ref:")]


@dataclass(frozen=True)
class Report:
    title: str
    rows: list[int]


def test_custom_output_storage_keeps_the_value_and_replay_retrieves_it() -> None:
    storage = DictStorage()

    @task(output_storage=storage)
    def build(title: str) -> Report:
        counted("build")
        return Report(title, [1, 2, 3])

    @workflow
    async def reporting(ctx: WorkflowExecutionContext[None]) -> str:
        report = await build("q1")
        answer = await pause("review")
        return f"{report.title} {sum(report.rows)} {answer}"

    ctx = reporting.run()
    completed = next(e for e in ctx.events if e.type is EventType.STEP_COMPLETED)
    assert completed.value == f"ref:{ctx.execution_id}/1"  # the log holds the reference only
    assert storage.values == {f"{ctx.execution_id}/1": Report("q1", [1, 2, 3])}
    assert storage.retrieved == []
    done = reporting.resume(ctx.execution_id, "ok")
    assert done.output == "q1 6 ok"
    assert storage.retrieved == [f"ref:{ctx.execution_id}/1"]  # the replay read it back
    assert calls == {"build": 1}


def test_local_file_output_storage_round_trips_through_a_file(tmp_path: Path) -> None:
    storage = LocalFileOutputStorage(tmp_path / "outputs")

    @task(output_storage=storage)
    def big() -> dict[str, Any]:
        counted("big")
        return {"blob": "x" * 10_000, "report": Report("files", [4])}

    @workflow
    async def keeps(ctx: WorkflowExecutionContext[None]) -> Any:
        value = await big()
        await pause("then")
        return value

    ctx = keeps.run()
    reference = next(e for e in ctx.events if e.type is EventType.STEP_COMPLETED).value
    assert isinstance(reference, str) and reference.startswith("file:")
    assert len(list((tmp_path / "outputs").iterdir())) == 1
    done = keeps.resume(ctx.execution_id, None)
    assert done.output == {"blob": "x" * 10_000, "report": Report("files", [4])}
    assert calls == {"big": 1}


def test_inline_output_storage_keeps_the_value_in_the_event_log() -> None:
    @task(output_storage=InlineOutputStorage())
    def small() -> Report:
        return Report("inline", [])

    @workflow
    async def keeps(ctx: WorkflowExecutionContext[None]) -> Report:
        value = await small()
        await pause("then")
        return value

    ctx = keeps.run()
    assert next(e for e in ctx.events if e.type is EventType.STEP_COMPLETED).value == Report("inline", [])
    assert keeps.resume(ctx.execution_id, None).output == Report("inline", [])


def test_workflow_output_storage_keeps_the_output() -> None:
    storage = DictStorage()

    @workflow.with_options(output_storage=storage)
    async def stored(ctx: WorkflowExecutionContext[None]) -> Report:
        return Report("out", [9])

    ctx = stored.run()
    assert ctx.output == Report("out", [9])
    assert list(storage.values.values()) == [Report("out", [9])]
    assert stored.status(ctx.execution_id).output == Report("out", [9])
    assert storage.retrieved == [f"ref:{ctx.execution_id}/output"]


# -- durability and cancellation -------------------------------------------------------------------
def test_a_steps_outcome_is_in_the_store_before_the_next_step_starts() -> None:
    @task
    def reads_the_log(execution_id: str) -> list[tuple[str, str | None]]:
        return [(str(e.type), e.step_id) for e in default_store().load_events(execution_id)]

    @workflow
    async def durable(ctx: WorkflowExecutionContext[None]) -> Any:
        await add_one(1)
        return await reads_the_log(ctx.execution_id)

    seen = durable.run().output
    assert ("step_started", "1") in seen
    assert ("step_completed", "1") in seen


def test_a_cancelled_execution_is_not_run() -> None:
    execution_id = arithmetic.create(1)
    record_cancel(default_store(), execution_id)
    ctx = arithmetic.run(execution_id=execution_id)
    assert ctx.status == "cancelled"
    assert ctx.is_cancelled and ctx.has_finished and not ctx.has_succeeded
    assert calls == {}


# -- timing of durable writes ----------------------------------------------------------------------
def test_a_long_step_shows_as_started_while_it_runs() -> None:
    seen_started = threading.Event()
    finished = threading.Event()

    @task
    def long_step() -> None:
        seen_started.wait(timeout=10)

    @workflow
    async def long(ctx: WorkflowExecutionContext[None]) -> None:
        await long_step()

    execution_id = long.create()

    def drive() -> None:
        long.run(execution_id=execution_id)
        finished.set()

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(e.type is EventType.STEP_STARTED for e in long.status(execution_id).events):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the running step's start never reached the store")
        assert not finished.is_set()
    finally:
        seen_started.set()
        thread.join(10)
    assert long.status(execution_id).has_succeeded


@workflow
async def deadline_flow(ctx: ExecutionContext[float]) -> str:
    try:
        decision = await pause("sign-off", timeout=ctx.input)
    except TimeoutError:
        return "timed out"
    return f"signed: {decision}"


def test_a_pause_with_a_timeout_stays_paused_until_its_deadline_then_times_out() -> None:
    ctx = deadline_flow.run(0.3)
    assert ctx.is_paused
    paused = next(e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED)
    deadline = paused.data["deadline"]
    assert deadline_flow.status(ctx.execution_id).is_paused  # before the deadline: still paused
    while time.time() < deadline:  # waiting for wall-clock time to pass is the behaviour under test
        time.sleep(0.02)
    after = deadline_flow.run(execution_id=ctx.execution_id)
    assert after.has_succeeded
    assert after.output == "timed out"
    failed = next(e for e in after.events if e.type is EventType.STEP_FAILED)
    assert isinstance(failed.value, TaskTimeoutError)
    assert deadline_flow.run(execution_id=ctx.execution_id).output == "timed out"  # replay agrees


def test_a_pause_resumed_before_its_deadline_returns_the_input() -> None:
    ctx = deadline_flow.run(60)
    assert deadline_flow.resume(ctx.execution_id, "ana").output == "signed: ana"


def test_a_pause_timeout_must_be_seconds_or_a_timedelta() -> None:
    @workflow
    async def bad(ctx: ExecutionContext[None]) -> None:
        await pause("x", timeout=-1)

    ctx = bad.run()
    assert ctx.has_failed
    assert "pause('x'): timeout must be seconds >= 0" in str(ctx.output)


fenced_calls: list[str] = []


@task
def lose_the_lease(execution_id: str) -> str:
    default_store().release_execution(execution_id, "worker-1", requeue=False)  # another worker's claim
    return "lost"


@task
def after_the_loss() -> None:
    fenced_calls.append("ran")


@workflow
async def fenced(ctx: ExecutionContext[None]) -> str:
    await lose_the_lease(ctx.execution_id)
    await after_the_loss()
    return "done"


def test_a_worker_that_lost_its_lease_writes_nothing_more_and_stops() -> None:
    fenced_calls.clear()
    execution_id = fenced.create(status="queued")
    store = default_store()
    assert store.claim_next_execution("worker-1", 30, ["fenced"]) is not None
    ctx = asyncio.run(fenced.arun(execution_id=execution_id, lease_owner="worker-1"))
    assert ctx.status == "running"  # it belongs to whoever holds the lease now
    assert [e.type for e in store.load_events(execution_id)] == [EventType.EXECUTION_STARTED]
    assert fenced_calls == []
    assert store.get_execution(execution_id).status == "running"


@workflow
async def leased(ctx: ExecutionContext[int]) -> int:
    return int(await add_one(ctx.input))


def test_a_worker_holding_its_lease_writes_as_usual() -> None:
    execution_id = leased.create(41, status="queued")
    store = default_store()
    assert store.claim_next_execution("worker-2", 30, ["leased"]) is not None
    ctx = asyncio.run(leased.arun(execution_id=execution_id, lease_owner="worker-2"))
    assert ctx.has_succeeded and ctx.output == 42
    assert store.get_execution(execution_id).status == "completed"


def test_cancel_ends_a_paused_execution_and_refuses_a_finished_one() -> None:
    ctx = deadline_flow.run(60)
    cancelled = deadline_flow.cancel(ctx.execution_id)
    assert cancelled.is_cancelled and cancelled.has_finished
    assert deadline_flow.run(execution_id=ctx.execution_id).is_cancelled  # nothing runs any more
    with pytest.raises(ExecutionStateError, match="already cancelled"):
        deadline_flow.cancel(ctx.execution_id)
