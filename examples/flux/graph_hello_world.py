"""flux-tasks.md, "Graph-based Task Composition": the hello-world graph."""

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import Graph


@task
def get_name(input: str) -> str:
    return input


@task
def say_hello(name: str) -> str:
    return f"Hello, {name}"


@workflow
async def graph_workflow(ctx: WorkflowExecutionContext[str]):
    # Create a graph named "hello_world"
    hello = (
        Graph("hello_world")
        # Add nodes (tasks)
        .add_node("get_name", get_name)
        .add_node("say_hello", say_hello)
        # Define edges (dependencies)
        .add_edge("get_name", "say_hello")
        # Define entry and exit points
        .start_with("get_name")
        .end_with("say_hello")
    )

    # Execute the graph
    return await hello(ctx.input)


if __name__ == "__main__":
    ctx = graph_workflow.run("World")
    assert ctx.has_succeeded, ctx
    assert ctx.output == "Hello, World", ctx.output
    print("result:", ctx.output)
