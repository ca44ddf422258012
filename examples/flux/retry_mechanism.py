"""flux-tasks.md, "Retry Mechanism": a task that fails at random succeeds on a retry.

``random`` is seeded so that the first two attempts fail and the third succeeds, every time; the
retry delay is 0.1 second instead of the document's 1.
"""

import random

from taskloom import WorkflowExecutionContext, task, workflow


@task.with_options(
    retry_max_attempts=3,
    retry_delay=0.1,
    retry_backoff=2,
)
def retrying_task():
    if random.random() < 0.5:
        raise ValueError("Task failed")
    return "success"


@workflow
async def retry_workflow(ctx: WorkflowExecutionContext):
    return await retrying_task()


if __name__ == "__main__":
    random.seed(7)  # draws 0.32, 0.15, 0.65: two failures, then success
    ctx = retry_workflow.run()
    assert ctx.has_succeeded, ctx
    assert ctx.output == "success", ctx.output
    retries = [e for e in ctx.events if e.type == "step_retrying"]
    assert len(retries) == 2, [e.data for e in retries]
    print("retries:", [e.data["error"] for e in retries])
    print("result:", ctx.output)
