"""Graph: building, validation, conditional edges, joins that run once, skipped branches, replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from taskloom import GraphError, WorkflowExecutionContext, task, workflow
from taskloom.events import EventType
from taskloom.tasks import Graph, pause

ran: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def reset_ran() -> None:
    ran.clear()


@task
def get_name(input: str) -> str:
    ran["get_name"] += 1
    return input


@task
def say_hello(name: str) -> str:
    ran["say_hello"] += 1
    return f"Hello, {name}"


@task
def number(n: int) -> int:
    ran["number"] += 1
    return n


@task
def positive(n: int) -> str:
    ran["positive"] += 1
    return f"{n} is positive"


@task
def not_positive(n: int) -> str:
    ran["not_positive"] += 1
    return f"{n} is not positive"


@task
async def plus_one(n: int) -> int:
    ran["plus_one"] += 1
    return n + 1


@task
def times_ten(n: int) -> int:
    ran["times_ten"] += 1
    return n * 10


@task
def join(upstream: dict[str, int]) -> dict[str, int]:
    ran["join"] += 1
    return upstream


def hello_graph() -> Graph:
    return (
        Graph("hello_world")
        .add_node("get_name", get_name)
        .add_node("say_hello", say_hello)
        .add_edge("get_name", "say_hello")
        .start_with("get_name")
        .end_with("say_hello")
    )


def branching_graph() -> Graph:
    return (
        Graph("complex_workflow")
        .add_node("task1", number)
        .add_node("task2", positive)
        .add_node("task3", not_positive)
        .add_edge("task1", "task2", condition=lambda result: result > 0)
        .add_edge("task1", "task3", condition=lambda result: result <= 0)
        .start_with("task1")
        .end_with("task2")
        .end_with("task3")
        .validate()
    )


def diamond_graph() -> Graph:
    """a -> b, a -> c, b -> d, c -> d: d is a join."""
    return (
        Graph("diamond")
        .add_node("a", number)
        .add_node("b", plus_one)
        .add_node("c", times_ten)
        .add_node("d", join)
        .add_edge("a", "b")
        .add_edge("a", "c")
        .add_edge("b", "d")
        .add_edge("c", "d")
        .start_with("a")
        .end_with("d")
    )


def run_graph(graph: Graph, value: Any) -> WorkflowExecutionContext[Any]:
    @workflow
    async def graph_workflow(ctx: WorkflowExecutionContext[Any]) -> Any:
        return await graph(ctx.input)

    return graph_workflow.run(value)


def completed(ctx: WorkflowExecutionContext[Any]) -> dict[str | None, str | None]:
    return {e.step_id: e.name for e in ctx.events if e.type is EventType.STEP_COMPLETED}


# -- running ---------------------------------------------------------------------------------------
def test_hello_world_graph() -> None:
    ctx = run_graph(hello_graph(), "World")
    assert ctx.output == "Hello, World"
    assert completed(ctx) == {"1": "get_name", "2": "say_hello"}


def test_true_condition_takes_its_branch_and_skips_the_other() -> None:
    ctx = run_graph(branching_graph(), 5)
    assert ctx.output == "5 is positive"
    assert ran == {"number": 1, "positive": 1}


def test_false_condition_skips_its_branch() -> None:
    ctx = run_graph(branching_graph(), -3)
    assert ctx.output == "-3 is not positive"
    assert ran == {"number": 1, "not_positive": 1}


def test_join_runs_once_with_a_dict_of_upstream_results() -> None:
    ctx = run_graph(diamond_graph(), 4)
    assert ctx.output == {"b": 5, "c": 40}
    assert ran == {"number": 1, "plus_one": 1, "times_ten": 1, "join": 1}
    assert completed(ctx) == {"1": "number", "2": "plus_one", "3": "times_ten", "4": "join"}


def test_join_waits_only_for_edges_that_were_taken() -> None:
    graph = (
        Graph("half_diamond")
        .add_node("a", number)
        .add_node("b", plus_one)
        .add_node("c", times_ten)
        .add_node("d", join)
        .add_edge("a", "b", condition=lambda n: n > 100)
        .add_edge("a", "c")
        .add_edge("b", "d")
        .add_edge("c", "d")
        .start_with("a")
        .end_with("d")
    )
    ctx = run_graph(graph, 2)
    assert ctx.output == 20  # one edge taken into the join: it receives that result itself
    assert ran == {"number": 1, "times_ten": 1, "join": 1}


def test_everything_behind_a_skipped_node_is_skipped() -> None:
    graph = (
        Graph("skips")
        .add_node("start", number)
        .add_node("no", plus_one)
        .add_node("after_no", times_ten)
        .add_node("yes", say_hello)
        .add_edge("start", "no", condition=lambda n: False)
        .add_edge("no", "after_no")
        .add_edge("start", "yes")
        .start_with("start")
        .end_with("after_no")
        .end_with("yes")
    )
    ctx = run_graph(graph, 1)
    assert ctx.output == "Hello, 1"
    assert ran == {"number": 1, "say_hello": 1}


def test_several_end_nodes_reached_give_a_dict() -> None:
    graph = (
        Graph("fan_out")
        .add_node("n", number)
        .add_node("b", plus_one)
        .add_node("c", times_ten)
        .add_edge("n", "b")
        .add_edge("n", "c")
        .start_with("n")
        .end_with("b")
        .end_with("c")
    )
    assert run_graph(graph, 3).output == {"b": 4, "c": 30}


def test_no_end_node_reached_gives_none() -> None:
    graph = (
        Graph("dead_end")
        .add_node("n", number)
        .add_node("b", plus_one)
        .add_edge("n", "b", condition=lambda n: False)
        .start_with("n")
        .end_with("b")
    )
    assert run_graph(graph, 3).output is None
    assert ran == {"number": 1}


def test_plain_functions_can_be_nodes() -> None:
    graph = (
        Graph("plain")
        .add_node("first", lambda x: x + 1)
        .add_node("second", times_ten)
        .add_edge("first", "second")
        .start_with("first")
        .end_with("second")
    )
    ctx = run_graph(graph, 1)
    assert ctx.output == 20
    assert completed(ctx) == {"1": "times_ten"}


def test_graph_outside_a_workflow() -> None:
    assert asyncio.run(diamond_graph()(1)) == {"b": 2, "c": 10}
    assert ran["join"] == 1


def test_graph_steps_are_replayed_not_rerun() -> None:
    graph = diamond_graph()

    @workflow
    async def graph_then_pause(ctx: WorkflowExecutionContext[int]) -> Any:
        result = await graph(ctx.input)
        return result, await pause("check")

    ctx = graph_then_pause.run(2)
    assert sum(ran.values()) == 4
    done = graph_then_pause.resume(ctx.execution_id, "ok")
    assert done.output == ({"b": 3, "c": 20}, "ok")
    assert sum(ran.values()) == 4


def test_graph_step_ids_are_the_same_on_every_run() -> None:
    first = completed(run_graph(diamond_graph(), 1))
    second = completed(run_graph(diamond_graph(), 7))
    assert first == second


def test_failing_node_fails_the_graph_with_its_error() -> None:
    @task
    def broken(n: int) -> int:
        raise ZeroDivisionError("node broke")

    graph = (
        Graph("broken")
        .add_node("a", number)
        .add_node("b", broken)
        .add_edge("a", "b")
        .start_with("a")
        .end_with("b")
        .validate()
    )
    ctx = run_graph(graph, 1)
    assert ctx.has_failed
    assert isinstance(ctx.output, ZeroDivisionError)


def test_condition_that_raises_is_a_graph_error_naming_the_edge() -> None:
    graph = (
        Graph("bad_condition")
        .add_node("a", number)
        .add_node("b", plus_one)
        .add_edge("a", "b", condition=lambda n: n.missing)
        .start_with("a")
        .end_with("b")
    )
    ctx = run_graph(graph, 1)
    assert isinstance(ctx.output, GraphError)
    assert "'a' -> 'b'" in str(ctx.output)


def test_an_async_condition_that_raises_is_a_graph_error_naming_the_edge() -> None:
    async def condition(n: int) -> bool:
        await asyncio.sleep(0)
        raise KeyError("no such customer")

    graph = (
        Graph("async_condition")
        .add_node("a", number)
        .add_node("b", plus_one)
        .add_edge("a", "b", condition=condition)
        .start_with("a")
        .end_with("b")
    )
    with pytest.raises(GraphError, match="condition of edge 'a' -> 'b' raised KeyError") as caught:
        asyncio.run(graph(1))
    assert isinstance(caught.value.__cause__, KeyError)


# -- validation ------------------------------------------------------------------------------------
def test_validate_returns_the_graph() -> None:
    graph = hello_graph()
    assert graph.validate() is graph


def test_cycle_is_refused_naming_it() -> None:
    graph = (
        Graph("loop")
        .add_node("a", number)
        .add_node("b", number)
        .add_node("c", number)
        .add_edge("a", "b")
        .add_edge("b", "c")
        .add_edge("c", "b")
        .start_with("a")
        .end_with("c")
    )
    with pytest.raises(GraphError, match="cycle b -> c -> b"):
        graph.validate()


def test_self_loop_is_a_cycle() -> None:
    graph = Graph("self").add_node("a", number).add_edge("a", "a").start_with("a").end_with("a")
    with pytest.raises(GraphError, match="cycle a -> a"):
        graph.validate()


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (
            Graph("g").add_node("a", number).add_edge("a", "ghost").start_with("a").end_with("a"),
            "unknown node 'ghost'",
        ),
        (
            Graph("g").add_node("a", number).add_edge("ghost", "a").start_with("a").end_with("a"),
            "unknown node 'ghost'",
        ),
        (
            Graph("g").add_node("a", number).start_with("ghost").end_with("a"),
            "start node 'ghost' is not a node",
        ),
        (
            Graph("g").add_node("a", number).start_with("a").end_with("ghost"),
            "end node 'ghost' is not a node",
        ),
        (Graph("g").add_node("a", number).end_with("a"), "no start node"),
        (Graph("g").add_node("a", number).start_with("a"), "no end node"),
        (
            Graph("g").add_node("a", number).add_node("b", number).start_with("a").end_with("b"),
            "end node 'b' cannot be reached",
        ),
        (
            Graph("g")
            .add_node("a", number)
            .add_node("b", number)
            .add_node("c", number)
            .add_edge("b", "c")
            .start_with("a")
            .end_with("c"),
            "end node 'c' cannot be reached from start node 'a'",
        ),
    ],
    ids=["edge-target", "edge-source", "start", "end", "no-start", "no-end", "unreachable", "unreachable-2"],
)
def test_malformed_graph_is_refused_at_validate(graph: Graph, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        graph.validate()


def test_malformed_graph_is_refused_before_running() -> None:
    graph = Graph("bad").add_node("a", number).add_edge("a", "a").start_with("a").end_with("a")
    ctx = run_graph(graph, 1)
    assert ctx.has_failed
    assert isinstance(ctx.output, GraphError)
    assert ran == {}
    with pytest.raises(GraphError):
        asyncio.run(graph(1))


def test_graph_error_is_a_value_error() -> None:
    assert issubclass(GraphError, ValueError)


def test_building_mistakes_are_refused_at_once() -> None:
    with pytest.raises(GraphError, match="name"):
        Graph("")
    with pytest.raises(GraphError, match="added twice"):
        Graph("g").add_node("a", number).add_node("a", number)
    with pytest.raises(GraphError, match="needs a task or function"):
        Graph("g").add_node("a", "not callable")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="not callable"):
        Graph("g").add_edge("a", "b", condition="yes")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="already set"):
        Graph("g").start_with("a").start_with("b")


def test_a_graph_called_with_none_passes_none_and_without_input_passes_nothing() -> None:
    @task
    def describe(value: object = "nothing") -> str:
        return f"got {value!r}"

    graph = Graph("inputs").add_node("describe", describe).start_with("describe").end_with("describe")
    assert asyncio.run(graph(None)) == "got None"
    assert asyncio.run(graph()) == "got 'nothing'"
