"""flux-tasks.md, "Fallback Strategy": retries first, then the fallback once every attempt failed.

The retry delay is 0.05 second (the document keeps the default of 1) so the example runs quickly.
"""

from taskloom import WorkflowExecutionContext, task, workflow

attempts: list[int] = []


def fallback_handler():
    return "fallback result"


@task.with_options(
    fallback=fallback_handler,
    retry_max_attempts=3,
    retry_delay=0.05,
)
def task_with_fallback():
    # Retries first, then fallback if all retries fail
    attempts.append(len(attempts) + 1)
    raise ConnectionError(f"service unavailable (attempt {len(attempts)})")


@workflow
async def fallback_workflow(ctx: WorkflowExecutionContext):
    return await task_with_fallback()


if __name__ == "__main__":
    ctx = fallback_workflow.run()
    assert ctx.has_succeeded, ctx
    assert ctx.output == "fallback result", ctx.output
    assert attempts == [1, 2, 3, 4], attempts  # the first attempt and 3 retries
    kinds = [str(e.type) for e in ctx.events if e.type in ("step_retrying", "step_fallback")]
    assert kinds == ["step_retrying"] * 3 + ["step_fallback"], kinds
    print("attempts:", len(attempts))
    print("result:", ctx.output)
