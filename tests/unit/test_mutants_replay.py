"""The step cursor's details that no other test pinned (issue 14, mutation testing of taskloom/replay.py).

Where a sync step body runs, what each event of a step says (its id, its task, its value), the messages of
replay mismatches and of values that cannot be stored or decoded, a resume's events, the timed-out pause
replayed, retries, fallbacks and rollbacks in the log, the start watchdog, and store faults under a step.
Every test runs on both stores (``tests/unit/conftest.py``); the two that break a store on purpose use a
SQLite file of their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import pickle
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for

from taskloom import (
    ExecutionContext,
    NonDeterminismError,
    SerializationError,
    TaskControl,
    UndecodableValueError,
    task,
    workflow,
)
from taskloom.errors import StoreError
from taskloom.events import Event, EventType, NewEvent
from taskloom.executions import record_cancel
from taskloom.outputs import LocalFileOutputStorage
from taskloom.replay import START_FLUSH_DELAY, index_steps
from taskloom.store import default_store
from taskloom.store.sqlite import SQLiteStore
from taskloom.tasks import choice, now, parallel, pause, sleep

#: the longest any wait of these tests may take before it counts as a hang
WAIT = 20.0

seen: dict[str, Any] = {}
gate = threading.Event()
entered = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    seen.clear()
    gate.clear()
    entered.clear()
    attempts.clear()
    yield
    gate.set()


def events_of(execution_id: str, store: Any = None) -> list[Event]:
    return (store or default_store()).load_events(execution_id)


def step_events(execution_id: str) -> list[tuple[EventType, str | None, str | None]]:
    return [(e.type, e.step_id, e.name) for e in events_of(execution_id) if e.type.startswith("step_")]


# -- where a sync step's body runs -------------------------------------------------------------------
@task
def where() -> str:
    return threading.current_thread().name


@workflow
async def sequential_where(ctx: ExecutionContext[None]) -> list[str]:
    return [threading.current_thread().name, await where()]


@workflow
async def parallel_where(ctx: ExecutionContext[None]) -> list[Any]:
    return [threading.current_thread().name, await parallel(where(), where())]


@workflow
async def timed_where(ctx: ExecutionContext[None]) -> list[str]:
    return [threading.current_thread().name, await where.with_options(timeout=30)()]


@workflow
async def crowded_where(ctx: ExecutionContext[None]) -> list[str]:
    other = asyncio.ensure_future(asyncio.Event().wait())  # another asyncio task alive on the loop
    try:
        return [threading.current_thread().name, await where()]
    finally:
        other.cancel()


def test_a_sync_step_of_a_sequential_workflow_runs_inline_on_the_workflows_thread() -> None:
    body, step = sequential_where.run().output
    assert step == body


def test_sync_steps_in_parallel_run_on_the_workflows_step_threads() -> None:
    body, steps = parallel_where.run().output
    assert all(name != body and name.startswith("taskloom-parallel_where") for name in steps), steps


def test_a_sync_step_with_a_timeout_runs_on_a_step_thread() -> None:
    body, step = timed_where.run().output
    assert step != body, step  # an attempt thread of its own, so that the timeout can give up on it


def test_a_sync_step_runs_on_a_step_thread_while_another_asyncio_task_is_alive() -> None:
    body, step = crowded_where.run().output
    assert step != body and step.startswith("taskloom-crowded_where"), step


# -- index_steps -------------------------------------------------------------------------------------
def _event(seq: int, kind: EventType, step_id: str, name: str, value: bytes | None = None, **data: Any) -> Event:
    return Event(seq, "e", kind, dt.datetime.now(dt.UTC), step_id, name, value, data)


def test_a_second_start_of_a_step_does_not_replace_what_the_first_recorded() -> None:
    steps = index_steps(
        [
            _event(1, EventType.STEP_STARTED, "1", "sleep", until=1.0),
            _event(2, EventType.STEP_STARTED, "1", "other", until=2.0),
        ]
    )
    assert (steps["1"].name, steps["1"].started) == ("sleep", {"until": 1.0})


def test_an_outcome_without_a_start_is_indexed_under_its_own_task_name() -> None:
    steps = index_steps([_event(1, EventType.STEP_COMPLETED, "1", "charge", b"v", kept=True)])
    step = steps["1"]
    assert (step.name, step.started, step.outcome, step.value, step.data) == (
        "charge",
        {},
        EventType.STEP_COMPLETED,
        b"v",
        {"kept": True},
    )


# -- values that cannot be decoded, and changed code ---------------------------------------------------
GARBAGE = b"\x80\x05not a pickle"


def _cause_of_garbage() -> str:
    try:
        pickle.loads(GARBAGE)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    raise AssertionError("the garbage unpickled")  # pragma: no cover


@task
def charge() -> str:
    return "charged"


@workflow
async def charges(ctx: ExecutionContext[None]) -> str:
    return await charge()


@workflow
async def swallows(ctx: ExecutionContext[None]) -> str:
    try:
        return await charge()
    except Exception:  # user code that swallows everything cannot hide a replay mismatch
        return "swallowed"


@workflow
async def reads_the_clock(ctx: ExecutionContext[None]) -> str:
    return str(await now())


@workflow
async def waits_for_approval(ctx: ExecutionContext[None]) -> Any:
    return await pause("approve")


RECORDED = {
    "a completed task": (charges, "charge", EventType.STEP_COMPLETED),
    "a failed task": (charges, "charge", EventType.STEP_FAILED),
    "a completed value step": (reads_the_clock, "now", EventType.STEP_COMPLETED),
    "a resumed pause": (waits_for_approval, "pause", EventType.STEP_COMPLETED),
    "a timed-out pause": (waits_for_approval, "pause", EventType.STEP_FAILED),
    "a swallowed task": (swallows, "charge", EventType.STEP_COMPLETED),
}


@pytest.mark.parametrize("case", list(RECORDED))
def test_a_recorded_value_that_does_not_decode_names_its_step_and_leaves_the_execution_as_it_was(case: str) -> None:
    flow, name, outcome = RECORDED[case]
    store = default_store()
    execution_id = flow.create()
    store.append_events(
        execution_id,
        [NewEvent(EventType.STEP_STARTED, "1", name), NewEvent(outcome, "1", name, GARBAGE)],
    )
    before = events_of(execution_id)
    with pytest.raises(UndecodableValueError) as caught:
        flow.run(execution_id=execution_id)
    assert str(caught.value) == (
        f"execution {execution_id}: the recorded value of step 1 ({name!r}) cannot be decoded by this code "
        f"({_cause_of_garbage()}); a class it needs was renamed, moved or removed since it was recorded. Run "
        "the execution with code that has that class; it was left as it was."
    )
    assert events_of(execution_id) == before


@task
def first_version() -> str:
    return "v1"


@task
def second_version() -> str:
    return "v2"


async def _deployed_first(ctx: ExecutionContext[None]) -> Any:
    await first_version()
    return await pause("approve")


async def _deployed_second(ctx: ExecutionContext[None]) -> Any:
    await second_version()
    return await pause("approve")


def test_changed_code_is_a_non_determinism_error_saying_what_to_do() -> None:
    before = workflow.with_options(name="redeployed")(_deployed_first)
    after = workflow.with_options(name="redeployed")(_deployed_second)
    ctx = before.run()
    with pytest.raises(NonDeterminismError) as caught:
        after.resume(ctx.execution_id, "ok")
    assert str(caught.value) == (
        f"execution {ctx.execution_id}: step 1 was recorded as 'first_version' but the workflow now calls "
        "'second_version' there. The workflow code changed since this execution started; run it with the code "
        "it started with, or start a new execution."
    )


# -- pauses: a resume's events, a resume input that does not decode, a deadline -------------------------
def test_a_resume_records_which_pause_it_answers_and_its_input() -> None:
    ctx = waits_for_approval.run()
    done = waits_for_approval.resume(ctx.execution_id, {"by": "ana"})
    assert done.output == {"by": "ana"}
    resumed = [e for e in events_of(ctx.execution_id) if e.type is EventType.EXECUTION_RESUMED]
    completed = [e for e in events_of(ctx.execution_id) if e.type is EventType.STEP_COMPLETED]
    assert [(e.step_id, e.name, e.value) for e in resumed] == [("1", "approve", {"by": "ana"})]
    assert [(e.step_id, e.name, e.value) for e in completed] == [("1", "pause", {"by": "ana"})]


def _refuse() -> None:
    raise ValueError("this object refuses to be rebuilt")


class Unloadable:
    """Pickles, but cannot be unpickled (its rebuild raises)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def test_a_resume_input_that_does_not_decode_names_the_pause_and_leaves_the_execution_paused() -> None:
    ctx = waits_for_approval.run()
    before = events_of(ctx.execution_id)
    with pytest.raises(UndecodableValueError, match=r"the recorded value of step 1 \('pause'\) cannot be decoded"):
        waits_for_approval.resume(ctx.execution_id, Unloadable())
    assert events_of(ctx.execution_id) == before
    assert waits_for_approval.status(ctx.execution_id).status == "paused"


