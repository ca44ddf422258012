"""Workflows backed up and restored in tests/operations/test_backup_restore.py.

Each step appends a line to the file named by ``TASKLOOM_TEST_STEP_LOG``, so the test counts how often
each step body ran: after a restore, completed steps must not run again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause


def _ran(what: str) -> None:
    with open(os.environ["TASKLOOM_TEST_STEP_LOG"], "a") as log:
        log.write(f"{what}\n")


@task
def prepare(name: str) -> str:
    _ran(f"prepare {name}")
    return f"prepared {name}"


@task
def finish(name: str, decision: str) -> str:
    _ran(f"finish {name}")
    return f"{name}: {decision}"


@task
def wait_for_gate(name: str) -> str:
    """Blocks until the test creates the gate file (bounded, so a broken test cannot hang the suite)."""
    gate = Path(os.environ["TASKLOOM_TEST_GATE"])
    _ran(f"waiting {name}")
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no gate file {gate}")
        time.sleep(0.02)
    _ran(f"gate {name}")
    return f"{name} through the gate"


@workflow
async def approval(ctx: WorkflowExecutionContext[str]) -> str:
    await prepare(ctx.input)
    decision = await pause("manager")
    return await finish(ctx.input, decision)


@workflow
async def gated(ctx: WorkflowExecutionContext[str]) -> str:
    await prepare(ctx.input)
    return await wait_for_gate(ctx.input)
