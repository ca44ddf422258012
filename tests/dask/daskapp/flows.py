"""Workflows whose step bodies run on Dask workers; every body writes a line to a file, so tests count runs.

``DASKAPP_DIR`` (in the environment of the test, its driver processes and, through the cluster, its Dask
workers) is where the lines go: ``runs.log`` gets ``<what> <item> <pid>`` per start and per finish.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskloom import TaskControl, task, workflow
from taskloom.tasks import Graph, parallel

#: the longest any body waits for the test to let it go (so nothing waits forever if a test fails)
BODY_DEADLINE = 20.0


def _dir() -> Path:
    return Path(os.environ["DASKAPP_DIR"])


def note(what: str, item: object) -> None:
    """Append one line to runs.log (O_APPEND: lines of concurrent workers do not mix)."""
    with (_dir() / "runs.log").open("a") as log:
        log.write(f"{what} {item} {os.getpid()}\n")


def lines() -> list[list[str]]:
    path = _dir() / "runs.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_file(name: str) -> None:
    """Block (a body) until the test creates ``name`` in DASKAPP_DIR; polling with a deadline."""
    deadline = time.monotonic() + BODY_DEADLINE
    while not (_dir() / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


@task
def double(item: int) -> tuple[int, int]:
    note("start", item)
    note("done", item)
    return item * 2, os.getpid()


@task
def where(label: str) -> tuple[str, int]:
    return label, os.getpid()


@task
def held(item: int) -> int:
    """Done at once, except item 5, which waits for the file ``release`` (holding one of the two workers)."""
    note("start", item)
    if item == 5:
        wait_for_file("release")
    note("done", item)
    return item * 10


@task(retry_max_attempts=2)
def victim(item: int) -> int:
    """Item 0 waits (on a Dask worker) until the test has killed that worker; the others are quick."""
    note("start", item)
    if item == 0 and not (_dir() / "killed").exists():
        wait_for_file("never")  # the test kills this worker now
    elif item != 0:
        time.sleep(0.05)
    note("done", item)
    return item + 100


@task(retry_max_attempts=2, retry_delay=0)
def flaky(name: str) -> str:
    """Fails its first two attempts (counted in a file, since each attempt may run in another process)."""
    note("attempt", name)
    if sum(1 for line in lines() if line[:2] == ["attempt", name]) <= 2:
        raise ValueError(f"{name}: not yet")
    return f"{name} ok"


def _fallback(seconds: float) -> str:
    return f"fallback after {os.getpid()}"


@task(timeout=0.5, fallback=_fallback)
def slow(tc: TaskControl, seconds: float) -> str:
    """Runs past its timeout until it is told to stop; notes that it saw ``should_stop``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if tc.should_stop:
            note("stopped", "slow")
            return "stopped"
        time.sleep(0.01)
    return "ran out"


def _undo(item: int) -> None:
    note("rollback", item)


@task(rollback=_undo)
def broken(item: int) -> int:
    note("start-broken", item)
    raise KeyError(f"item {item}")


@task
def reporter(tc: TaskControl, steps: int) -> tuple[str, int]:
    """Reports progress and a log, then runs until asked to stop."""
    tc.log("reporter begins", level="warning", step=1)
    tc.update_progress(50, "half way")
    deadline = time.monotonic() + BODY_DEADLINE
    while not tc.should_stop and time.monotonic() < deadline:
        time.sleep(0.01)
    return ("stopped" if tc.should_stop else "not stopped"), os.getpid()


graph = (
    Graph("fan")
    .add_node("a", where.with_options(name="node_a"))
    .add_node("b", where.with_options(name="node_b"))
    .add_edge("a", "b")
    .start_with("a")
    .end_with("b")
)


@workflow
async def spread(ctx):  # type: ignore[no-untyped-def]
    """A sequential step, a map, a parallel and a graph: every body reports the pid it ran in."""
    first = await where("sequential")
    mapped = await double.map(ctx.input)
    both = await parallel(where("left"), where("right"))
    nodes = await graph("g")
    return {"first": first, "mapped": mapped, "parallel": both, "graph": nodes}


@workflow
async def hold(ctx):  # type: ignore[no-untyped-def]
    return await held.map(range(6))


@workflow
async def survive(ctx):  # type: ignore[no-untyped-def]
    return await victim.map(range(ctx.input))


@workflow
async def policies(ctx):  # type: ignore[no-untyped-def]
    retried = await flaky("f")
    timed_out = await slow(30.0)
    try:
        await broken(7)
    except KeyError as error:
        failed = f"KeyError {error}"
    return {"retried": retried, "timed_out": timed_out, "failed": failed}


@task(secret_requests=["API_KEY"])
def signs(tc: TaskControl, data: str, secrets: dict[str, str] = {}) -> tuple[str, int]:  # noqa: B006
    tc.log(f"signing {data} with {secrets['API_KEY']}")
    tc.update_progress(50, f"half signed with {secrets['API_KEY']}")
    return f"{data} signed by {secrets['API_KEY']}", os.getpid()


@task(secret_requests=["API_KEY"])
def refused(secrets: dict[str, str] = {}) -> None:  # noqa: B006
    raise PermissionError(f"the API refused {secrets['API_KEY']}")


@workflow
async def secretive(ctx):  # type: ignore[no-untyped-def]
    signed = await signs("doc")
    try:
        await refused()
    except PermissionError as error:
        return signed, str(error)
    return signed, None


@task
def waits_for_stop(tc: TaskControl) -> str:
    note("start", "branch")
    deadline = time.monotonic() + BODY_DEADLINE
    while not tc.should_stop and time.monotonic() < deadline:
        time.sleep(0.01)
    note("stopped" if tc.should_stop else "timed-out", "branch")
    return "stopped"


@task
def fails_once_the_branch_runs() -> None:
    deadline = time.monotonic() + BODY_DEADLINE
    while ["start", "branch"] not in [line[:2] for line in lines()] and time.monotonic() < deadline:
        time.sleep(0.01)
    raise ValueError("sibling failed")


@workflow
async def cancelled_branch(ctx):  # type: ignore[no-untyped-def]
    try:
        await parallel(waits_for_stop(), fails_once_the_branch_runs())
    except ValueError as error:
        return str(error)
    return None
