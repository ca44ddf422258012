"""What a Graph records for the dashboard: its shape, which step runs which node, the skipped nodes.

These events are informational: replay never reads them, so a resumed graph records each wave once, and
an execution recorded before they existed (simulated by running with the recording switched off) still
replays and finishes.
"""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.events import Event, EventType
from taskloom.tasks import Graph, pause
from taskloom.tasks import graph as graph_module


@task
def measure(n: int) -> int:
    return n


@task
def big(n: int) -> str:
    return f"{n} is big"


@task
def small(n: int) -> str:
    return f"{n} is small"


@task
def report(text: str) -> str:
    return f"report: {text}"


async def wait_for_approval(text: str) -> Any:
    """A plain async function as a node: its pause takes a step id of the workflow's own scope."""
    return (text, await pause("approve"))


def is_big(n: int) -> bool:
    return n > 10


def routed() -> Graph:
    return (
        Graph("routed")
        .add_node("measure", measure)
        .add_node("big", big)
        .add_node("small", small)
        .add_node("report", report)
        .add_edge("measure", "big", condition=is_big)
        .add_edge("measure", "small", condition=lambda n: n <= 10)
        .add_edge("big", "report")
        .add_edge("small", "report")
        .start_with("measure")
        .end_with("report")
    )


@workflow
async def route_number(ctx: WorkflowExecutionContext[int]) -> Any:
    return await routed()(ctx.input)


@workflow
async def approve_then_report(ctx: WorkflowExecutionContext[int]) -> Any:
    graph = (
        Graph("approval")
        .add_node("measure", measure)
        .add_node("small", small)
        .add_node("approve", wait_for_approval)
        .add_node("report", report)
        .add_edge("measure", "small")
        .add_edge("small", "approve")
        .add_edge("approve", "report", condition=lambda decision: decision[1] == "yes")
        .start_with("measure")
        .end_with("report")
    )
    return await graph(ctx.input)


def of(events: list[Event], kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type is kind]


def test_a_graph_records_its_nodes_and_edges_which_step_ran_each_node_and_the_skipped_branch() -> None:
    ctx = route_number.run(3)
    assert ctx.output == "report: 3 is small"

    (shape,) = of(ctx.events, EventType.GRAPH_STARTED)
    assert shape["nodes"] == ["measure", "big", "small", "report"]
    assert [(e["source"], e["target"], e["condition"]) for e in shape["edges"]] == [
        ("measure", "big", "is_big"),
        ("measure", "small", "<lambda>"),
        ("big", "report", None),
        ("small", "report", None),
    ]
    assert (shape["start"], shape["ends"]) == ("measure", ["report"])
    waves = of(ctx.events, EventType.GRAPH_WAVE)
    assert {w["graph_id"] for w in waves} == {shape["graph_id"]} == {"routed@1"}
    assert [(w["nodes"], w["skipped"]) for w in waves] == [
        ({"measure": "1"}, []),
        ({"small": "2"}, ["big"]),
        ({"report": "3"}, []),
    ]
    started = {e.step_id: e.name for e in ctx.events if e.type is EventType.STEP_STARTED}
    assert started == {"1": "measure", "2": "small", "3": "report"}
    # neither takes a step id, and each went in with a step's write, not in a transaction of its own
    for event in ctx.events:
        if event.type in (EventType.GRAPH_STARTED, EventType.GRAPH_WAVE):
            assert event.step_id is None


def test_a_resumed_graph_records_each_wave_once_and_skipped_nodes_after_the_last_wave() -> None:
    ctx = approve_then_report.run(4)
    assert ctx.status == "paused"
    done = approve_then_report.resume(ctx.execution_id, "no")
    assert (done.status, done.output) == ("completed", None)

    assert len(of(done.events, EventType.GRAPH_STARTED)) == 1
    waves = [(w["nodes"], w["skipped"]) for w in of(done.events, EventType.GRAPH_WAVE)]
    # the plain-function node has no step of its own; "report" is skipped once approve said no
    assert waves == [({"measure": "1"}, []), ({"small": "2"}, []), ({"approve": None}, []), ({}, ["report"])]


def test_an_execution_recorded_without_graph_events_still_replays_and_records_what_runs_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patched:  # as a taskloom before these events did
        patched.setattr(graph_module._GraphLog, "open", classmethod(lambda cls, graph, unreachable: None))
        ctx = approve_then_report.run(4)
    assert ctx.status == "paused"
    assert not of(ctx.events, EventType.GRAPH_WAVE)

    done = approve_then_report.resume(ctx.execution_id, "yes")

    assert (done.status, done.output) == ("completed", "report: ('4 is small', 'yes')")
    assert of(done.events, EventType.GRAPH_STARTED) == []  # its first wave ran before: no shape to draw
    assert [(w["nodes"], w["skipped"]) for w in of(done.events, EventType.GRAPH_WAVE)] == [({"report": "4"}, [])]
