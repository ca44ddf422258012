"""flux-tasks.md, "Pipeline Processing": each task's result is the next task's input."""

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pipeline


@task
def task1(text: str) -> str:
    return text.strip()


@task
async def task2(text: str) -> str:
    return text.upper()


@task
def task3(text: str) -> str:
    return f"{text}!"


@workflow
async def pipeline_workflow(ctx: WorkflowExecutionContext):
    result = await pipeline(
        task1,
        task2,
        task3,
        input=ctx.input,
    )
    return result


if __name__ == "__main__":
    ctx = pipeline_workflow.run("  hello pipeline  ")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "HELLO PIPELINE!", ctx.output
    steps = [e.name for e in ctx.events if e.type == "step_completed"]
    assert steps == ["task1", "task2", "task3"], steps
    print("result:", ctx.output)
