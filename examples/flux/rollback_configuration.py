"""flux-tasks.md, "Rollback Configuration": when the task fails, the rollback cleans up and the task
still fails (with its own error)."""

from taskloom import WorkflowExecutionContext, task, workflow

cleaned_up: list[str] = []


def rollback_handler(input_data):
    # Clean up after task failure
    cleaned_up.append(input_data)


@task.with_options(rollback=rollback_handler)
def task_with_rollback(input_data):
    # If this fails, rollback_handler is called
    raise ValueError(f"cannot write {input_data!r}")


@workflow
async def rollback_workflow(ctx: WorkflowExecutionContext[str]):
    try:
        return await task_with_rollback(ctx.input)
    except ValueError as error:
        return f"caught ValueError: {error}"


if __name__ == "__main__":
    try:
        task_with_rollback("direct")
    except ValueError:
        pass
    else:
        raise AssertionError("the task should have failed")
    assert cleaned_up == ["direct"], cleaned_up

    ctx = rollback_workflow.run("record-7")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "caught ValueError: cannot write 'record-7'", ctx.output
    assert cleaned_up == ["direct", "record-7"], cleaned_up
    assert any(e.type == "step_rollback" for e in ctx.events), [e.type for e in ctx.events]
    print("rolled back:", cleaned_up)
    print("result:", ctx.output)
