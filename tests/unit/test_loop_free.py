"""``Workflow.run`` without an event loop (taskloom.loop_free, issue 12's one-step process).

Where nothing imported asyncio, ``run`` drives the workflow's coroutine itself: plain sync steps never
suspend it, so a run of them loads no event loop. The first await that needs one moves the rest of the run
onto ``asyncio.Runner``; a body that calls asyncio itself is driven again on a loop, before any verdict.

A test process always has asyncio loaded, so these tests make ``run`` believe it is not
(``workflow._asyncio_loaded``); that the decision is right in a fresh process is checked by
tests/perf/test_import.py, and what it saves by benchmarks/bench_steps.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import sys
import threading
import types
from collections.abc import Generator
from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, loop_free, task, workflow
from taskloom.context import current_scope
from taskloom.events import EventType
from taskloom.store import default_store

#: the module (``taskloom.workflow`` the attribute is the decorator)
workflow_module = importlib.import_module("taskloom.workflow")
ran: list[str] = []
marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="outside")


class LoopStarted(Exception):
    """Raised by asyncio's runners when a test expects the run to need no loop."""


@pytest.fixture(autouse=True)
def without_asyncio(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``run`` sees no asyncio loaded; returns the list of loops started (by loop_free.drive or run)."""
    monkeypatch.setattr(workflow_module, "_asyncio_loaded", lambda: False)
    ran.clear()
    loops: list[str] = []
    real_runner, real_run = asyncio.Runner, asyncio.run

    class CountingRunner(real_runner):  # type: ignore[misc, valid-type]
        def __enter__(self) -> Any:
            loops.append("runner")
            return super().__enter__()

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        loops.append("run")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(asyncio, "Runner", CountingRunner)
    monkeypatch.setattr(asyncio, "run", counting_run)
    return loops


@task
def note(name: str) -> str:
    ran.append(name)
    marker.set(f"set by {name}")
    return name.upper()


@task
async def async_note(name: str) -> str:
    ran.append(name)
    return name.upper() + "!"


@task(retry_max_attempts=2, retry_delay=0)
def flaky(name: str) -> str:
    ran.append(name)
    if ran.count(name) == 1:
        raise ConnectionError(f"{name} failed once")
    return name.upper()


@task
async def sleeps_itself(name: str) -> str:
    ran.append(name)
    await asyncio.sleep(0.001)  # needs a running loop
    return name.upper()


@workflow
async def plain_steps(ctx: WorkflowExecutionContext[str]) -> list[str]:
    return [await note(f"{ctx.input}-1"), await async_note(f"{ctx.input}-2"), await note(f"{ctx.input}-3")]


@workflow
async def needs_a_loop_midway(ctx: WorkflowExecutionContext[str]) -> list[str]:
    first = await note("before")
    second = await flaky("retried")  # a policy: the general path, on a loop
    third = await note("after")
    return [first, second, third, str(loop_free.loop_running())]


@workflow
async def calls_asyncio_in_its_body(ctx: WorkflowExecutionContext[None]) -> list[str]:
    first = await note("before")
    await asyncio.sleep(0.001)
    return [first, await note("after")]


@workflow
async def step_calls_asyncio(ctx: WorkflowExecutionContext[None]) -> list[str]:
    return [await note("before"), await sleeps_itself("sleeper")]


@workflow
async def maps(ctx: WorkflowExecutionContext[list[str]]) -> list[str]:
    return [await note("first"), *await note.map(ctx.input)]


@workflow
async def fails(ctx: WorkflowExecutionContext[None]) -> str:
    await note("before")
    raise ValueError("the body's own error")


def outcomes(execution_id: str) -> list[tuple[str, str | None]]:
    return [
        (e.type.value, e.step_id)
        for e in default_store().load_events(execution_id)
        if e.type in (EventType.STEP_COMPLETED, EventType.STEP_FAILED, EventType.EXECUTION_FAILED)
    ]


def test_plain_steps_run_to_the_end_without_a_loop_on_the_callers_thread(without_asyncio: list[str]) -> None:
    caller = threading.get_ident()
    seen: list[int] = []
    marker.set("outside")
    original = note.fn

    def spy(name: str) -> str:
        seen.append(threading.get_ident())
        return original(name)

    note.fn = spy
    try:
        ctx = plain_steps.run("a")
    finally:
        note.fn = original

    assert (ctx.status, ctx.output) == ("completed", ["A-1", "A-2!", "A-3"])
    assert without_asyncio == []  # no event loop was made for it
    assert seen == [caller, caller]
    assert outcomes(ctx.execution_id) == [("step_completed", "1"), ("step_completed", "2"), ("step_completed", "3")]
    # as under asyncio.run, what the run set in its context stays there
    assert marker.get() == "outside" and current_scope.get() is None


def test_a_step_that_needs_a_loop_moves_the_rest_of_the_run_onto_one_without_running_anything_twice(
    without_asyncio: list[str],
) -> None:
    ctx = needs_a_loop_midway.run(None)

    assert (ctx.status, ctx.output) == ("completed", ["BEFORE", "RETRIED", "AFTER", "True"])
    assert without_asyncio == ["runner"]  # one loop, from the retried step on
    assert ran == ["before", "retried", "retried", "after"]
    assert outcomes(ctx.execution_id) == [("step_completed", "1"), ("step_completed", "2"), ("step_completed", "3")]


def test_a_body_that_calls_asyncio_itself_is_driven_again_on_a_loop_its_done_steps_not_run_again(
    without_asyncio: list[str],
) -> None:
    ctx = calls_asyncio_in_its_body.run(None)

    assert (ctx.status, ctx.output) == ("completed", ["BEFORE", "AFTER"])
    assert without_asyncio == ["run"]
    assert ran == ["before", "after"]  # step 1 was answered from the store the second time
    assert outcomes(ctx.execution_id) == [("step_completed", "1"), ("step_completed", "2")]
    record = default_store().get_execution(ctx.execution_id)
    assert record is not None and (record.status, record.crashes, record.lease_owner) == ("completed", 0, None)


def test_a_step_that_calls_asyncio_records_no_failure_and_runs_again_on_a_loop(without_asyncio: list[str]) -> None:
    ctx = step_calls_asyncio.run(None)

    assert (ctx.status, ctx.output) == ("completed", ["BEFORE", "SLEEPER"])
    assert without_asyncio == ["run"]
    assert ran == ["before", "sleeper", "sleeper"]  # its first attempt met no loop and recorded nothing
    assert outcomes(ctx.execution_id) == [("step_completed", "1"), ("step_completed", "2")]


def test_a_map_goes_on_on_a_loop(without_asyncio: list[str]) -> None:
    ctx = maps.run(["x", "y", "z"])

    assert (ctx.status, ctx.output) == ("completed", ["FIRST", "X", "Y", "Z"])
    assert without_asyncio == ["runner"]
    assert sorted(ran) == ["first", "x", "y", "z"]


def test_the_bodys_own_error_fails_the_execution_as_on_a_loop(without_asyncio: list[str]) -> None:
    ctx = fails.run(None)

    assert ctx.status == "failed" and isinstance(ctx.output, ValueError)
    assert without_asyncio == []
    assert outcomes(ctx.execution_id) == [("step_completed", "1"), ("execution_failed", None)]


def test_a_run_called_inside_a_running_loop_is_still_refused() -> None:
    async def inside() -> None:
        plain_steps.run("x")

    with pytest.raises(Exception, match=r"inside a running event loop; use `await plain_steps.arun"):
        asyncio.run(inside())
    assert ran == []


def test_drive_hands_what_the_coroutine_yields_to_the_loops_task() -> None:
    async def yields_then_waits() -> str:
        await asyncio.sleep(0)  # a bare yield, made without a loop: handed to the loop's task
        current = asyncio.current_task()
        assert current is not None
        asyncio.get_running_loop().call_soon(current.cancel)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "cancelled where it waited"
        return "not cancelled"

    assert loop_free.drive(plain_coroutine("done")) == "done"
    assert loop_free.drive(yields_then_waits()) == "cancelled where it waited"


def test_what_the_loop_throws_at_the_first_yield_goes_into_the_coroutine_where_it_waits() -> None:
    @types.coroutine
    def bare_yield() -> Generator[None, None, None]:
        yield

    async def waits() -> str:
        try:
            await bare_yield()
        except KeyError as error:
            return f"caught {error}"
        return "nothing thrown"

    coro = waits()
    resumed = loop_free._resume(coro, coro.send(None))
    assert next(resumed) is None  # the coroutine's own yield, passed on
    with pytest.raises(StopIteration) as stopped:
        resumed.throw(KeyError("k"))
    assert stopped.value.value == "caught 'k'"


async def plain_coroutine(value: str) -> str:
    return value


@task
def raises_runtime_error(name: str) -> str:
    ran.append(name)
    raise RuntimeError(f"{name}: the step's own RuntimeError")


@workflow
async def own_runtime_error(ctx: WorkflowExecutionContext[None]) -> str:
    return await raises_runtime_error("raiser")


def test_a_runtime_error_of_the_steps_own_is_its_failure_not_a_missing_loop(without_asyncio: list[str]) -> None:
    ctx = own_runtime_error.run(None)

    assert ctx.status == "failed" and str(ctx.output) == "raiser: the step's own RuntimeError"
    assert without_asyncio == []  # not driven again on a loop: only asyncio's own complaint is
    assert ran == ["raiser"]
    assert outcomes(ctx.execution_id) == [("step_failed", "1"), ("execution_failed", None)]


def test_current_task_is_asyncios_on_a_loop_and_no_loop_elsewhere() -> None:
    async def inside() -> tuple[Any, Any]:
        return loop_free.current_task(), asyncio.current_task()

    ours, asyncios = asyncio.run(inside())
    assert ours is asyncios and ours is not None
    assert loop_free.current_task() is loop_free.NO_LOOP and not loop_free.loop_running()
    assert repr(loop_free.NO_LOOP) == "<no event loop>" and repr(loop_free.NEEDS_LOOP) == "<needs an event loop>"


def test_is_cancelled_knows_asyncios_cancellation_and_needs_no_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_free.is_cancelled(asyncio.CancelledError())
    assert not loop_free.is_cancelled(KeyboardInterrupt())
    assert loop_free.cancelled_error() is asyncio.CancelledError
    assert loop_free.LoopNeeded("e-1").args == ("e-1",) and loop_free.LoopNeeded("e-1").execution_id == "e-1"
    monkeypatch.delitem(sys.modules, "asyncio")  # a process that never imported it
    assert not loop_free.is_cancelled(asyncio.CancelledError())
    assert loop_free.current_task() is loop_free.NO_LOOP
