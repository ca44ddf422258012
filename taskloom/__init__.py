"""taskloom: tasks and durable workflows in one light library.

The public API is re-exported here; everything else is private to its module. Names whose module a
local workflow run does not need (schedules: cron parsing and time zones; handles, queues, sessions,
instances and futures) are loaded on first use, through the module ``__getattr__`` (PEP 562), so
``import taskloom`` stays light; ``from taskloom import X`` works the same for every name in ``__all__``.
"""

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
from taskloom.lazy import module_dir, module_getattr
from taskloom.messages import send
from taskloom.options import TaskOptions
from taskloom.task import Task, task
from taskloom.typing_free import TYPE_CHECKING
from taskloom.versioning import deprecate_patch, patched
from taskloom.workflow import Workflow, workflow

if TYPE_CHECKING:
    from taskloom.handles import ExecutionHandle
    from taskloom.logs import logger
    from taskloom.queues import Queue, QueueError
    from taskloom.runtime.config import TaskConfig
    from taskloom.runtime.control import TaskControl, TaskControlHandler, set_task_control_handler
    from taskloom.runtime.future import Future, TaskStatus
    from taskloom.runtime.instance import TaskInstance
    from taskloom.runtime.session import Session
    from taskloom.schedule_ticks import ScheduleError
    from taskloom.schedules import Schedule, run_schedules

#: public names loaded on first use: name -> the module that defines it
_LAZY = {
    "logger": "taskloom.logs",  # with logging, which a run need not import
    "TaskControl": "taskloom.runtime.control",  # a run of tasks that take none need not load it
    "TaskControlHandler": "taskloom.runtime.control",
    "set_task_control_handler": "taskloom.runtime.control",
    "ExecutionHandle": "taskloom.handles",
    "Queue": "taskloom.queues",
    "QueueError": "taskloom.queues",
    "Future": "taskloom.runtime.future",
    "Session": "taskloom.runtime.session",
    "TaskConfig": "taskloom.runtime.config",
    "TaskInstance": "taskloom.runtime.instance",
    "TaskStatus": "taskloom.runtime.future",
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


__getattr__ = module_getattr(globals(), _LAZY)
__dir__ = module_dir(globals(), __all__)
