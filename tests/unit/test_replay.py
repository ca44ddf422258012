"""Replay: position-based step ids, completed steps never run again, O(1) lookups, non-determinism.

A crash is simulated in-process by a step raising :class:`Crash`, a ``BaseException`` that no
``except Exception`` stops: it unwinds the workflow like a killed process would, leaving the execution
``running`` with whatever the store had by then. (``tests/integration/test_crash_recovery.py`` does it
with real processes and SIGKILL.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskloom import NonDeterminismError, WorkflowExecutionContext, task, workflow
from taskloom.events import Event, EventType
from taskloom.replay import index_steps
from taskloom.store import Store, default_store
from taskloom.tasks import now, parallel, pause


class Crash(BaseException):
    """Stands in for the process dying mid-step."""


runs: list[str] = []
crash_on: set[str] = set()
factor = {"value": 1}


@pytest.fixture(autouse=True)
def reset_state() -> None:
    runs.clear()
    crash_on.clear()
    factor["value"] = 1


@task
def step(label: str) -> str:
    if label in crash_on:
        crash_on.discard(label)
        raise Crash(label)
    runs.append(label)
    return f"{label} done"


@task
async def astep(label: str) -> str:
    return await step(label)  # type: ignore[no-any-return]  # step "<n>.1" under this one


@workflow
async def six_steps(ctx: WorkflowExecutionContext[None]) -> list[str]:
    return [await step(f"s{n}") for n in range(1, 7)]


def completed_steps(ctx: WorkflowExecutionContext[Any]) -> list[str | None]:
    return [e.step_id for e in ctx.events if e.type is EventType.STEP_COMPLETED]


def test_rerun_after_a_crash_skips_completed_steps() -> None:
    execution_id = six_steps.create()
    crash_on.add("s4")
    with pytest.raises(Crash):
        six_steps.run(execution_id=execution_id)
    assert runs == ["s1", "s2", "s3"]
    assert six_steps.status(execution_id).status == "queued"  # interrupted: put back for the next owner
    ctx = six_steps.run(execution_id=execution_id)
    assert ctx.has_succeeded
    assert ctx.output == [f"s{n} done" for n in range(1, 7)]
    assert runs == ["s1", "s2", "s3", "s4", "s5", "s6"]  # s1-s3 were replayed from the log
    assert completed_steps(ctx) == ["1", "2", "3", "4", "5", "6"]


def test_rerun_of_a_crashed_map_runs_only_the_unfinished_items() -> None:
    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await step.map(["a", "b", "c", "d"])

    execution_id = mapped.create()
    crash_on.add("c")
    with pytest.raises(Crash):
        mapped.run(execution_id=execution_id)
    assert sorted(runs) == ["a", "b", "d"]  # the other items finished and were recorded
    runs.clear()
    ctx = mapped.run(execution_id=execution_id)
    assert ctx.output == ["a done", "b done", "c done", "d done"]
    assert runs == ["c"]


def test_rerun_of_a_crashed_parallel_runs_only_the_unfinished_branches() -> None:
    @workflow
    async def branches(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await parallel(step("x"), astep("y"), step("z"))

    execution_id = branches.create()
    crash_on.add("y")
    with pytest.raises(Crash):
        branches.run(execution_id=execution_id)
    assert sorted(runs) == ["x", "z"]
    runs.clear()
    assert branches.run(execution_id=execution_id).output == ["x done", "y done", "z done"]
    assert runs == ["y"]


def test_a_completed_async_step_is_not_entered_again() -> None:
    @task
    async def outer() -> str:
        return await step("inner-1") + " / " + await step("inner-2")

    @workflow
    async def nested(ctx: WorkflowExecutionContext[None]) -> str:
        first = await outer()
        await step("last")
        return first

    execution_id = nested.create()
    crash_on.add("last")
    with pytest.raises(Crash):
        nested.run(execution_id=execution_id)
    runs.clear()
    assert nested.run(execution_id=execution_id).output == "inner-1 done / inner-2 done"
    assert runs == ["last"]


def test_replay_returns_recorded_values_even_if_the_arguments_would_differ() -> None:
    @task
    def scaled(x: int) -> int:
        runs.append(f"scaled {x}")
        return x * 10

    @workflow
    async def scales(ctx: WorkflowExecutionContext[None]) -> tuple[int, Any]:
        value = await scaled(factor["value"])  # reads state outside the workflow: not deterministic
        return value, await pause("p")

    ctx = scales.run()
    factor["value"] = 5
    done = scales.resume(ctx.execution_id, "go")
    assert done.output == (10, "go")  # the step's position identifies it, not a hash of its arguments
    assert runs == ["scaled 1"]


def test_step_ids_follow_call_order_not_await_order() -> None:
    @workflow
    async def reordered(ctx: WorkflowExecutionContext[None]) -> list[str]:
        first, second = step("first"), step("second")
        return [await second, await first]

    ctx = reordered.run()
    assert ctx.output == ["second done", "first done"]
    started = {e.step_id: e.value for e in ctx.events if e.type is EventType.STEP_STARTED}
    assert started == {"1": (("first",), {}), "2": (("second",), {})}


def test_same_task_and_arguments_twice_are_two_steps() -> None:
    @workflow
    async def twice(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return [await step("same"), await step("same")]

    ctx = twice.run()
    assert completed_steps(ctx) == ["1", "2"]
    assert runs == ["same", "same"]


def test_resumed_execution_does_not_rerun_steps_before_the_pause() -> None:
    @workflow
    async def approval(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        before = await parallel(step("p1"), step("p2"))
        mapped = await step.map(["m1", "m2"])
        answer = await pause("ok?")
        return [*before, *mapped, answer, await step("after")]

    ctx = approval.run()
    assert sorted(runs) == ["m1", "m2", "p1", "p2"]
    runs.clear()
    done = approval.resume(ctx.execution_id, "yes")
    assert done.output == ["p1 done", "p2 done", "m1 done", "m2 done", "yes", "after done"]
    assert runs == ["after"]
    assert completed_steps(done) == ["1", "2", "3", "4", "5", "6"]


# -- O(1) replay -----------------------------------------------------------------------------------
class CountingStore:
    """The real default store, counting how often the whole event list is loaded."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        self.loads += 1
        return self.inner.load_events(execution_id, after_seq)


