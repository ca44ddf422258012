"""Parent and child workflows run by real processes in tests/integration/test_child_workflows_processes.py.

Each step of the child appends ``<execution> <what> <pid>`` to $CHILD_LOG, so a test sees what ran, how
often and where. ``held`` blocks until the file $CHILD_GO exists: the test decides when the child goes on
(a condition it creates, not a sleep), and may kill the process running it meanwhile.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from taskloom import WorkflowExecutionContext, task, workflow


class Refused(Exception):
    """A failure of the child, raised in the parent as itself."""

    def __init__(self, order: int) -> None:
        super().__init__(order)
        self.order = order


def note(execution: str, what: str) -> None:
    with open(os.environ["CHILD_LOG"], "a") as log:
        log.write(f"{execution} {what} {os.getpid()}\n")


@task
def held(execution: str, value: int) -> int:
    note(execution, "held")
    go = Path(os.environ["CHILD_GO"])
    while not go.exists():  # the test creates it (or kills this process first)
        time.sleep(0.01)
    return value * 10


@task
def after(execution: str, value: int) -> int:
    note(execution, "after")
    return value + 1


@workflow
async def child(ctx: WorkflowExecutionContext[int]) -> dict[str, Any]:
    if ctx.input < 0:
        raise Refused(ctx.input)
    value = await after(ctx.execution_id, await held(ctx.execution_id, ctx.input))
    return {"value": value, "parent": ctx.parent_id}


@workflow
async def parent(ctx: WorkflowExecutionContext[int]) -> dict[str, Any]:
    try:
        result = await child(ctx.input)
    except Refused as refused:
        return {"refused": refused.order}
    return {"child": result, "parent_id": ctx.parent_id}
