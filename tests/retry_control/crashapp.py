"""A workflow whose step always fails, retried with a long second delay, for the test that kills its
process while the step waits to retry. Each attempt appends ``attempt <pid>`` to ``$RETRY_LOG``."""

from __future__ import annotations

import os

from taskloom import WorkflowExecutionContext, task, workflow

#: the wait after attempt 2, during which the test kills the process (capped from 0.01 * 300)
LONG_WAIT = 3.0


@task(name="always_fails", retry_max_attempts=3, retry_delay=0.01, retry_backoff=300, retry_max_delay=LONG_WAIT)
def always_fails() -> None:
    with open(os.environ["RETRY_LOG"], "a") as log:
        log.write(f"attempt {os.getpid()}\n")
    raise ConnectionError("the service is down")


@workflow
async def retrying(ctx: WorkflowExecutionContext[None]) -> None:
    await always_fails()
