"""flux-tasks.md, "Parallel Execution": three task calls run concurrently; results in the order given."""

import time

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import parallel


@task
def task1():
    time.sleep(0.3)
    return "one"


@task
def task2():
    time.sleep(0.3)
    return "two"


@task
async def task3():
    return "three"


@workflow
async def parallel_workflow(ctx: WorkflowExecutionContext):
    results = await parallel(
        task1(),
        task2(),
        task3(),
    )
    return results


if __name__ == "__main__":
    started = time.monotonic()
    ctx = parallel_workflow.run()
    elapsed = time.monotonic() - started
    assert ctx.has_succeeded, ctx
    assert ctx.output == ["one", "two", "three"], ctx.output
    assert elapsed < 0.55, f"took {elapsed:.2f}s: the two 0.3s tasks did not overlap"
    print(f"elapsed: {elapsed:.2f}s")
    print("result:", ctx.output)
