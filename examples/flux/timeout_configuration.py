"""flux-tasks.md, "Timeout Configuration": an attempt longer than ``timeout`` fails.

The document uses 30 seconds; here the timeout is 0.2 seconds and the slow call takes 1 second.
"""

import time

from taskloom import TaskTimeoutError, WorkflowExecutionContext, task, workflow


@task.with_options(timeout=0.2)
def timed_task(seconds: float = 1.0):
    # Task will fail if it exceeds 0.2 seconds (the document: 30)
    time.sleep(seconds)
    return f"done in {seconds}s"


@workflow
async def timeout_workflow(ctx: WorkflowExecutionContext[float]):
    return await timed_task(ctx.input)


if __name__ == "__main__":
    assert timed_task(0.01) == "done in 0.01s"

    started = time.monotonic()
    try:
        timed_task()
    except TaskTimeoutError as error:
        assert isinstance(error, TimeoutError)
        print("direct call:", error)
    else:
        raise AssertionError("the slow call should have timed out")
    assert time.monotonic() - started < 0.9, "the timeout did not cut the attempt short"

    ctx = timeout_workflow.run(1.0)
    assert ctx.has_failed, ctx
    assert isinstance(ctx.output, TaskTimeoutError), repr(ctx.output)
    print("result:", ctx.status, type(ctx.output).__name__, ctx.output)
