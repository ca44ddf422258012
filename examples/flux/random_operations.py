"""flux-tasks.md, "Random Operations": random picks recorded as steps, so a replay sees the same values."""

from taskloom import WorkflowExecutionContext, workflow
from taskloom.tasks import choice, randint, randrange


@workflow
async def random_workflow(ctx: WorkflowExecutionContext):
    chosen = await choice(["a", "b", "c"])  # Random choice
    number = await randint(1, 10)  # Random integer
    range_num = await randrange(0, 10, 2)  # Random range
    return chosen, number, range_num


if __name__ == "__main__":
    ctx = random_workflow.run()
    assert ctx.has_succeeded, ctx
    chosen, number, range_num = ctx.output
    assert chosen in ("a", "b", "c"), chosen
    assert 1 <= number <= 10, number
    assert range_num in (0, 2, 4, 6, 8), range_num
    recorded = [e.value for e in ctx.events if e.type == "step_completed"]
    assert recorded == [chosen, number, range_num], recorded
    print("result:", ctx.output)
