"""flux-tasks.md, "Graph Construction": a validated graph whose edges have conditions.

A positive number goes from task1 to task2, anything else to task3; the other branch is skipped.
"""

from taskloom import GraphError, WorkflowExecutionContext, task, workflow
from taskloom.tasks import Graph

ran: list[str] = []


@task
def task1_func(number: int) -> int:
    ran.append("task1")
    return number


@task
def task2_func(number: int) -> str:
    ran.append("task2")
    return f"{number} is positive"


@task
def task3_func(number: int) -> str:
    ran.append("task3")
    return f"{number} is not positive"


# Create a more complex graph with conditions
graph = (
    Graph("complex_workflow")
    # Add nodes
    .add_node("task1", task1_func)
    .add_node("task2", task2_func)
    .add_node("task3", task3_func)
    # Add edges with conditions
    .add_edge("task1", "task2", condition=lambda result: result > 0)
    .add_edge("task1", "task3", condition=lambda result: result <= 0)
    # Define workflow boundaries
    .start_with("task1")
    .end_with("task2")
    .end_with("task3")
    # Validate graph structure
    .validate()
)


@workflow
async def complex_workflow(ctx: WorkflowExecutionContext[int]):
    return await graph(ctx.input)


if __name__ == "__main__":
    positive = complex_workflow.run(5)
    assert positive.has_succeeded, positive
    assert positive.output == "5 is positive", positive.output
    assert ran == ["task1", "task2"], ran

    ran.clear()
    negative = complex_workflow.run(-3)
    assert negative.has_succeeded, negative
    assert negative.output == "-3 is not positive", negative.output
    assert ran == ["task1", "task3"], ran

    try:  # Automatic cycle detection
        Graph("loop").add_node("a", task1_func).add_node("b", task2_func).add_edge("a", "b").add_edge(
            "b", "a"
        ).start_with("a").end_with("b").validate()
    except GraphError as error:
        print("cycle rejected:", error)
    else:
        raise AssertionError("a cycle should be rejected")

    print("result:", [positive.output, negative.output])