@workflow
async def approval_or_timeout(ctx: ExecutionContext[None]) -> list[str]:
    try:
        await pause("quick", timeout=0.0)
        first = "resumed"
    except TimeoutError as error:
        first = f"{type(error).__name__}: {error}"
    return [first, str(await pause("second"))]


def test_a_pause_past_its_deadline_fails_with_a_recorded_timeout_that_replays_the_same() -> None:
    ctx = approval_or_timeout.run()
    assert ctx.status == "paused"
    failed = [(e.step_id, e.name) for e in events_of(ctx.execution_id) if e.type is EventType.STEP_FAILED]
    assert failed == [("1", "pause")]
    done = approval_or_timeout.resume(ctx.execution_id, "later")  # replays the failed pause first
    assert done.output == [
        "TaskTimeoutError: pause 'quick' (step 1) was not resumed before its deadline",
        "later",
    ]


# -- what a step's events say --------------------------------------------------------------------------
def _unstorable() -> None:  # a module-level function pickles; a lambda does not
    pass


@task
def takes(*args: Any, **kwargs: Any) -> int:
    return len(args) + len(kwargs)


@workflow
async def bad_argument(ctx: ExecutionContext[None]) -> list[str]:
    try:
        await takes(1, lambda: None)
    except SerializationError as error:
        first = str(error)
    return [first, str(await pause("look"))]


