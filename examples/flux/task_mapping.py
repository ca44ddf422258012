"""flux-tasks.md, "Task Mapping": one step per item, run concurrently, results in order."""

from taskloom import WorkflowExecutionContext, task, workflow


@task
async def process_item(item: str):
    return item.upper()


@workflow
async def mapping_workflow(ctx: WorkflowExecutionContext):
    items = ["a", "b", "c"]
    results = await process_item.map(items)
    return results


if __name__ == "__main__":
    ctx = mapping_workflow.run()
    assert ctx.has_succeeded, ctx
    assert ctx.output == ["A", "B", "C"], ctx.output
    steps = [e.step_id for e in ctx.events if e.type == "step_completed"]
    assert len(steps) == 3, steps
    print("result:", ctx.output)
