"""A workflow on a one-second schedule, for the worker processes of test_schedule_workers.py."""

from __future__ import annotations

from typing import Any

from taskloom import WorkflowExecutionContext, workflow


@workflow(schedule="* * * * * *")
async def every_second(ctx: WorkflowExecutionContext[Any]) -> str | None:
    """Returns its tick, as the worker that ran it read it."""
    return None if ctx.scheduled_at is None else ctx.scheduled_at.isoformat()
