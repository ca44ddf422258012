"""flux-tasks.md, "UUID Generation": a recorded UUID, which keeps its type in the store."""

from uuid import UUID

from taskloom import WorkflowExecutionContext, workflow
from taskloom.tasks import uuid4


@workflow
async def id_workflow(ctx: WorkflowExecutionContext):
    new_id = await uuid4()  # Generate UUID
    return new_id


if __name__ == "__main__":
    ctx = id_workflow.run()
    assert ctx.has_succeeded, ctx
    assert isinstance(ctx.output, UUID) and ctx.output.version == 4, repr(ctx.output)
    again = id_workflow.run(execution_id=ctx.execution_id)  # finished: returned as recorded
    assert again.output == ctx.output and isinstance(again.output, UUID), repr(again.output)
    print("result:", ctx.output)
