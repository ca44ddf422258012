"""flux-tasks.md, "Basic Task Creation": an async function made into a task.

Called directly it behaves like its function (an async task returns a coroutine); called inside a
workflow it becomes a durable step whose result is recorded.
"""

import asyncio

from taskloom import WorkflowExecutionContext, task, workflow


@task
async def simple_task(data: str):
    return data.upper()


@workflow
async def shout(ctx: WorkflowExecutionContext[str]):
    return await simple_task(ctx.input)


if __name__ == "__main__":
    direct = asyncio.run(simple_task("hello"))
    assert direct == "HELLO", direct

    ctx = shout.run("hello flux")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "HELLO FLUX", ctx.output
    print("direct:", direct)
    print("result:", ctx.output)
