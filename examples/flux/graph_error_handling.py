"""flux-tasks.md, "Error Handling in Graphs": a failed result is routed to a fallback node.

``safe_task`` never raises: it returns a string on success and an error record otherwise. The edge to
``fallback`` is taken only when the result is not a string; otherwise that branch is skipped and the
graph, whose only end node did not run, returns None.
"""

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import Graph


@task
def safe_task(text: str):
    try:
        return text.encode("ascii").decode().title()
    except UnicodeEncodeError as error:
        return {"error": f"{type(error).__name__}: {error.reason}", "input": text}


@task
def fallback_task(failure: dict) -> str:
    return "recovered: " + failure["input"].encode("ascii", "replace").decode()


def check_condition(result):
    return isinstance(result, str)


graph = (
    Graph("error_handling")
    .add_node("task1", safe_task)
    .add_node("fallback", fallback_task)
    .add_edge("task1", "fallback", condition=lambda r: not check_condition(r))
    .start_with("task1")
    .end_with("fallback")
)


@workflow
async def error_handling_workflow(ctx: WorkflowExecutionContext[str]):
    return await graph(ctx.input)


if __name__ == "__main__":
    ok = error_handling_workflow.run("plain text")
    assert ok.has_succeeded, ok
    assert ok.output is None, ok.output  # the fallback branch was skipped
    assert [e.name for e in ok.events if e.type == "step_completed"] == ["safe_task"]

    bad = error_handling_workflow.run("caf\u00e9")
    assert bad.has_succeeded, bad
    assert bad.output == "recovered: caf?", bad.output
    print("clean input:", ok.output)
    print("result:", bad.output)
