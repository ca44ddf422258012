"""Workflows and a task that a real worker runs while the browser tests drive them through the dashboard.

Where a test must see a state before the next one (progress at one value, then at another), the task
waits for a gate file the test creates: the test decides when the work moves on, so nothing depends on
timing. Every wait has a deadline, so a test that fails never leaves a worker thread waiting for ever.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from taskloom import TaskControl, WorkflowExecutionContext, task, workflow
from taskloom.tasks import Graph, pause, receive

#: the longest any task here waits for its gate or runs
DEADLINE_SECONDS = 60.0


def wait_for_gate(gate: Path, tc: TaskControl | None = None) -> bool:
    """True once ``gate`` exists; False when the deadline passes or the task is asked to stop."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if gate.exists():
            return True
        if tc is not None and tc.should_stop:
            return False
        time.sleep(0.02)
    return False


@task
def prepare(order: str) -> str:
    return f"order {order}"


@task
def climb(tc: TaskControl, gates: str, stages: int) -> int:
    """Reports progress ``stage / stages`` and waits at each stage for the test to open its gate."""
    for stage in range(stages):
        tc.update_progress(stage / stages * 100, f"stage {stage} of {stages}")
        tc.log(f"waiting at stage {stage}")
        wait_for_gate(Path(gates) / str(stage), tc)
    tc.update_progress(100, "all stages done")
    return stages


@task
def shout(text: str) -> str:
    return text.upper()


@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task.with_options(retry_max_attempts=2, retry_delay=0.01, retry_backoff=1)
def reserve_stock(item: str) -> None:
    raise LookupError(f"no stock left for {item!r}")


@workflow
async def gated(ctx: WorkflowExecutionContext[dict[str, Any]]) -> str:
    """Progress the test moves on by opening gates; the workflow of the live-progress test."""
    what = await prepare(ctx.input["order"])
    await climb(ctx.input["gates"], ctx.input.get("stages", 2))  # type: ignore[call-arg]  # tc is injected
    return f"{what}: done"


@workflow
async def approval(ctx: WorkflowExecutionContext[dict[str, Any]]) -> dict[str, Any]:
    """Pauses for a decision; the dashboard resumes it with JSON input."""
    request = await shout(ctx.input["item"])
    decision = await pause("approve")
    return {"item": request, "decision": decision}


@workflow
async def endless(ctx: WorkflowExecutionContext[None]) -> int:
    """Short steps for a long time: runs until cancelled."""
    steps = 0
    while steps < DEADLINE_SECONDS * 10:
        await nap(0.1)
        steps += 1
    return steps


@workflow
async def broken(ctx: WorkflowExecutionContext[str]) -> None:
    """Retries a step twice, then fails with a traceback through this file."""
    await shout(ctx.input)
    await reserve_stock(ctx.input)


@task
def ticker(tc: TaskControl, ticks: int) -> str:
    """A task instance: counts, reporting progress, until it is asked to stop; returns where it stopped."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    tick = 0
    while tick < ticks and time.monotonic() < deadline:
        if tc.should_stop:
            return f"stopped at tick {tick}"
        tc.update_progress(tick / ticks * 100, f"tick {tick}")
        if tick % 10 == 0:
            tc.log(f"tick {tick}")
        tick += 1
        time.sleep(0.05)
    return "counted to the end"


# -- a graph, messages, a child, a schedule -------------------------------------------------------------
@task
def measure(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def express(order: dict[str, Any]) -> str:
    return f"express {order['n']}"


@task
def standard(order: dict[str, Any]) -> str:
    """Waits for the test's gate: the page must show this node running before it completes."""
    wait_for_gate(Path(order["gate"]))
    return f"standard {order['n']}"


@task
def label(text: str) -> str:
    return f"label: {text}"


def is_large(order: dict[str, Any]) -> bool:
    return bool(order["n"] > 10)


def is_small(order: dict[str, Any]) -> bool:
    return not is_large(order)


@workflow
async def shipping(ctx: WorkflowExecutionContext[dict[str, Any]]) -> str:
    """A Graph with a branch: a small order goes through ``standard``, and ``express`` is skipped."""
    graph = (
        Graph("shipping")
        .add_node("measure", measure)
        .add_node("express", express)
        .add_node("standard", standard)
        .add_node("label", label)
        .add_edge("measure", "express", condition=is_large)
        .add_edge("measure", "standard", condition=is_small)
        .add_edge("express", "label")
        .add_edge("standard", "label")
        .start_with("measure")
        .end_with("label")
    )
    result: str = await graph(ctx.input)
    return result


async def approve(text: str) -> Any:
    """A plain async function as a node: it pauses until someone resumes the execution."""
    return await pause("approve")


@workflow
async def review(ctx: WorkflowExecutionContext[str]) -> str:
    """A Graph that pauses in its middle node: after the resume, its first node is replayed."""
    graph = (
        Graph("review")
        .add_node("draft", shout)
        .add_node("approve", approve)
        .add_node("publish", label)
        .add_edge("draft", "approve")
        .add_edge("approve", "publish")
        .start_with("draft")
        .end_with("publish")
    )
    result: str = await graph(ctx.input)
    return result


@workflow
async def inbox(ctx: WorkflowExecutionContext[None]) -> str:
    """Waits for a message of topic ``greeting`` (sent from the dashboard) and answers it by a step."""
    greeting = await receive("greeting")
    answer: str = await shout(str(greeting))
    return answer


@workflow
async def packing(ctx: WorkflowExecutionContext[str]) -> str:
    """The child of ``ordering``."""
    packed: str = await shout(ctx.input)
    return packed


@workflow
async def ordering(ctx: WorkflowExecutionContext[str]) -> str:
    """Runs ``packing`` as a child workflow."""
    packed: str = await packing(ctx.input)
    return f"ordered {packed}"


@workflow(schedule="0 3 1 1 *")
async def yearly(ctx: WorkflowExecutionContext[None]) -> str:
    """Scheduled once a year (so never during a test): the worker stores its schedule when it starts."""
    return "happy new year"