def test_an_unstorable_argument_fails_the_step_naming_the_argument_and_replays_the_same_failure() -> None:
    ctx = bad_argument.run()
    assert step_events(ctx.execution_id) == [
        (EventType.STEP_STARTED, "1", "takes"),
        (EventType.STEP_FAILED, "1", "takes"),
        (EventType.STEP_STARTED, "2", "pause"),
    ]
    done = bad_argument.resume(ctx.execution_id, "seen")
    first, second = done.output
    assert first.startswith("task 'takes' argument 2: cannot store a value of type function"), first
    assert second == "seen"


@workflow
async def argument_shapes(ctx: ExecutionContext[None]) -> list[int]:
    return [await takes(), await takes(x=1), await takes(2, y=3)]


def test_a_steps_start_records_its_arguments_and_a_call_without_any_records_none() -> None:
    ctx = argument_shapes.run()
    starts = [e for e in events_of(ctx.execution_id) if e.type is EventType.STEP_STARTED]
    assert [(e.step_id, e.name) for e in starts] == [("1", "takes"), ("2", "takes"), ("3", "takes")]
    assert starts[0].raw_value is None
    assert [e.value for e in starts[1:]] == [((), {"x": 1}), ((2,), {"y": 3})]


@workflow
async def picks(ctx: ExecutionContext[None]) -> str:
    try:
        await choice([lambda: None])
    except SerializationError as error:
        return str(error)
    return "stored"


def test_a_value_step_whose_value_cannot_be_stored_says_which_built_in_it_was() -> None:
    assert picks.run().output.startswith("built-in 'choice': cannot store a value of type function")


@workflow
async def clock(ctx: ExecutionContext[None]) -> dt.datetime:
    return await now()


def test_a_value_step_records_its_start_and_its_value_under_its_step_id() -> None:
    ctx = clock.run()
    assert step_events(ctx.execution_id) == [
        (EventType.STEP_STARTED, "1", "now"),
        (EventType.STEP_COMPLETED, "1", "now"),
    ]
    assert clock.run(execution_id=ctx.execution_id).output == ctx.output


class Unstorable(Exception):
    def __init__(self) -> None:
        super().__init__("cannot be stored")
        self.callback = lambda: None


@task
def raises_unstorable() -> None:
    raise Unstorable()


@task
def raises_value_error() -> None:
    raise ValueError("boom")


