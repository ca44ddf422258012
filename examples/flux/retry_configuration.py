"""flux-tasks.md, "Retry Configuration": up to 3 retries, each delay double the previous one.

The document's delays are 1s, 2s, 4s; here ``retry_delay`` is 0.1 so the example runs quickly.
"""

from taskloom import WorkflowExecutionContext, task, workflow

attempts: list[int] = []


@task.with_options(
    retry_max_attempts=3,  # Try up to 3 times
    retry_delay=0.1,  # Wait 0.1 second initially (the document: 1)
    retry_backoff=2,  # Double delay after each retry
)
def retrying_task():
    # Task will retry with delays: 0.1s, 0.2s, 0.4s
    attempts.append(len(attempts) + 1)
    if len(attempts) < 3:
        raise ConnectionError(f"attempt {len(attempts)} failed")
    return f"succeeded on attempt {len(attempts)}"


@workflow
async def retry_workflow(ctx: WorkflowExecutionContext):
    return await retrying_task()


if __name__ == "__main__":
    ctx = retry_workflow.run()
    assert ctx.has_succeeded, ctx
    assert ctx.output == "succeeded on attempt 3", ctx.output
    delays = [e.data["delay"] for e in ctx.events if e.type == "step_retrying"]
    assert delays == [0.1, 0.2], delays
    print("retry delays:", delays)
    print("result:", ctx.output)
