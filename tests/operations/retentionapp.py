"""Workflows whose executions tests/operations/test_retention.py prunes."""

from __future__ import annotations

import os
import tempfile

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.outputs import LocalFileOutputStorage
from taskloom.tasks import pause

#: outputs of `big` go to files, which pruning must remove with their executions
OUTPUTS = os.environ.get("TASKLOOM_TEST_OUTPUTS") or tempfile.mkdtemp(prefix="taskloom-test-outputs-")


@task(output_storage=LocalFileOutputStorage(OUTPUTS))
def big(n: int) -> list[int]:
    return list(range(n))


@task
def small(n: int) -> int:
    return n + 1


@task
def explode(n: int) -> None:
    raise ValueError(f"no {n}")


@workflow
async def done(ctx: WorkflowExecutionContext[int]) -> int:
    values = await big(ctx.input)
    return await small(len(values))


@workflow
async def broken(ctx: WorkflowExecutionContext[int]) -> None:
    await small(ctx.input)
    await explode(ctx.input)


@workflow
async def waiting(ctx: WorkflowExecutionContext[int]) -> int:
    await small(ctx.input)
    answer = await pause("answer")
    return int(answer)
