"""Workflows driven through the `taskloom` command in tests/integration/test_cli.py."""

from __future__ import annotations

from taskloom import TaskControl, WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause


@task
def crunch(tc: TaskControl, n: int) -> int:
    for i in range(1, n + 1):
        tc.update_progress(i / n * 100, f"chunk {i}/{n}")
    tc.log("crunched everything", "info")
    return n * 10


@task
def explode(reason: str) -> None:
    raise ValueError(reason)


@workflow
async def progress(ctx: WorkflowExecutionContext[int]) -> dict[str, int]:
    return {"total": await crunch(ctx.input)}


@workflow
async def approval(ctx: WorkflowExecutionContext[str]) -> str:
    decision = await pause("manager")
    return f"{ctx.input}: {decision}"


@workflow
async def broken(ctx: WorkflowExecutionContext[str]) -> None:
    await explode(ctx.input)


@task
def tick(n: int, log_path: str) -> int:
    import time

    time.sleep(0.2)
    with open(log_path, "a") as log:
        log.write(f"{n}\n")
    return n


@workflow
async def ticking(ctx: WorkflowExecutionContext[str]) -> int:
    return sum([await tick(n, ctx.input) for n in range(6)])


@workflow
async def checked_approval(ctx: WorkflowExecutionContext[int]) -> str:
    total = await crunch(ctx.input)
    decision = await pause("manager")
    return f"{total}: {decision}"