def test_rerun_of_a_long_execution_loads_its_log_once() -> None:
    @workflow
    async def many(ctx: WorkflowExecutionContext[None]) -> int:
        return len([await step(f"n{n}") for n in range(300)])

    execution_id = many.create()
    crash_on.add("n299")
    with pytest.raises(Crash):
        many.run(execution_id=execution_id)
    runs.clear()
    counting = CountingStore(default_store())
    done = asyncio.run(many.arun(execution_id=execution_id, store=counting))  # type: ignore[arg-type]
    assert done.output == 300
    assert runs == ["n299"]
    assert counting.loads == 1  # 299 replayed steps, one query: each lookup is a dict access


def test_replay_of_a_long_log_loads_it_once() -> None:
    @task
    def quick(n: int) -> int:
        runs.append(str(n))
        return n

    @workflow
    async def many(ctx: WorkflowExecutionContext[None]) -> Any:
        values = [await quick(n) for n in range(200)]
        return sum(values), await pause("end")

    ctx = many.run()
    runs.clear()
    counting = CountingStore(default_store())
    done = asyncio.run(many.aresume(ctx.execution_id, "x", store=counting))  # type: ignore[arg-type]
    assert done.output == (sum(range(200)), "x")
    assert runs == []
    assert counting.loads == 1  # the pause being resumed is found in the log the replay then uses


def test_index_steps_keeps_each_steps_start_and_outcome() -> None:
    ctx = six_steps.run()
    steps = index_steps(ctx.events)
    assert sorted(steps) == ["1", "2", "3", "4", "5", "6"]
    assert steps["3"].name == "step"
    assert steps["3"].outcome is EventType.STEP_COMPLETED


# -- non-determinism -------------------------------------------------------------------------------
@task
def first_task() -> str:
    return "first"


@task
def second_task() -> str:
    return "second"


def _versions(name: str) -> tuple[Any, Any]:
    """Two versions of the workflow ``name``: the code before and after a change at step 1."""

    @workflow.with_options(name=name)
    async def before(ctx: WorkflowExecutionContext[None]) -> Any:
        return await first_task(), await pause("p")

    @workflow.with_options(name=name)
    async def after(ctx: WorkflowExecutionContext[None]) -> Any:
        return await second_task(), await pause("p")

    return before, after


def test_changed_code_raises_non_determinism_error_naming_both_tasks() -> None:
    before, after = _versions("changing")
    ctx = before.run()
    with pytest.raises(NonDeterminismError) as caught:
        after.resume(ctx.execution_id, "x")
    message = str(caught.value)
    assert "'first_task'" in message
    assert "'second_task'" in message
    assert "step 1" in message


def test_non_determinism_leaves_the_execution_to_the_right_code() -> None:
    before, after = _versions("changing")
    ctx = before.run()
    store = default_store()
    events_before = store.load_events(ctx.execution_id)
    with pytest.raises(NonDeterminismError):
        after.resume(ctx.execution_id, "x")
    # untouched: still paused, the same events, the resume not consumed
    assert before.status(ctx.execution_id).status == "paused"
    assert store.load_events(ctx.execution_id) == events_before
    record = store.get_execution(ctx.execution_id)
    assert record is not None and record.lease_owner is None
    done = before.resume(ctx.execution_id, "y")
    assert done.output == ("first", "y")


def test_non_determinism_cannot_be_swallowed_by_the_workflow() -> None:
    @workflow.with_options(name="swallowing")
    async def before(ctx: WorkflowExecutionContext[None]) -> Any:
        await first_task()
        return await pause("p")

    @workflow.with_options(name="swallowing")
    async def after(ctx: WorkflowExecutionContext[None]) -> Any:
        try:
            await second_task()
        except Exception:
            pass
        return await pause("p")

    ctx = before.run()
    with pytest.raises(NonDeterminismError, match="second_task"):
        after.resume(ctx.execution_id, "x")


def test_a_builtin_replaced_by_a_task_is_non_determinism() -> None:
    @workflow.with_options(name="timing")
    async def before(ctx: WorkflowExecutionContext[None]) -> Any:
        await now()
        return await pause("p")

    @workflow.with_options(name="timing")
    async def after(ctx: WorkflowExecutionContext[None]) -> Any:
        await first_task()
        return await pause("p")

    ctx = before.run()
    with pytest.raises(NonDeterminismError, match=r"'now'.*'first_task'"):
        after.resume(ctx.execution_id, "x")


def test_events_of_other_executions_do_not_leak_into_replay() -> None:
    one, two = six_steps.run(), six_steps.run()
    assert completed_steps(one) == completed_steps(two) == ["1", "2", "3", "4", "5", "6"]
    assert {e.execution_id for e in one.events} == {one.execution_id}
