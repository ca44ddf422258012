"""The runtime of task instances: Session, TaskInstance, Future, TaskControl and its handlers.

``taskloom.control`` re-exports the TaskControl side for users; ``taskloom`` re-exports the rest.
"""

from taskloom.runtime.control import (
    LogRecord,
    TaskControl,
    TaskControlHandler,
    get_task_control_handler,
    set_task_control_handler,
)
from taskloom.runtime.future import Future, TaskStatus
from taskloom.runtime.instance import TaskInstance
from taskloom.runtime.session import Session, current_session

__all__ = [
    "Future",
    "LogRecord",
    "Session",
    "TaskControl",
    "TaskControlHandler",
    "TaskInstance",
    "TaskStatus",
    "current_session",
    "get_task_control_handler",
    "set_task_control_handler",
]
