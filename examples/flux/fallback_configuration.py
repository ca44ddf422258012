"""flux-tasks.md, "Fallback Configuration": when the task fails, the fallback gives the result."""

from taskloom import WorkflowExecutionContext, task, workflow


def fallback_handler(input_data):
    # Handle task failure
    return "fallback result"


@task.with_options(fallback=fallback_handler)
def task_with_fallback(input_data):
    # If this fails, fallback_handler is called
    raise RuntimeError(f"cannot handle {input_data!r}")


@workflow
async def fallback_workflow(ctx: WorkflowExecutionContext[str]):
    return await task_with_fallback(ctx.input)


if __name__ == "__main__":
    assert task_with_fallback("direct") == "fallback result"

    ctx = fallback_workflow.run("payload")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "fallback result", ctx.output
    assert any(e.type == "step_fallback" for e in ctx.events), [e.type for e in ctx.events]
    print("result:", ctx.output)
