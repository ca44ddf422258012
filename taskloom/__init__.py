"""taskloom: tasks and durable workflows in one light library.

The public API is re-exported here; everything else is private to its module. Names whose module a
local workflow does not need (schedules: cron parsing and time zones) are loaded on first use, through
the module ``__getattr__`` (PEP 562), so ``import taskloom`` stays light; ``from taskloom import X``
works the same for every name in ``__all__``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from taskloom.context import ExecutionContext, WorkflowExecutionContext
from taskloom.errors import (
    BackendError,
    ExecutionCrashedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    GraphError,
    MaxInstancesReachedError,
    NonDeterminismError,
    SecretNotFoundError,
    SerializationError,
    SessionError,
    SessionNotFoundError,
    StoreError,
    StoreUnavailableError,
    TaskCancelledError,
    TaskDefinitionError,
    TaskError,
    TaskloomError,
    TaskTimeoutError,
    UndecodableValueError,
    WorkflowError,
)
from taskloom.handles import ExecutionHandle
from taskloom.logs import logger
from taskloom.messages import send
from taskloom.options import TaskOptions
from taskloom.queues import Queue, QueueError
from taskloom.runtime.control import TaskControl, TaskControlHandler, set_task_control_handler
from taskloom.runtime.future import Future, TaskStatus
from taskloom.runtime.instance import TaskInstance
from taskloom.runtime.session import Session
from taskloom.task import Task, TaskConfig, task
from taskloom.versioning import deprecate_patch, patched
from taskloom.workflow import Workflow, workflow

if TYPE_CHECKING:
    from taskloom.schedule_ticks import ScheduleError
    from taskloom.schedules import Schedule, run_schedules

#: public names loaded on first use: name -> the module that defines it
_LAZY = {
    "Schedule": "taskloom.schedules",
    "ScheduleError": "taskloom.schedule_ticks",
    "run_schedules": "taskloom.schedules",
}

__all__ = [
    "BackendError",
    "ExecutionContext",
    "ExecutionCrashedError",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "Future",
    "GraphError",
    "MaxInstancesReachedError",
    "NonDeterminismError",
    "Queue",
    "QueueError",
    "Schedule",
    "ScheduleError",
    "SecretNotFoundError",
    "SerializationError",
    "Session",
    "SessionError",
    "SessionNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "Task",
    "TaskCancelledError",
    "TaskConfig",
    "TaskControl",
    "TaskControlHandler",
    "TaskDefinitionError",
    "TaskError",
    "TaskInstance",
    "TaskOptions",
    "TaskStatus",
    "TaskTimeoutError",
    "TaskloomError",
    "UndecodableValueError",
    "Workflow",
    "WorkflowError",
    "WorkflowExecutionContext",
    "deprecate_patch",
    "logger",
    "patched",
    "run_schedules",
    "send",
    "set_task_control_handler",
    "task",
    "workflow",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found here directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
