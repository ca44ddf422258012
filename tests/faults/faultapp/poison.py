"""A workflow whose step ends the process running it, next to good ones (:mod:`faultapp.flows`).

Kept apart from ``flows`` so that the other fault tests still import if the ``max_recovery_attempts``
option is missing or changes.
"""

from __future__ import annotations

import os
import sys

from faultapp.effects import note
from faultapp.flows import step, steps  # noqa: F401  (a worker on this module runs the good ones too)
from taskloom import WorkflowExecutionContext, task, workflow

MAX_RECOVERY_ATTEMPTS = 2


@task
def die(execution_id: str, label: str, how: str) -> str:
    """Note the attempt (``<label>:dying``), then leave the process the way ``how`` names."""
    note(execution_id, f"{label}:dying")
    if how == "sys.exit":
        sys.exit(3)
    os._exit(3)


@workflow.with_options(max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def poison(ctx: WorkflowExecutionContext[str]) -> str:
    """Step 0, then a step that exits the process (``ctx.input``: ``"sys.exit"`` or ``"os._exit"``)."""
    await step(ctx.execution_id, "0")
    return str(await die(ctx.execution_id, "1", ctx.input))
