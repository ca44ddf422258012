"""Workflows for the message tests with workers: each step notes ``<step> <value> <pid>`` in $MESSAGE_LOG.

``crash_once`` ends its process with SIGKILL the first time it runs (it leaves $CRASH_MARK behind), so a
test can kill a worker between a receive's receipt and the next step.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import receive


def note(step: str, value: Any) -> None:
    with open(os.environ["MESSAGE_LOG"], "a") as log:
        log.write(f"{step} {value} {os.getpid()}\n")


@task
def reply(value: Any) -> str:
    note("reply", value)
    return f"re: {value}"


@task
def crash_once(value: Any) -> Any:
    note("crash_once", value)
    mark = Path(os.environ["CRASH_MARK"])
    if not mark.exists():
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


@workflow
async def conversation(ctx: WorkflowExecutionContext[int]) -> list[str]:
    """Replies to ``ctx.input`` messages of topic ``say``, one at a time."""
    return [await reply(await receive("say")) for _ in range(ctx.input)]


@workflow
async def crash_after_receipt(ctx: WorkflowExecutionContext[None]) -> list[Any]:
    got = await receive("job")
    await crash_once(got)
    return [got, await receive("job")]
