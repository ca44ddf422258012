"""Workflows of the group-commit tests, run by a test process and by processes it kills on purpose.

``GROUPAPP_DIR`` is a folder of the test: ``effects`` gets one line per step body that ran (its item),
and the file ``armed`` makes the next run end its process with SIGKILL at the point under test (the run
removes it first, so the rerun that follows goes through).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from processes import wait_for

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.tasks import Graph, parallel

ITEMS = 12


def _folder() -> Path:
    return Path(os.environ["GROUPAPP_DIR"])


def ran(item: int) -> None:
    with (_folder() / "effects").open("a") as effects:
        effects.write(f"{item}\n")


def effects() -> list[int]:
    path = _folder() / "effects"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def die_if_armed() -> None:
    """End this process as a power cut would (no cleanup, no finally) if the test armed it."""
    armed = _folder() / "armed"
    if armed.exists():
        armed.unlink()
        os.kill(os.getpid(), signal.SIGKILL)


@task
def item(n: int) -> int:
    if n == 0 and (_folder() / "armed").exists():
        # the crash comes while the other items' outcomes are being written (or just written)
        wait_for(lambda: len(set(effects())) >= ITEMS - 1, timeout=60, what="the other items to run")
        die_if_armed()
    ran(n)
    return n * n


@task
async def settles(n: int) -> int:
    await asyncio.sleep(0)  # every branch resumes in the same pass of the loop
    return n


@workflow
async def squares(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await item.map(range(ITEMS))  # type: ignore[no-any-return]


@workflow
async def squares_then_crash(ctx: WorkflowExecutionContext[None]) -> list[int]:
    values: list[int] = await item.map(range(1, ITEMS + 1))
    die_if_armed()  # the map returned: every outcome must be in the store already
    return values


@workflow
async def branches(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await parallel(*(settles(n) for n in range(ITEMS)))


@workflow
async def mapped_async(ctx: WorkflowExecutionContext[None]) -> list[int]:
    return await settles.map(range(ITEMS))  # type: ignore[no-any-return]


def fan_graph() -> Graph:
    """``root``, then one wave of ITEMS nodes that each take its result."""
    graph = Graph("fan").add_node("root", settles).start_with("root")
    for n in range(ITEMS):
        graph.add_node(f"leaf{n}", settles).add_edge("root", f"leaf{n}").end_with(f"leaf{n}")
    return graph


@workflow
async def graph_wave(ctx: WorkflowExecutionContext[None]) -> object:
    return await fan_graph()(7)


def main(argv: list[str]) -> None:
    """``python -c "import groupapp; groupapp.main([WORKFLOW, EXECUTION_ID])"``: run it in this process."""
    flows = {"squares": squares, "squares_then_crash": squares_then_crash}
    flows[argv[0]].run(execution_id=argv[1])