@workflow
async def failures(ctx: ExecutionContext[None]) -> list[str]:
    texts = []
    for step in (raises_value_error, raises_unstorable):
        try:
            await step()
        except Exception as error:
            texts.append(f"{type(error).__name__}: {error}")
    texts.append(str(await pause("look")))
    return texts


def test_a_failed_step_records_its_task_and_an_unstorable_error_comes_back_naming_the_step() -> None:
    ctx = failures.run()
    failed = [(e.step_id, e.name) for e in events_of(ctx.execution_id) if e.type is EventType.STEP_FAILED]
    assert failed == [("1", "raises_value_error"), ("2", "raises_unstorable")]
    done = failures.resume(ctx.execution_id, "seen")
    assert done.output[0] == "ValueError: boom"
    assert done.output[1].startswith("TaskError: task 'raises_unstorable' (step 2): Unstorable: cannot be stored")
    assert done.output[2] == "seen"


# -- output storage ------------------------------------------------------------------------------------
def _plain_result() -> dict[str, int]:
    return {"rows": 3}


class UnpicklableReference:
    """An output storage whose references cannot be stored."""

    def store(self, reference: str, value: Any) -> Any:
        return lambda: value

    def retrieve(self, reference: Any) -> Any:  # pragma: no cover - never reached
        return reference()


def test_a_result_kept_in_output_storage_is_marked_with_the_storage_in_the_log(tmp_path: Path) -> None:
    stored = task.with_options(name="big_result", output_storage=LocalFileOutputStorage(tmp_path))(_plain_result)

    @workflow.with_options(name="keeps_big")
    async def keeps_big(ctx: ExecutionContext[None]) -> dict[str, int]:
        return await stored()  # type: ignore[no-any-return]

    ctx = keeps_big.run()
    (done,) = [e for e in events_of(ctx.execution_id) if e.type is EventType.STEP_COMPLETED]
    assert done.data == {"output_storage": "LocalFileOutputStorage"}
    assert keeps_big.run(execution_id=ctx.execution_id).output == {"rows": 3}


def test_a_result_recorded_before_output_storage_was_configured_replays_as_recorded(tmp_path: Path) -> None:
    plain = task.with_options(name="grown_result")(_plain_result)
    stored = task.with_options(name="grown_result", output_storage=LocalFileOutputStorage(tmp_path))(_plain_result)
    version = {"task": plain}

    @workflow.with_options(name="grows")
    async def grows(ctx: ExecutionContext[None]) -> Any:
        result = await version["task"]()
        return [result, await pause("look")]

    ctx = grows.run()
    version["task"] = stored  # the next deploy keeps results in files
    assert grows.resume(ctx.execution_id, "ok").output == [{"rows": 3}, "ok"]


def test_an_output_storage_reference_that_cannot_be_stored_names_the_step() -> None:
    odd = task.with_options(name="odd_result", output_storage=UnpicklableReference())(_plain_result)

    @workflow.with_options(name="odd")
    async def odd_flow(ctx: ExecutionContext[None]) -> str:
        try:
            await odd()
        except SerializationError as error:
            return str(error)
        return "stored"

    assert odd_flow.run().output.startswith("task 'odd_result' result (step 1): cannot store a value of type function")


# -- retries, fallbacks, rollbacks and a step's own reports in the log -----------------------------------
attempts: list[int] = []


@task.with_options(retry_max_attempts=2, retry_delay=0.01, retry_backoff=1)
def flaky() -> str:
    attempts.append(1)
    if len(attempts) < 2:
        raise ValueError("not yet")
    return "ok"


def _fallback() -> str:
    return "fell back"


def _rollback() -> None:
    seen["rolled back"] = True


@task.with_options(fallback=_fallback)
def falls_back() -> str:
    raise KeyError("gone")


@task.with_options(rollback=_rollback)
def rolls_back() -> str:
    raise ValueError("undo")


@workflow
async def handled(ctx: ExecutionContext[None]) -> list[str]:
    results = [await flaky(), await falls_back()]
    try:
        await rolls_back()
    except ValueError as error:
        results.append(str(error))
    return results


