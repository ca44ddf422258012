"""Workflows with a time limit, for worker processes (``taskloom worker timeoutapp``) and for the process
the tests kill.

Each step appends ``<label> <pid>`` to ``$TIMEOUT_LOG``, so a test sees which steps ran, and where.
``blocked`` waits for ``$TIMEOUT_GATE`` to exist, which the tests never create: it holds its process
until the process is killed or the workflow's deadline interrupts it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause

#: the SIGKILL test's limit: long enough for its process to start and reach the gate on a loaded machine
GATED_TIMEOUT = 8.0
#: a worker's own run's limit: long enough for an idle worker to claim it and reach the gate first
HELD_TIMEOUT = 3.0
#: the other tests' limit: they wait for it to pass
SHORT_TIMEOUT = 1.0
#: a limit that a one-step workflow keeps even on a loaded machine
QUICK_TIMEOUT = 5.0
#: a parent's limit: long enough for it to start its child and pause, most of the time (the tests using
#: it also accept a parent that passed it during that first run: its child is closed then too)
CHILD_TIMEOUT = 2.0


def note(label: str) -> None:
    with open(os.environ["TIMEOUT_LOG"], "a") as log:
        log.write(f"{label} {os.getpid()}\n")


@task
def first() -> str:
    note("first")
    return "first"


@task
async def blocked() -> None:
    note("blocked")
    gate = Path(os.environ["TIMEOUT_GATE"])
    while not gate.exists():
        await asyncio.sleep(0.01)  # polling for a file that never comes: the step is held, not timed


@task
def after() -> None:
    note("after")


@workflow(timeout=GATED_TIMEOUT)
async def gated(ctx: WorkflowExecutionContext[None]) -> str:
    await first()
    await blocked()
    await after()
    return "finished"


@workflow(timeout=HELD_TIMEOUT)
async def held(ctx: WorkflowExecutionContext[None]) -> str:
    await first()
    await blocked()
    await after()
    return "finished"


@workflow(timeout=SHORT_TIMEOUT)
async def awaiting_approval(ctx: WorkflowExecutionContext[None]) -> str:
    await first()
    approval = await pause("approve")
    await after()
    return f"approved: {approval}"


@workflow
async def waits_for_approval(ctx: WorkflowExecutionContext[None]) -> str:
    """A child with no time limit of its own."""
    return f"approved: {await pause('approve')}"


@workflow(timeout=CHILD_TIMEOUT)
async def awaiting_a_child(ctx: WorkflowExecutionContext[None]) -> str:
    return await waits_for_approval(None)


@workflow(timeout=QUICK_TIMEOUT)
async def quick(ctx: WorkflowExecutionContext[None]) -> str:
    await first()
    return "in time"
