"""Child workflows in one process, on both stores: ``await other(input)`` inside a workflow.

What is checked: the child's output is the step's value and the child is one execution whose id derives
from the parent's and the step's, with ``ctx.parent_id`` naming the parent; a replay or a re-run of the
parent finds the child instead of starting it again; a child's failure raises its own exception in the
parent; a child that waits (a pause of its own) suspends the parent durably, and the child's end makes
the parent due; cancelling the parent cancels its running children; wrong use is a clear error.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from processes import wait_for

from taskloom import ExecutionStateError, WorkflowExecutionContext, serde, task, workflow
from taskloom.children import child_id_for
from taskloom.errors import TaskCancelledError, TaskTimeoutError
from taskloom.events import EventType
from taskloom.executions import record_resume
from taskloom.store import default_store
from taskloom.tasks import parallel, pause

CALLS: list[str] = []


class OrderRefused(Exception):
    def __init__(self, order: int, reason: str) -> None:
        super().__init__(order, reason)
        self.order, self.reason = order, reason


@task
def double(value: int) -> int:
    CALLS.append(f"double {value}")
    return value * 2


@workflow
async def child_doubles(ctx: WorkflowExecutionContext[int]) -> dict[str, Any]:
    return {"value": await double(ctx.input), "parent": ctx.parent_id}


@workflow
async def parent_adds(ctx: WorkflowExecutionContext[int]) -> dict[str, Any]:
    first = await child_doubles(ctx.input)
    second = await child_doubles(ctx.input + 1)
    return {"sum": first["value"] + second["value"], "parents": [first["parent"], second["parent"]]}


def children_of(parent_id: str) -> list[Any]:
    return default_store().list_executions(id_prefix=f"{parent_id}-child-")


def test_a_childs_output_is_the_steps_value_and_names_its_parent() -> None:
    CALLS.clear()
    ctx = parent_adds.run(5)
    assert ctx.status == "completed", ctx.output
    assert ctx.output == {"sum": 22, "parents": [ctx.execution_id, ctx.execution_id]}
    assert ctx.parent_id is None
    children = sorted(children_of(ctx.execution_id), key=lambda r: r.id)
    assert [(c.id, c.workflow, c.status) for c in children] == [
        (child_id_for(ctx.execution_id, "1"), "child_doubles", "completed"),
        (child_id_for(ctx.execution_id, "2"), "child_doubles", "completed"),
    ]
    assert child_doubles.status(children[0].id).parent_id == ctx.execution_id
    assert [c.parent_id for c in children] == [ctx.execution_id, ctx.execution_id]
    top = default_store().get_execution(ctx.execution_id)
    assert top is not None and top.parent_id is None
    steps = [(e.type, e.step_id, e.name) for e in ctx.events if e.step_id is not None]
    assert steps == [
        (EventType.STEP_STARTED, "1", "workflow:child_doubles"),
        (EventType.STEP_COMPLETED, "1", "workflow:child_doubles"),
        (EventType.STEP_STARTED, "2", "workflow:child_doubles"),
        (EventType.STEP_COMPLETED, "2", "workflow:child_doubles"),
    ]
    # The wake message each child sent was taken with the step's outcome: nothing is left unread.
    assert [m.received_step for m in default_store().list_messages(ctx.execution_id)] == ["1", "2"]


@workflow
async def fan_out(ctx: WorkflowExecutionContext[int]) -> Any:
    return [r["value"] for r in await parallel(*(child_doubles(i) for i in range(ctx.input)))]


def test_children_run_in_parallel_each_under_its_own_step() -> None:
    CALLS.clear()
    ctx = fan_out.run(4)
    assert ctx.status == "completed" and ctx.output == [0, 2, 4, 6], ctx.output
    assert sorted(c.id for c in children_of(ctx.execution_id)) == [child_id_for(ctx.execution_id, s) for s in "1234"]
    assert fan_out.run(execution_id=ctx.execution_id).output == [0, 2, 4, 6]
    assert sorted(CALLS) == ["double 0", "double 1", "double 2", "double 3"]


@workflow
async def waits_then_doubles(ctx: WorkflowExecutionContext[int]) -> Any:
    extra = await pause("approve")
    return await double(ctx.input + (extra or 0))


@workflow
async def parent_of_a_waiting_child(ctx: WorkflowExecutionContext[int]) -> Any:
    return await waits_then_doubles(ctx.input) + 1


def pause_names(ctx: WorkflowExecutionContext[Any]) -> list[str]:
    return [e.name or "" for e in ctx.events if e.type is EventType.EXECUTION_PAUSED]


def test_a_waiting_child_suspends_the_parent_and_its_end_makes_the_parent_due() -> None:
    CALLS.clear()
    ctx = parent_of_a_waiting_child.run(3)
    child_id = child_id_for(ctx.execution_id, "1")
    assert ctx.status == "paused"
    assert pause_names(ctx) == [f"child:{child_id}"]
    store = default_store()
    before = store.get_execution(ctx.execution_id)
    assert before is not None and before.wake_at is not None and before.wake_at > before.updated_at + 1
    # A resume is for pauses: the parent waits for its child, and says so.
    with pytest.raises(ExecutionStateError, match=f"waits for its child execution {child_id}"):
        parent_of_a_waiting_child.resume(ctx.execution_id, 1)
    with pytest.raises(ExecutionStateError, match="waits for its child"):
        record_resume(store, ctx.execution_id, 1)
    # Running the parent again does not start the child again, nor continue the child's own pause.
    again = parent_of_a_waiting_child.run(execution_id=ctx.execution_id)
    assert again.status == "paused"
    assert len(children_of(ctx.execution_id)) == 1
    assert waits_then_doubles.status(child_id).status == "paused"
    # The child's end wakes the parent: due now (a worker would claim it), and the next run finishes it.
    assert waits_then_doubles.resume(child_id, 10).output == 26
    woken = store.get_execution(ctx.execution_id)
    assert woken is not None and woken.status == "paused"
    assert woken.wake_at is not None and woken.wake_at <= woken.updated_at + 0.5
    done = parent_of_a_waiting_child.run(execution_id=ctx.execution_id)
    assert done.status == "completed" and done.output == 27
    assert CALLS == ["double 13"]
    assert [m.received_step for m in store.list_messages(ctx.execution_id)] == ["1"]


@workflow
async def child_refuses(ctx: WorkflowExecutionContext[int]) -> None:
    raise OrderRefused(ctx.input, "out of stock")


@workflow
async def parent_catches(ctx: WorkflowExecutionContext[int]) -> str:
    try:
        await child_refuses(ctx.input)
    except OrderRefused as refused:
        return f"refused {refused.order}: {refused.reason}"
    return "not refused"


@workflow
async def parent_lets_it_fail(ctx: WorkflowExecutionContext[int]) -> None:
    await child_refuses(ctx.input)


def test_a_childs_failure_raises_its_own_exception_in_the_parent() -> None:
    caught = parent_catches.run(7)
    assert caught.status == "completed" and caught.output == "refused 7: out of stock"
    failed = parent_lets_it_fail.run(8)
    assert failed.status == "failed"
    assert isinstance(failed.output, OrderRefused) and failed.output.order == 8
    child = child_refuses.status(child_id_for(failed.execution_id, "1"))
    assert child.status == "failed" and isinstance(child.output, OrderRefused)
    # A replay of the parent raises the recorded failure, without running the child again.
    assert parent_catches.run(execution_id=caught.execution_id).output == "refused 7: out of stock"


def test_cancelling_the_parent_cancels_its_running_children() -> None:
    ctx = parent_of_a_waiting_child.run(1)
    child_id = child_id_for(ctx.execution_id, "1")
    parent_of_a_waiting_child.cancel(ctx.execution_id)
    assert waits_then_doubles.status(child_id).status == "cancelled"
    assert parent_of_a_waiting_child.status(ctx.execution_id).status == "cancelled"


@workflow(timeout=0.5)
async def parent_out_of_time(ctx: WorkflowExecutionContext[int]) -> Any:
    return await waits_then_doubles(ctx.input)


def test_a_parent_failed_by_its_deadline_cancels_the_child_it_waited_for() -> None:
    ctx = parent_out_of_time.run(1)
    child_id = child_id_for(ctx.execution_id, "1")
    assert ctx.status == "paused" and waits_then_doubles.status(child_id).status == "paused"
    deadline = default_store().fix_deadline(ctx.execution_id, 10_000)  # the one it has: fixed, never moved
    assert deadline is not None
    wait_for(lambda: time.time() > deadline, timeout=60, what="the parent's deadline to pass")
    done = parent_out_of_time.run(execution_id=ctx.execution_id)
    assert done.status == "failed" and isinstance(done.output, TaskTimeoutError)
    # Nothing awaits the child any more: without the parent's close it would stay paused for ever.
    assert waits_then_doubles.status(child_id).status == "cancelled"
    assert parent_out_of_time.status(ctx.execution_id).status == "failed"  # the child's cancel left it so


def test_a_parent_that_ends_with_no_unfinished_child_cancels_nothing() -> None:
    failed = parent_lets_it_fail.run(9)
    child = child_refuses.status(child_id_for(failed.execution_id, "1"))
    assert failed.status == "failed" and child.status == "failed"  # finished children keep their end


def test_a_child_cancelled_on_its_own_raises_task_cancelled_in_the_parent() -> None:
    ctx = parent_of_a_waiting_child.run(1)
    child_id = child_id_for(ctx.execution_id, "1")
    waits_then_doubles.cancel(child_id)
    done = parent_of_a_waiting_child.run(execution_id=ctx.execution_id)
    assert done.status == "failed"
    assert isinstance(done.output, TaskCancelledError) and child_id in str(done.output)


@workflow
async def parent_of_an_existing_child(ctx: WorkflowExecutionContext[int]) -> Any:
    return await child_doubles(ctx.input)


def test_a_rerun_finds_the_child_by_its_id_instead_of_starting_another() -> None:
    # The child exists, not run yet (as after a parent crash right after creating it): found and run once.
    CALLS.clear()
    parent_id = parent_of_an_existing_child.create(4, status="queued")
    store = default_store()
    store.create_execution(
        child_id_for(parent_id, "1"),
        "child_doubles",
        serde.dumps(4, what="input"),
        "queued",
        child_doubles.target,
        started_data={"parent_id": parent_id, "parent_step": "1"},
    )
    ctx = parent_of_an_existing_child.run(execution_id=parent_id)
    assert ctx.status == "completed" and ctx.output == {"value": 8, "parent": parent_id}
    assert CALLS == ["double 4"]
    assert [(c.id, c.status) for c in children_of(parent_id)] == [(child_id_for(parent_id, "1"), "completed")]


def test_an_id_taken_by_another_execution_is_a_clear_error() -> None:
    parent_id = parent_of_an_existing_child.create(4, status="queued")
    child_doubles.create(1, execution_id=child_id_for(parent_id, "1"), status="queued")
    ctx = parent_of_an_existing_child.run(execution_id=parent_id)
    assert ctx.status == "failed"
    assert "is taken by another execution" in str(ctx.output)


def test_calling_a_workflow_outside_a_workflow_says_what_to_use() -> None:
    with pytest.raises(TypeError, match=r"child_doubles.run\(input\)"):
        child_doubles(1)  # type: ignore[unused-coroutine]
