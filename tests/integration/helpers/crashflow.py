"""Workflows for the SIGKILL tests: every step notes ``<label> start|done <pid>`` in $CRASH_LOG.

A *gated* step waits, after noting its start, until the file $CRASH_GATE exists. The test kills the
process while gated steps wait, then opens the gate and runs the execution again in a new process, so
the log shows exactly which steps ran in which process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import parallel


def note(label: str, phase: str) -> None:
    with open(os.environ["CRASH_LOG"], "a") as log:
        log.write(f"{label} {phase} {os.getpid()}\n")


def wait_for_gate() -> None:
    gate = Path(os.environ["CRASH_GATE"])
    deadline = time.monotonic() + 60
    while not gate.exists():  # opened by the test, for the second process only
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        time.sleep(0.01)


@task
def work(label: str, gated: bool = False) -> str:
    note(label, "start")
    if gated:
        wait_for_gate()
    note(label, "done")
    return f"{label} ok"


@task
def item(spec: tuple[str, bool]) -> str:
    """``work`` for ``map``, which passes one argument per item."""
    label, gated = spec
    return work.function(label, gated)  # type: ignore[no-any-return]


@task
async def nested(label: str) -> str:
    """An async step whose own (gated) step is step ``<its id>.1``."""
    return await work(label, True)  # type: ignore[no-any-return]


@workflow
async def six_steps(ctx: WorkflowExecutionContext[dict[str, int]]) -> list[str]:
    """Steps 1..6 in sequence; steps from ``gate_from`` on wait for the gate."""
    return [await work(f"step{n}", n >= ctx.input["gate_from"]) for n in range(1, 7)]


@workflow
async def gated_map(ctx: WorkflowExecutionContext[None]) -> list[str]:
    """Step 1, then a map (steps 2..7) whose last three items wait for the gate."""
    await work("prepare")
    return await item.map([(f"item{n}", n >= 3) for n in range(6)])  # type: ignore[no-any-return]


@workflow
async def gated_parallel(ctx: WorkflowExecutionContext[None]) -> list[str]:
    """Step 1, then parallel branches 2..5, of which 4 (async, with step 4.1 under it) and 5 wait."""
    await work("prepare")
    return await parallel(  # type: ignore[no-any-return]
        work("branch-a"),
        work("branch-b"),
        nested("branch-c"),
        work("branch-d", True),
    )
