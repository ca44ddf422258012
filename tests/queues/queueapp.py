"""Workflows and queues for the queue tests' worker processes (``taskloom worker queueapp``).

``job`` holds its worker for ``ctx.input`` seconds in one step: long enough that, without the limits,
more executions than allowed would run at once. The queues' limits are what the tests check.
"""

from __future__ import annotations

import os
import time

from taskloom import Queue, WorkflowExecutionContext, task, workflow

#: the issue's case: at most 2 running anywhere, at most 10 starts in any second
LIMITED = Queue("limited", concurrency=2, rate_limit=(10, 1.0))
#: at most one running per worker, any number across workers
ONE_EACH = Queue("one_each", worker_concurrency=1)
#: one at a time, so that the claim order is the order they run in
SINGLE_FILE = Queue("single_file", concurrency=1)


@task
def hold(seconds: float) -> int:
    time.sleep(seconds)  # the work itself: it keeps the execution running, it synchronises nothing
    return os.getpid()


@workflow
async def job(ctx: WorkflowExecutionContext[float]) -> int:
    """Holds a worker for ``ctx.input`` seconds; its output is the worker's pid (which worker ran it)."""
    return await hold(ctx.input or 0.0)


@workflow
async def parent_job(ctx: WorkflowExecutionContext[float]) -> int:
    """Runs ``job`` as a child execution, which goes to the parent's queue."""
    return await job(ctx.input)
