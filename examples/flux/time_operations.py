"""flux-tasks.md, "Time Operations": recorded clock readings around a durable sleep.

The document sleeps 5 seconds; here 0.2 seconds.
"""

from datetime import datetime, timedelta

from taskloom import WorkflowExecutionContext, workflow
from taskloom.tasks import now, sleep


@workflow
async def timing_workflow(ctx: WorkflowExecutionContext):
    start_time = await now()  # Get current time
    await sleep(timedelta(seconds=0.2))  # Sleep for duration
    end_time = await now()
    return end_time - start_time


if __name__ == "__main__":
    ctx = timing_workflow.run()
    assert ctx.has_succeeded, ctx
    assert isinstance(ctx.output, timedelta), repr(ctx.output)
    assert timedelta(seconds=0.2) <= ctx.output < timedelta(seconds=1), ctx.output
    started = next(e for e in ctx.events if e.type == "step_completed" and e.name == "now").value
    assert isinstance(started, datetime) and started.tzinfo is not None, repr(started)  # aware UTC
    # Stored with its type: read back from the store, the output is still a timedelta.
    assert timing_workflow.status(ctx.execution_id).output == ctx.output
    print("result:", ctx.output)