def test_retries_fallbacks_and_rollbacks_are_recorded_under_their_step_with_the_error() -> None:
    ctx = handled.run()
    assert ctx.output == ["ok", "fell back", "undo"]
    kinds = (EventType.STEP_RETRYING, EventType.STEP_FALLBACK, EventType.STEP_ROLLBACK)
    recorded = [(e.type, e.step_id, e.name, e.data) for e in events_of(ctx.execution_id) if e.type in kinds]
    assert recorded == [
        (EventType.STEP_RETRYING, "1", "flaky", {"attempt": 1, "delay": 0.01, "error": "ValueError: not yet"}),
        (EventType.STEP_FALLBACK, "2", "falls_back", {"error": "KeyError: 'gone'"}),
        (EventType.STEP_ROLLBACK, "3", "rolls_back", {"error": "ValueError: undo"}),
    ]


@task
def reports(control: TaskControl) -> str:
    control.log("half way", "warning")
    control.update_status("busy")
    return "reported"


@workflow
async def reporting(ctx: ExecutionContext[None]) -> str:
    return await reports()


def test_a_steps_logs_and_status_are_recorded_under_its_step_and_task() -> None:
    ctx = reporting.run()
    kinds = (EventType.STEP_LOG, EventType.STEP_PROGRESS)
    recorded = [(e.type, e.step_id, e.name, e.data) for e in events_of(ctx.execution_id) if e.type in kinds]
    assert recorded == [
        (EventType.STEP_LOG, "1", "reports", {"level": "warning", "message": "half way"}),
        (EventType.STEP_PROGRESS, "1", "reports", {"progress": 0.0, "status": "busy"}),
    ]


# -- the start watchdog ----------------------------------------------------------------------------------
@task
def long_step() -> str:
    entered.set()
    assert gate.wait(WAIT), "the test never opened the gate"
    return "long"


@workflow
async def long_running(ctx: ExecutionContext[None]) -> str:
    return await long_step()


def test_a_long_steps_start_is_written_while_it_runs_by_a_daemon_watchdog_thread() -> None:
    execution_id = long_running.create()
    driver = threading.Thread(target=lambda: seen.update(ctx=long_running.run(execution_id=execution_id)))
    driver.start()
    try:
        assert entered.wait(WAIT)
        wait_for(  # a hundred times START_FLUSH_DELAY
            lambda: [e for e in events_of(execution_id) if e.type is EventType.STEP_STARTED],
            timeout=100 * START_FLUSH_DELAY,
            what="the start of the long step",
        )
        watchdogs = [t for t in threading.enumerate() if t.name == "taskloom-start-watchdog"]
        assert watchdogs and all(t.daemon for t in watchdogs)
    finally:
        gate.set()
        driver.join(WAIT)
    assert seen["ctx"].output == "long"
    assert step_events(execution_id) == [
        (EventType.STEP_STARTED, "1", "long_step"),
        (EventType.STEP_COMPLETED, "1", "long_step"),
    ]


# -- map: every start in one write ----------------------------------------------------------------------
@task
def square(n: Any) -> int:
    return int(n) * int(n)


@workflow
async def squares(ctx: ExecutionContext[None]) -> Any:
    try:
        return await square.map([1, lambda: 2, 3])
    except SerializationError:
        return "failed"


def test_a_map_writes_the_starts_of_every_storable_item_before_any_item_runs() -> None:
    ctx = squares.run()
    kinds = [(e.type, e.step_id) for e in events_of(ctx.execution_id) if e.step_id is not None]
    assert kinds[:2] == [(EventType.STEP_STARTED, "1"), (EventType.STEP_STARTED, "3")]


# -- crashes, cancels and store faults under a step ----------------------------------------------------
class Crash(BaseException):
    """Stands in for Ctrl-C in the middle of a step."""


@task
def interrupted() -> str:
    raise Crash()


@workflow
async def interrupting(ctx: ExecutionContext[None]) -> str:
    return await interrupted()


def test_an_interrupted_run_is_put_back_in_the_queue_without_counting_a_crash() -> None:
    execution_id = interrupting.create()
    with pytest.raises(Crash):
        interrupting.run(execution_id=execution_id)
    record = default_store().get_execution(execution_id)
    assert record is not None and (record.status, record.crashes) == ("queued", 0)


@workflow
async def two_long_steps(ctx: ExecutionContext[None]) -> list[str]:
    return [await long_step(), await charge()]


