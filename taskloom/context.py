"""WorkflowExecutionContext and the contextvar of the running execution's current step scope.

The running workflow is carried in a ``contextvars`` context, not passed around: a task called while a
scope is set becomes a durable step of that scope; with no scope it is a plain call.
"""

from __future__ import annotations

import contextvars
from functools import cached_property

from taskloom.logs import workflow_logger
from taskloom.store.base import ExecutionStatus
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import logging
    from datetime import datetime
    from typing import Any, Generic, TypeVar

    from taskloom.events import Event
    from taskloom.replay import StepScope
    from taskloom.store.base import Store
else:
    from taskloom.typing_free import Generic, TypeVar

T = TypeVar("T")

current_scope: contextvars.ContextVar[StepScope | None] = contextvars.ContextVar("taskloom_scope", default=None)


class WorkflowExecutionContext(Generic[T]):
    """What a workflow receives, and what ``wf.run`` returns: one execution's identity and state."""

    def __init__(
        self,
        workflow_name: str,
        execution_id: str,
        input: T,
        store: Store,
        *,
        status: str = ExecutionStatus.RUNNING,
        output: Any = None,
    ) -> None:
        self.workflow_name = workflow_name
        self.execution_id = execution_id
        self.input = input
        self.output = output
        self.status = status
        #: values of the workflow's ``secret_requests`` (never stored)
        self.secrets: dict[str, str] = {}
        self._store = store

    @property
    def logger(self) -> logging.Logger:
        """The standard logger ``taskloom.user.<workflow>``: what it logs carries ``execution_id``,
        ``workflow``, ``step_id`` and ``task`` (as every record made during the execution does; see
        :mod:`taskloom.logs`), so ``%(execution_id)s`` in a handler's format says which run wrote it."""
        return workflow_logger(self.workflow_name)

    @property
    def events(self) -> list[Event]:
        """The execution's events, typed and timestamped, in order (read from the store)."""
        return self._store.load_events(self.execution_id)

    @cached_property
    def scheduled_at(self) -> datetime | None:
        """The tick of the schedule that started this execution (in the schedule's time zone), else None.

        Recorded with the execution's start, so every run of it reads the same value: a replay, a resume,
        another worker after a crash (see :mod:`taskloom.schedules`).
        """
        from taskloom.schedules import scheduled_at

        return scheduled_at(self._store.load_events(self.execution_id))

    @cached_property
    def parent_id(self) -> str | None:
        """The id of the execution that started this one as a child (``await this(input)`` in a
        workflow), else None (see :mod:`taskloom.children`)."""
        from taskloom.children import parent_of

        return parent_of(self._store.load_events(self.execution_id))

    @property
    def has_finished(self) -> bool:
        return self.status in ExecutionStatus.FINISHED

    @property
    def has_succeeded(self) -> bool:
        return self.status == ExecutionStatus.COMPLETED

    @property
    def has_failed(self) -> bool:
        return self.status == ExecutionStatus.FAILED

    @property
    def is_paused(self) -> bool:
        return self.status == ExecutionStatus.PAUSED

    @property
    def is_cancelled(self) -> bool:
        return self.status == ExecutionStatus.CANCELLED

    @property
    def is_running(self) -> bool:
        return self.status == ExecutionStatus.RUNNING

    def __repr__(self) -> str:
        return (
            f"WorkflowExecutionContext(workflow={self.workflow_name!r}, execution_id={self.execution_id!r}, "
            f"status={self.status!r}, output={self.output!r})"
        )


ExecutionContext = WorkflowExecutionContext
