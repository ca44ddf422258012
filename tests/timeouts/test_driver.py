"""The running driver enforces a workflow's deadline, on both stores: a run past it fails, interrupting
the step in flight; a run (a resume) that starts past it fails without running anything; a workflow that
finishes in time is untouched; a bad ``timeout`` fails at decoration."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from processes import wait_for
from timeoutapp import awaiting_a_child

from taskloom import TaskDefinitionError, TaskTimeoutError, WorkflowExecutionContext, serde, task, workflow
from taskloom.children import child_id_for
from taskloom.events import EventType
from taskloom.recovery import recover
from taskloom.store import Store
from taskloom.tasks import pause

pytestmark = pytest.mark.usefixtures("default")


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """What held sync steps wait for; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def types(ctx: WorkflowExecutionContext[Any]) -> list[EventType]:
    return [e.type for e in ctx.events]


def test_a_running_workflow_past_its_deadline_fails_and_its_step_is_interrupted() -> None:
    interrupted = threading.Event()

    @task
    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            interrupted.set()
            raise

    @workflow(timeout=0.5)
    async def hangs(ctx: WorkflowExecutionContext[None]) -> None:
        await forever()

    ctx = hangs.run()
    assert ctx.has_failed and isinstance(ctx.output, TaskTimeoutError)
    assert interrupted.is_set()
    assert types(ctx)[-1] is EventType.EXECUTION_FAILED
    assert EventType.STEP_FAILED not in types(ctx)  # the step did not fail: it was interrupted


def test_a_sync_step_that_cannot_be_interrupted_does_not_hold_the_failure(release: threading.Event) -> None:
    after = []

    @task
    def stuck() -> None:
        release.wait(60)

    @task
    def next_step() -> None:
        after.append(True)

    @workflow(timeout=0.5)
    async def holds(ctx: WorkflowExecutionContext[None]) -> None:
        await stuck()
        await next_step()

    ctx = holds.run()
    assert isinstance(ctx.output, TaskTimeoutError)
    assert after == []


def test_a_body_that_swallows_the_timeout_still_fails_with_it() -> None:
    @task
    async def forever() -> None:
        await asyncio.Event().wait()

    @task
    def cleanup() -> str:
        return "cleaned"

    @workflow(timeout=0.5)
    async def stubborn(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await forever()
        except BaseException:
            pass
        try:
            return await cleanup()  # no new step starts past the deadline
        except TaskTimeoutError:
            return "carried on"

    ctx = stubborn.run()
    assert isinstance(ctx.output, TaskTimeoutError)
    assert "cleanup" not in [e.name for e in ctx.events]


def test_a_paused_execution_resumed_past_its_deadline_fails_without_running(default: Store) -> None:
    ran = []

    @task
    def approved(value: str) -> None:
        ran.append(value)

    @workflow(timeout=0.5)
    async def approval(ctx: WorkflowExecutionContext[None]) -> None:
        await approved(await pause("approve"))

    ctx = approval.run()
    assert ctx.is_paused
    at = default.fix_deadline(ctx.execution_id, 1)
    assert at is not None
    wait_for(lambda: time.time() > at, timeout=60, what="the deadline to pass")
    resumed = approval.resume(ctx.execution_id, "yes")
    assert resumed.has_failed and isinstance(resumed.output, TaskTimeoutError)
    assert ran == []
    assert EventType.EXECUTION_RESUMED not in [e.type for e in default.load_events(ctx.execution_id)]


def test_a_workflow_that_finishes_in_time_completes_and_records_its_deadline(default: Store) -> None:
    @task
    def work() -> str:
        return "done"

    @workflow(timeout=60)
    async def in_time(ctx: WorkflowExecutionContext[None]) -> str:
        return await work()

    ctx = in_time.run()
    assert ctx.output == "done"
    record = default.get_execution(ctx.execution_id)
    assert record is not None
    assert default.fix_deadline(ctx.execution_id, 1) == pytest.approx(record.created_at + 60)


def test_a_workflow_without_a_timeout_has_no_deadline(default: Store) -> None:
    @workflow
    async def untimed(ctx: WorkflowExecutionContext[None]) -> str:
        return "done"

    ctx = untimed.run()
    assert untimed.timeout is None
    assert default.fix_deadline(ctx.execution_id, 7) == pytest.approx(
        default.get_execution(ctx.execution_id).created_at + 7
    )  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan"), float("inf")])
def test_a_bad_timeout_fails_at_decoration_naming_the_option_and_the_workflow(value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=r"^workflow 'billing': option 'timeout' must be "):
        workflow.with_options(name="billing", timeout=value)
    with pytest.raises(TaskDefinitionError, match=r"^workflow: option 'timeout' must be "):
        workflow(timeout=value)


@pytest.mark.parametrize("modules", [["timeoutapp"], []], ids=["modules", "recorded-targets"])
def test_recover_fails_a_paused_execution_past_its_deadline_and_cancels_its_child(
    default: Store, modules: list[str]
) -> None:
    ctx = awaiting_a_child.run()  # paused, waiting for its paused child (or, on a slow machine, past its deadline)
    child_id = child_id_for(ctx.execution_id, "1")
    at = default.fix_deadline(ctx.execution_id, 10_000)  # the deadline it has: fixed once, never moved
    assert at is not None
    wait_for(lambda: time.time() > at, timeout=60, what="the deadline to pass")
    report = recover(default, modules)
    if ctx.is_paused:  # recover is what ended it
        assert (ctx.execution_id, "failed") in report.finished
    record = default.get_execution(ctx.execution_id)
    assert record is not None and record.status == "failed"
    assert isinstance(serde.loads(record.output), TaskTimeoutError)
    child = default.get_execution(child_id)
    assert child is not None and child.status == "cancelled"
    assert recover(default, modules).finished == []  # nothing left for a second pass