def test_a_step_in_flight_when_the_execution_is_cancelled_records_no_outcome() -> None:
    execution_id = two_long_steps.create()
    driver = threading.Thread(target=lambda: seen.update(ctx=two_long_steps.run(execution_id=execution_id)))
    driver.start()
    try:
        assert entered.wait(WAIT)
        record_cancel(default_store(), execution_id)
    finally:
        gate.set()
        driver.join(WAIT)
    assert seen["ctx"].status == "cancelled"
    assert [e for e in events_of(execution_id) if e.type is EventType.STEP_COMPLETED] == []


breaks: dict[str, str] = {}


@task
def takes_the_events_table_away() -> str:
    with sqlite3.connect(breaks["path"]) as conn:
        conn.execute("ALTER TABLE events RENAME TO events_away")
    return "done"


@workflow
async def breaking(ctx: ExecutionContext[None]) -> str:
    return await takes_the_events_table_away()


def test_a_store_that_fails_under_a_step_stops_the_run_with_the_store_error(tmp_path: Path) -> None:
    path = tmp_path / "own.db"
    breaks["path"] = str(path)
    store = SQLiteStore(f"sqlite:///{path}", retry_seconds=0.0)
    try:
        with pytest.raises(StoreError, match=re.escape(str(path))):
            asyncio.run(breaking.arun(store=store))
    finally:
        store.close()


@task
def cancels_then_hides_a_column() -> str:
    execution_id = breaks["execution"]
    record_cancel(breaks_store[0], execution_id)  # the next write is refused: the execution is cancelled
    with sqlite3.connect(breaks["path"]) as conn:  # and reading why fails
        conn.execute("ALTER TABLE executions RENAME COLUMN target TO target_away")
    return "done"


breaks_store: list[SQLiteStore] = []


@workflow
async def cancelled_then_broken(ctx: ExecutionContext[None]) -> str:
    breaks["execution"] = ctx.execution_id
    return await cancels_then_hides_a_column()


def test_a_store_that_fails_while_a_refused_write_looks_for_the_reason_stops_the_run_with_the_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "own.db"
    breaks["path"] = str(path)
    store = SQLiteStore(f"sqlite:///{path}", retry_seconds=0.0)
    breaks_store[:] = [store]
    try:
        with pytest.raises(StoreError, match="target"):
            asyncio.run(cancelled_then_broken.arun(store=store))
    finally:
        store.close()


@workflow
async def naps(ctx: ExecutionContext[None]) -> None:
    await sleep(0)


def test_a_completed_sleep_is_recorded_like_a_step_that_returned_none() -> None:
    ctx = naps.run()
    (done,) = [e for e in events_of(ctx.execution_id) if e.type is EventType.STEP_COMPLETED]
    assert (done.step_id, done.name) == ("1", "sleep")
    view = done.to_json()
    assert "value" in view and view["value"] is None


@task.with_options(retry_max_attempts=1, retry_delay=0.01)
async def async_flaky() -> str:
    attempts.append(1)
    if len(attempts) < 2:
        raise ValueError("async not yet")
    return "async ok"


@workflow
async def async_retried(ctx: ExecutionContext[None]) -> str:
    return await async_flaky()


def test_an_async_steps_retries_are_recorded_too() -> None:
    ctx = async_retried.run()
    assert ctx.output == "async ok"
    retries = [(e.step_id, e.name, e.data) for e in events_of(ctx.execution_id) if e.type is EventType.STEP_RETRYING]
    assert retries == [("1", "async_flaky", {"attempt": 1, "delay": 0.01, "error": "ValueError: async not yet"})]


@workflow
async def resumed_into_a_failing_store(ctx: ExecutionContext[None]) -> str:
    approval = await pause("approve")
    await takes_the_events_table_away()
    return str(approval)


def test_a_store_failure_on_the_first_write_after_a_resume_stops_the_run_with_the_store_error(tmp_path: Path) -> None:
    path = tmp_path / "own.db"
    breaks["path"] = str(path)
    store = SQLiteStore(f"sqlite:///{path}", retry_seconds=0.0)
    try:
        paused = asyncio.run(resumed_into_a_failing_store.arun(store=store))
        assert paused.status == "paused"
        with pytest.raises(StoreError, match=re.escape(str(path))):
            asyncio.run(resumed_into_a_failing_store.aresume(paused.execution_id, "yes", store=store))
    finally:
        store.close()
