"""Workflows run by worker processes in the integration tests.

Each step appends a line ``<execution> <step> <pid>`` to the file named by $TASKLOOM_TEST_LOG, so a
test can see which steps ran, how often, and in which process.
"""

from __future__ import annotations

import os
import time

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause, sleep


def _note(execution: str, step: str) -> None:
    with open(os.environ["TASKLOOM_TEST_LOG"], "a") as log:
        log.write(f"{execution} {step} {os.getpid()}\n")
        log.flush()


@task
def record(execution: str, step: int, pause_seconds: float) -> int:
    if pause_seconds:
        time.sleep(pause_seconds)
    _note(execution, str(step))
    return step


@workflow
async def counted(ctx: WorkflowExecutionContext[dict]) -> int:
    """``steps`` sequential steps, each taking ``pause`` seconds."""
    total = 0
    for step in range(ctx.input["steps"]):
        total += await record(ctx.execution_id, step, ctx.input.get("pause", 0))
    return total


@workflow
async def napper(ctx: WorkflowExecutionContext[float]) -> str:
    await sleep(ctx.input)
    _note(ctx.execution_id, "woke")
    return "rested"


@workflow
async def deadline(ctx: WorkflowExecutionContext[float]) -> str:
    """Waits for approval at most ``ctx.input`` seconds."""
    try:
        decision = await pause("approval", timeout=ctx.input)
    except TimeoutError:
        return "timed out"
    return f"decided: {decision}"
