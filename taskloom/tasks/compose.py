"""parallel and pipeline: composing task calls inside (or outside) a workflow."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    """Await all concurrently and return their results in order (``task.map`` and Graph waves).

    Every branch runs to its end (so every step's outcome is recorded) before the first failure is
    raised; a pause in any branch wins over errors, so a paused workflow stays paused.
    """
    outcomes = await asyncio.gather(*(_settle(a) for a in awaitables))
    failures = [value for ok, value in outcomes if not ok]
    if failures:
        signal = next((f for f in failures if isinstance(f, WorkflowSignal)), None)
        raise signal if signal is not None else failures[0]
    return [value for _, value in outcomes]


def parallel(
    *awaitables: Awaitable[Any], max_concurrent: int | None = None, raise_on_error: bool = True
) -> Awaitable[list[Any]]:
    """Run task calls concurrently; results in the order given.

    >>> results = await parallel(task1(), task2(), task3(), max_concurrent=2)

    ``max_concurrent``: at most that many branches run at once; the others start, in the order given,
    as slots free. ``raise_on_error=True`` (the default): the first failure cancels the branches still
    running and is raised at once, as ``asyncio.TaskGroup`` does; a cancelled step records no outcome, so
    it runs again if the execution is continued. ``False``: every branch runs to its end and a failed
    one's exception takes its place in the list. Either way a ``pause()`` (or a cancel of the execution)
    in one branch suspends the workflow at once, without waiting for slow siblings: they are cancelled,
    and continuing the execution replays the branches that completed and runs the others again.

    A cancelled async body stops at its ``await``; a sync body already running in its thread cannot be
    stopped from outside: its TaskControl's ``should_stop`` turns true and whatever it still reports or
    returns is dropped (as for a step in flight at a crash, it runs again when the execution continues).

    Step ids are fixed when each task is *called*, before ``parallel`` sees it, so they do not depend
    on which branch ran first or waited for a slot. (A branch that is a plain ``async def`` coroutine
    calling several tasks gets their ids as it runs, with or without ``max_concurrent``: make such a
    branch an ``@task`` so that its calls get ids under its own step.) The arguments are checked here,
    at the call, not at the ``await``.
    """
    try:
        limit = _check_limit(max_concurrent)
        if not isinstance(raise_on_error, bool):
            raise ValueError(f"parallel(): raise_on_error must be True or False, got {raise_on_error!r}")
    except ValueError:
        _discard(awaitables)
        raise
    return _parallel(awaitables, limit, raise_on_error)


def _check_limit(max_concurrent: Any) -> int | None:
    if max_concurrent is None:
        return None
    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ValueError(
            f"parallel(): max_concurrent must be a whole number >= 1 (or None for no limit), got {max_concurrent!r}"
        )
    return max_concurrent


def _discard(awaitables: Sequence[Any]) -> None:
    """Close coroutines that will never run, so Python does not warn that they were never awaited."""
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()


async def _parallel(awaitables: Sequence[Any], limit: int | None, raise_on_error: bool) -> list[Any]:
    if not awaitables:
        return []
    slots = asyncio.Semaphore(limit) if limit is not None else None

    async def branch(awaitable: Any) -> Any:
        if not inspect.isawaitable(awaitable):  # a sync task called outside a workflow: already its value
            return awaitable
        if slots is None:
            return await awaitable
        async with slots:
            return await awaitable

    branches = [asyncio.ensure_future(branch(a)) for a in awaitables]
    try:
        running = set(branches)
        while running:
            _, running = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
            stop = _stop(branches, raise_on_error)
            if stop is not None:
                raise stop
    finally:
        await _cancel(branches)
    return [b.exception() or b.result() for b in branches]


def _stop(branches: Sequence[asyncio.Future[Any]], raise_on_error: bool) -> BaseException | None:
    """What ends the parallel now, looking at the branches that have finished, in the order given.

    A pause (or a cancel, a lost lease) wins, so that a paused workflow stays paused; then anything that
    is not an ``Exception`` (KeyboardInterrupt, SystemExit); then, with ``raise_on_error``, a failure.
    """
    finished = [b.exception() if not b.cancelled() else asyncio.CancelledError() for b in branches if b.done()]
    errors = [error for error in finished if error is not None]
    for error in errors:
        if isinstance(error, WorkflowSignal):
            return error
    for error in errors:
        if not isinstance(error, Exception) or raise_on_error:
            return error
    return None


async def _cancel(branches: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the branches still running and wait until they have unwound, so that none of them writes
    to the store once the parallel has ended."""
    unfinished = [b for b in branches if not b.done()]
    for b in unfinished:
        b.cancel()
    if unfinished:
        await asyncio.wait(unfinished)
    for b in branches:  # mark every exception as retrieved: the one that matters was raised or returned
        if not b.cancelled():
            b.exception()


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
