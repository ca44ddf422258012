"""parallel and pipeline: composing task calls inside (or outside) a workflow."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from taskloom.errors import WorkflowSignal


async def _settle(awaitable: Any) -> tuple[bool, Any]:
    if not inspect.isawaitable(awaitable):
        return True, awaitable
    try:
        return True, await awaitable
    except BaseException as error:  # collected, re-raised below once every branch has finished
        return False, error


async def gather_steps(awaitables: Iterable[Any]) -> list[Any]:
    """Await all concurrently and return their results in order.

    Every branch runs to its end (so every step's outcome is recorded) before the first failure is
    raised; a pause in any branch wins over errors, so a paused workflow stays paused.
    """
    outcomes = await asyncio.gather(*(_settle(a) for a in awaitables))
    failures = [value for ok, value in outcomes if not ok]
    if failures:
        signal = next((f for f in failures if isinstance(f, WorkflowSignal)), None)
        raise signal if signal is not None else failures[0]
    return [value for _, value in outcomes]


async def parallel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Run task calls concurrently; results in the order given.

    >>> results = await parallel(task1(), task2(), task3())
    """
    return await gather_steps(awaitables)


async def pipeline(*tasks: Callable[[Any], Any], input: Any = None) -> Any:
    """Feed ``input`` to the first task, its result to the next, and so on; return the last result."""
    if not tasks:
        raise ValueError("pipeline() needs at least one task")
    for position, step in enumerate(tasks, 1):
        if not callable(step):
            raise TypeError(f"pipeline(): argument {position} is {step!r}, not a task or function")
    result = input
    for step in tasks:
        result = step(result)
        if inspect.isawaitable(result):
            result = await result
    return result
