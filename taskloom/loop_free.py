"""Drive a workflow run without an event loop until it needs one (issue 12's one-step process).

Importing ``asyncio`` costs a process 50-60 ms on a small machine (it loads ``ssl``, ``socket``,
``subprocess`` and more), five times a bare ``python -c pass``. Yet a run of plain sync steps never
suspends: each step runs on the spot (``ExecutionRun.run_plain_step``) and the body's coroutine runs to its
end on its first ``send``. So :meth:`Workflow.run <taskloom.workflow.Workflow.run>`, called where asyncio
was never imported, drives the run's coroutine itself (:func:`drive`) and loads no event loop at all.

The first await that does need a loop (a step with a policy, a ``map``, a child workflow, a timer) awaits
:func:`on_loop` first: it yields :data:`NEEDS_LOOP` up to :func:`drive`, which imports asyncio and goes on
with the same coroutine, from that very await, as the main task of ``asyncio.Runner`` in the same
``contextvars`` context. Nothing before it is done again.

Where asyncio is already loaded (by the program, its libraries, or a test suite), ``run`` keeps using
``asyncio.run`` from the start: code that imported asyncio may call it from a workflow body, and a body
run without a loop would find none. A body that imports asyncio itself and calls it while driven without a
loop meets ``RuntimeError: no running event loop``; the run is then abandoned before any verdict is written,
and driven again on a loop from its last recorded step (:class:`LoopNeeded`, Workflow.run).
"""

from __future__ import annotations

import contextvars
import sys
import types
from collections.abc import Coroutine, Generator

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, TypeVar
else:
    from taskloom.typing_free import TypeVar

T = TypeVar("T")


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: what :func:`current_task` answers where no event loop runs: a run driven by :func:`drive`
NO_LOOP: Any = _Marker("<no event loop>")
#: what a coroutine driven without a loop yields to :func:`drive` when it needs one from then on
NEEDS_LOOP: Any = _Marker("<needs an event loop>")


class LoopNeeded(BaseException):
    """A body driven without a loop called asyncio, which needs one: the run stops before any verdict is
    written, and ``Workflow.run`` drives the execution again on a loop (its recorded steps are not run again).

    A BaseException, like asyncio's CancelledError: the body's ``except Exception`` does not swallow it."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id  # also its args: BaseException keeps what it was made with


def loop_running() -> bool:
    """Whether an event loop runs in this thread; False, without importing asyncio, when it was never loaded."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None


def current_task() -> Any:
    """``asyncio.current_task()``, or :data:`NO_LOOP` where no loop runs (asyncio not imported for it)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio._get_running_loop() is None:
        return NO_LOOP
    return asyncio.current_task()


def cancelled_error() -> type[BaseException]:
    """asyncio's CancelledError, for an ``except`` clause: evaluated only when a BaseException that is no
    Exception passes it, so a run without a loop does not import asyncio for the clause."""
    import asyncio

    return asyncio.CancelledError


def is_cancelled(error: BaseException) -> bool:
    """Whether ``error`` is asyncio's CancelledError (never, where asyncio was not imported)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


def lost_loop(error: BaseException) -> bool:
    """Whether ``error`` is asyncio's complaint that no loop runs (``get_running_loop`` and what calls it)."""
    return isinstance(error, RuntimeError) and str(error) == "no running event loop"


@types.coroutine
def on_loop() -> Generator[Any, None, None]:
    """Await this before anything that needs an event loop: where none runs (a run driven by :func:`drive`),
    :func:`drive` starts one and the await returns on it; elsewhere it returns at once."""
    if not loop_running():
        yield NEEDS_LOOP


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end, as ``asyncio.run`` would, but without a loop for as long as it needs none.

    Like a task of ``asyncio.run``, the coroutine runs in a copy of the caller's context: what it sets
    there does not leak out. Only :func:`on_loop` may suspend it while no loop runs; anything else it yields
    is handed to the loop's task as if it had been yielded there (asyncio's own ``sleep(0)``, a bare yield).
    """
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    import asyncio

    with asyncio.Runner() as runner:
        return runner.run(_continue(coro, yielded), context=context)


async def _continue(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    return await _resume(coro, yielded)  # type: ignore[no-any-return]


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Go on with ``coro``, suspended where it yielded ``yielded``, inside the loop's task: what it yields
    from now on goes to the task, and what the task sends or throws goes to it (``yield from``)."""
    if yielded is not NEEDS_LOOP:
        try:
            yield yielded
        except BaseException as error:  # the task threw (cancelled, say): into the coroutine, where it waits
            try:
                yielded = coro.throw(error)
            except StopIteration as stop:
                return stop.value
            return (yield from _resume(coro, yielded))
    return (yield from coro)  # type: ignore[misc]
