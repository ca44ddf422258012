"""Workflow time limits, ``@workflow(timeout=seconds)``: one durable deadline per execution.

The deadline is the execution's creation time plus the workflow's timeout. It is written to the
execution's row (the ``deadline`` column, migration 012) by the first run of the execution or the first
worker sweep that sees it, and never moved after: a deploy that changes the timeout leaves the deadlines
already fixed as they are. Time spent queued, paused, sleeping or dead counts, as with Temporal's
workflow execution timeout.

Two things enforce it, so that it holds across crashes and restarts:

- the run driving the execution (``Workflow._drive``) fails at once a run that starts past it, checks it
  before each new step, and cancels the workflow body when it passes, interrupting the step in flight
  as a task's ``timeout`` interrupts an attempt (a sync body already running in its thread cannot be
  stopped: it is asked to stop through its TaskControl, and what it returns is dropped);
- every worker sweeps (:func:`sweep`, :meth:`Store.expire_executions`), and so does ``taskloom recover``
  once: the executions of its workflows past their deadline that nobody runs (queued, paused, or running
  under no lease or an expired one, because their process died) are failed without running them, in the
  store transaction that checks that nobody runs them, so a live owner is never overtaken.

Either way the execution ends ``failed`` with :class:`~taskloom.errors.TaskTimeoutError`, recorded like
any failure of the workflow: an ``execution_failed`` event (its data has the deadline) and the error as
the execution's output. The children it left unfinished are cancelled (:func:`taskloom.children.close_children`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from taskloom import serde
from taskloom.children import close_children, parent_of, wake_parent
from taskloom.errors import TaskDefinitionError, TaskTimeoutError
from taskloom.events import EventType, NewEvent
from taskloom.logs import lazy_logger
from taskloom.store.base import Store
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from taskloom.store.records import Expired

log = lazy_logger("taskloom.deadlines")  # logging is imported when it first logs


class Deadline:
    """The deadline ``at`` (Unix seconds) of one execution of ``workflow``, whose timeout is ``timeout``.

    A plain class, not a dataclass: making a dataclass compiles its methods, about 1 ms of every process's
    start (issue 12's one-step process), and a run without a deadline never makes one.
    """

    __slots__ = ("at", "execution_id", "timeout", "workflow")

    def __init__(self, execution_id: str, workflow: str, timeout: float, at: float) -> None:
        self.execution_id, self.workflow, self.timeout, self.at = execution_id, workflow, timeout, at

    def passed(self, now: float) -> bool:
        return now >= self.at

    def error(self) -> TaskTimeoutError:
        from datetime import UTC, datetime  # only the message needs it

        at = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return TaskTimeoutError(
            f"execution {self.execution_id} of workflow {self.workflow!r} passed its deadline ({at}, "
            f"{self.timeout:g} s after it was created) and was failed; give the workflow a longer "
            "timeout (@workflow(timeout=...)) if it needs more time"
        )

    def failure(self, error: TaskTimeoutError | None = None) -> tuple[NewEvent, bytes]:
        """The ``execution_failed`` event that records it, and the error (``error``, else a new one) as the
        execution's output."""
        blob = serde.dumps_error(error or self.error(), what=f"workflow {self.workflow!r}")
        data = {"deadline": self.at, "timeout": self.timeout}
        return NewEvent(EventType.EXECUTION_FAILED, None, self.workflow, blob, data), blob


def check_timeout(value: Any, owner: str) -> float | None:
    """A workflow's ``timeout`` option: seconds > 0, or None for no limit (a configuration error else)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise TaskDefinitionError(
            f"{owner}: option 'timeout' must be a number of seconds > 0, or None for no time limit, got {value!r}"
        )
    return float(value)


def sweep(store: Store, timeouts: Mapping[str, float], now: float) -> Expired:
    """Fail the executions of the workflows in ``timeouts`` (name: seconds) that passed their deadline
    while nobody runs them (:meth:`Store.expire_executions`: queued, paused, or left running by a dead
    process), then, for each one failed, cancel the children it left unfinished and wake a parent that
    waits for it. Workers run it every so often; ``taskloom recover`` once.

    What follows the failure is best effort, as after any end: a child or parent it cannot reach now is
    logged, and is found by its own deadline or the parent's recheck."""

    def failure(execution_id: str, workflow: str, at: float) -> tuple[NewEvent, bytes]:
        return Deadline(execution_id, workflow, timeouts[workflow], at).failure()

    expired = store.expire_executions(timeouts, now, failure)
    for execution_id in expired.failed:
        log.warning("execution %s passed its deadline: failed (TaskTimeoutError)", execution_id)
        try:
            events = store.load_events(execution_id)
            close_children(store, execution_id, events)
            parent = parent_of(events)
            if parent is not None:
                wake_parent(store, parent, execution_id, events)
        except Exception as error:
            log.warning("execution %s: could not close its children or wake its parent: %s", execution_id, error)
    return expired
