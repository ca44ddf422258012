"""flux-tasks.md, "Rollback Operations": the rollback releases what the failed task had taken."""

from taskloom import WorkflowExecutionContext, task, workflow

locks: set[str] = set()


def rollback_handler():
    # Clean up resources
    locks.discard("report.lock")


@task.with_options(rollback=rollback_handler)
def task_with_rollback():
    # Rollback is called if task fails
    locks.add("report.lock")
    raise OSError("disk full while writing the report")


@workflow
async def rollback_workflow(ctx: WorkflowExecutionContext):
    await task_with_rollback()


if __name__ == "__main__":
    ctx = rollback_workflow.run()
    assert ctx.has_failed, ctx
    assert isinstance(ctx.output, OSError), repr(ctx.output)
    assert locks == set(), f"rollback did not release {locks}"
    assert any(e.type == "step_rollback" for e in ctx.events), [e.type for e in ctx.events]
    print("locks held after rollback:", sorted(locks))
    print("result:", ctx.status, type(ctx.output).__name__, ctx.output)
