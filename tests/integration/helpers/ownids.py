"""Workflows for the own-id and ``wf.start`` process tests: every step notes ``<label> start|done <pid>``
in $CRASH_LOG (the steps of :mod:`helpers.crashflow`), so a test sees which steps ran, and where.

``python -m helpers.ownids ACTION ...`` is the user program the tests start as a process:

- ``race RUN|START EXECUTION_ID LABEL``: wait for $RACE_GATE (so that every racer calls together), then
  ``once.run(..., execution_id=...)`` or ``once.start(...).result()``; prints the output as JSON.
- ``start-and-wait EXECUTION_ID GATE_FROM``: ``steps.start(...)``, prints the id, waits for the result.
- ``start-and-exit EXECUTION_ID``: ``steps.start(...)`` with every step from 2 on gated, then waits until
  step 2 started and exits normally, leaving the execution to the exit handler.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from helpers.crashflow import work
from taskloom import WorkflowExecutionContext, workflow


@workflow
async def once(ctx: WorkflowExecutionContext[dict[str, str]]) -> str:
    """One step: the thing that must happen once per id."""
    return await work(ctx.input["label"])  # type: ignore[no-any-return]


@workflow
async def steps(ctx: WorkflowExecutionContext[dict[str, int]]) -> list[str]:
    """Steps 1..4 in sequence; steps from ``gate_from`` on wait for $CRASH_GATE."""
    return [await work(f"step{n}", n >= ctx.input["gate_from"]) for n in range(1, 5)]


@workflow
async def other(ctx: WorkflowExecutionContext[None]) -> str:
    """Another workflow, whose ids a start of ``once`` must not take."""
    return "other"


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)  # polling with a deadline


def main(argv: list[str]) -> None:
    action, execution_id, *rest = argv
    if action == "race":
        how, label = rest
        Path(os.environ["RACE_READY"], str(os.getpid())).touch()
        _wait_for(Path(os.environ["RACE_GATE"]))
        if how == "RUN":
            output = once.run({"label": label}, execution_id=execution_id).output
        else:
            output = once.start({"label": label}, execution_id=execution_id).result(timeout=60)
        print(json.dumps(output), flush=True)
    elif action == "start-and-wait":
        handle = steps.start({"gate_from": int(rest[0])}, execution_id=execution_id)
        print(handle.execution_id, flush=True)
        print(json.dumps(handle.result(timeout=120)), flush=True)
    elif action == "start-and-exit":
        steps.start({"gate_from": 2}, execution_id=execution_id)
        log = Path(os.environ["CRASH_LOG"])
        deadline = time.monotonic() + 60
        while "step2 start" not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline:
                raise TimeoutError("step 2 never started")
            time.sleep(0.005)  # polling with a deadline
    else:
        raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
