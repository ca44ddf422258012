"""flux-tasks.md, "Workflow Pauses": the workflow stops at a named pause until it is resumed.

On resume the recorded step is replayed, not run again: ``process_data`` runs once.
"""

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import pause

runs: list[str] = []


@task
def process_data():
    runs.append("process_data")
    return "invoice #42 checked"


@workflow
async def approval_workflow(ctx: WorkflowExecutionContext):
    # Process something
    result = await process_data()

    # Pause the workflow with a named pause point
    await pause("wait_for_approval")

    # This code will only execute after the workflow is resumed
    return f"Approved: {result}"


if __name__ == "__main__":
    ctx = approval_workflow.run()
    assert ctx.is_paused and not ctx.has_finished, ctx
    print("paused:", ctx.execution_id, ctx.status)

    ctx = approval_workflow.resume(ctx.execution_id, {"approved_by": "maria"})
    assert ctx.has_succeeded, ctx
    assert ctx.output == "Approved: invoice #42 checked", ctx.output
    assert runs == ["process_data"], runs
    print("result:", ctx.output)
