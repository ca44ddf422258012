"""Workflows whose steps note their work in the side-effect log (:mod:`faultapp.effects`).

Every effect-writing task takes ``(execution_id, label, ...)``: the tests map a step the store recorded
as completed to its log line through those two recorded arguments.
"""

from __future__ import annotations

import time

from faultapp.effects import note, wait_for_gate
from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import parallel


@task
def step(execution_id: str, label: str, pause: float = 0.0) -> int:
    """Work for ``pause`` seconds, note it, return the label's number squared."""
    if pause:
        time.sleep(pause)  # the step's work: it keeps the step in flight while a fault strikes
    note(execution_id, label)
    return int(label) ** 2


@task
def gated_step(execution_id: str, label: str) -> int:
    """A step that waits for the test's gate before it does its work."""
    wait_for_gate(execution_id, label)
    note(execution_id, label)
    return int(label) ** 2


@task
def blob(execution_id: str, label: str, size: int) -> bytes:
    """A step with a large result, to fill a disk."""
    note(execution_id, label)
    return bytes([int(label) % 256]) * size


def expected_steps_output(count: int) -> int:
    return sum(n * n for n in range(count))


@workflow
async def steps(ctx: WorkflowExecutionContext[dict[str, float]]) -> int:
    """``steps`` sequential steps of ``pause`` seconds; the output is the sum of ``n*n`` over them."""
    total = 0
    for n in range(int(ctx.input["steps"])):
        total += await step(ctx.execution_id, str(n), ctx.input.get("pause", 0.0))
    return total


@workflow
async def guarded(ctx: WorkflowExecutionContext[None]) -> int:
    """Step 0, then a gated step 1 inside ``except Exception`` (which notes ``except:<type>``), then 2."""
    total = await step(ctx.execution_id, "0")
    try:
        total += await gated_step(ctx.execution_id, "1")
    except Exception as error:  # a store error must never land here
        note(ctx.execution_id, f"except:{type(error).__name__}")
        raise
    return int(total + await step(ctx.execution_id, "2"))


@workflow
async def bulky(ctx: WorkflowExecutionContext[dict[str, int]]) -> int:
    """``steps`` steps each returning ``size`` bytes; the output is the total length."""
    total = 0
    for n in range(ctx.input["steps"]):
        total += len(await blob(ctx.execution_id, str(n), ctx.input["size"]))
    return total


@task
def tick(execution_id: str, label: str) -> str:
    note(execution_id, label)
    return label


@task
async def branch(execution_id: str, name: str, count: int) -> int:
    """A branch of ``count`` fast steps ``<name><i>``, one after another."""
    for i in range(count):
        await tick(execution_id, f"{name}{i}")
    return count


@workflow
async def spinning(ctx: WorkflowExecutionContext[dict[str, int]]) -> list[int]:
    """Two branches of fast steps, in parallel: something to cancel mid-flight."""
    count = ctx.input["count"]
    return await parallel(  # type: ignore[no-any-return]
        branch(ctx.execution_id, "a", count), branch(ctx.execution_id, "b", count)
    )
