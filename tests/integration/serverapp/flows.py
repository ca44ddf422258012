"""Workflows run by a worker process while the tests drive them through the HTTP server."""

from __future__ import annotations

import time
from typing import Any

from taskloom import TaskControl, WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause


@task
def shout(text: str) -> str:
    return text.upper()


@task
def count_to(tc: TaskControl, n: int) -> int:
    for i in range(1, n + 1):
        tc.update_progress(i / n * 100, f"at {i}")
    tc.log(f"counted to {n}")
    return n


@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
async def greet(ctx: WorkflowExecutionContext[dict[str, Any]]) -> str:
    greeting: str = await shout(f"hello {ctx.input['name']}")
    return greeting


@workflow
async def approval(ctx: WorkflowExecutionContext[dict[str, Any]]) -> dict[str, Any]:
    """Pauses for a decision; returns it with the request."""
    request = await shout(ctx.input["item"])
    decision = await pause("approve")
    return {"item": request, "decision": decision}


@workflow
async def progress(ctx: WorkflowExecutionContext[int]) -> int:
    total = 0
    for _ in range(3):
        total += await count_to(ctx.input)  # type: ignore[call-arg, arg-type]  # tc is injected
    return total


@workflow
async def slow(ctx: WorkflowExecutionContext[int]) -> int:
    """``input`` steps of half a second each: long enough to cancel it midway."""
    for _ in range(ctx.input):
        await nap(0.5)
    return ctx.input


@workflow
async def broken(ctx: WorkflowExecutionContext[None]) -> None:
    raise ValueError("broken on purpose")
