"""flux-tasks.md, "Timeout Handling": an attempt that takes too long fails, then the fallback answers.

The document's timeout is 30 seconds; here it is 0.2 seconds and the task takes 1 second.
"""

import time

from taskloom import WorkflowExecutionContext, task, workflow


def fallback_handler():
    return "fallback result"


@task.with_options(
    timeout=0.2,
    fallback=fallback_handler,
)
def timed_task():
    # Fails if exceeds 0.2 seconds (the document: 30), then calls fallback
    time.sleep(1)
    return "too late"


@workflow
async def timeout_workflow(ctx: WorkflowExecutionContext):
    return await timed_task()


if __name__ == "__main__":
    started = time.monotonic()
    ctx = timeout_workflow.run()
    elapsed = time.monotonic() - started
    assert ctx.has_succeeded, ctx
    assert ctx.output == "fallback result", ctx.output
    assert elapsed < 0.9, f"took {elapsed:.2f}s: the timeout did not cut the attempt short"
    fallback = next(e for e in ctx.events if e.type == "step_fallback")
    assert "TaskTimeoutError" in fallback.data["error"], fallback.data
    print("fallback after:", fallback.data["error"])
    print("result:", ctx.output)
