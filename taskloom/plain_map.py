"""A durable ``map`` of a plain sync task without an asyncio task or a coroutine per item (issue 12).

``task.map(items)`` in a workflow is, on the general path, one asyncio task per item awaiting that item's
step (:meth:`ExecutionRun.run_task_step`): the policy's coroutines, a thread hop, the group commit. For a
map of 1,000 quick items, those objects, and the collections they cause, were most of its time. A *plain*
task (:attr:`Task.plain`: no retry, timeout, fallback, rollback, cache, secret, output storage nor
TaskControl) needs none of that: here each item is one job on the run's threads, which runs the body and
encodes its outcome there, and the loop writes the outcomes that finished together in one transaction as
they come, as the group commit does.

What holds, as on the general path (``tasks.compose.gather_steps``):
- every item's start was written (in one transaction) before any body ran (``MapCall``);
- an outcome is written before the map moves on, and outcomes are written as items finish, so a crash
  loses only the items still running (they run again, as steps in flight at a crash do);
- every item runs to its end before the first failure, in item order, is raised; a workflow signal (a
  cancel) wins over errors; a body that ended the process (``sys.exit``) is a crash of the run;
- a map cancelled from outside (its workflow cancelled or paused) writes nothing more, and items not yet
  started never start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskloom import tracing
from taskloom.errors import WorkflowSignal
from taskloom.events import NewEvent
from taskloom.logs import current_origin
from taskloom.replay import plain_call
from taskloom.thread_hops import run_in_thread

if TYPE_CHECKING:
    from taskloom.replay import ExecutionRun, StepCall
    from taskloom.task import Task


class _Item:
    """One item's job, run in a thread of the run's (in its own copy of the map's context)."""

    __slots__ = ("args", "kwargs", "run", "step_id", "task")

    def __init__(self, run: ExecutionRun, task: Task[Any, Any], call: StepCall) -> None:
        self.run, self.task, self.step_id, self.args, self.kwargs = run, task, call.step_id, call.args, call.kwargs

    def __call__(self) -> tuple[bool, Any, NewEvent]:
        """``(ok, value or error, outcome event)``; an exception that is not an ``Exception`` propagates."""
        run, task, step_id = self.run, self.task, self.step_id
        # This context is the job's own copy: set, never reset. Its logs name the step.
        current_origin.set(tracing.step_origin(run.execution_id, step_id, task.name))
        try:
            args, kwargs = task.prepare_arguments(self.args, self.kwargs, None)
            value = plain_call(task.fn, args, kwargs)
            return True, value, run.completed_event(task, step_id, value)
        except Exception as error:
            return False, error, run.failed_event(task, step_id, error)


async def run_plain_map(run: ExecutionRun, task: Task[Any, Any], calls: Sequence[StepCall]) -> list[Any]:
    """Run ``calls`` (fresh steps of the plain sync ``task``, their starts written) on the run's threads;
    their values in order, or the first failure once every item has ended."""
    run.check_cancelled()
    futures = [run_in_thread(_Item(run, task, call), executor=run.executor, isolated=False) for call in calls]
    finished: list[int] = []
    wake = asyncio.Event()

    def done(index: int) -> Any:
        def mark(_: asyncio.Future[Any]) -> None:
            finished.append(index)
            wake.set()

        return mark

    for index, future in enumerate(futures):
        future.add_done_callback(done(index))
    results: list[Any] = [None] * len(futures)
    failures: dict[int, BaseException] = {}
    left = len(futures)
    try:
        while left:
            await wake.wait()
            wake.clear()
            batch, finished[:] = finished[:], []
            events = []
            for index in batch:
                ok, value, event = _outcome(run, futures[index])
                if event is not None:
                    events.append(event)
                if ok:
                    results[index] = value
                else:
                    failures[index] = value
            left -= len(batch)
            if events:
                run.append(*events)  # those that finished together, in one transaction, before going on
    except BaseException:
        for future in futures:  # nobody records these any more; those not yet started never start
            future.cancel()
        raise
    if failures:  # in item order, as gather_steps
        ordered = [failures[index] for index in sorted(failures)]
        signal = next((error for error in ordered if isinstance(error, WorkflowSignal)), None)
        raise signal if signal is not None else ordered[0]
    return results


def _outcome(run: ExecutionRun, future: asyncio.Future[Any]) -> tuple[bool, Any, NewEvent | None]:
    """An item's ``(ok, value or error, event to write)``; a body that raised past ``Exception`` writes none."""
    error = future.exception()
    if error is None:
        ok, value, event = future.result()
        return ok, value, event
    if isinstance(error, SystemExit):
        run.exited = error  # a crash of this attempt, not an outcome (see ExecutionRun._run_body)
    return False, error, None
