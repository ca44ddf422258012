"""The runtime of task instances: Session, TaskInstance, Future, TaskControl and its handlers.

``taskloom.control`` re-exports the TaskControl side for users; ``taskloom`` re-exports the rest.
Each name is loaded from its module on first use (the module ``__getattr__``, PEP 562): importing
one of them (the engine imports ``taskloom.runtime.control`` for every step's TaskControl) runs this
file first, and a workflow run should not pay for sessions, instances and futures it never uses.
"""

from typing import TYPE_CHECKING

from taskloom.lazy import module_dir, module_getattr

if TYPE_CHECKING:
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

#: name -> the module that defines it
_MODULES = {
    "Future": "taskloom.runtime.future",
    "LogRecord": "taskloom.runtime.control",
    "Session": "taskloom.runtime.session",
    "TaskControl": "taskloom.runtime.control",
    "TaskControlHandler": "taskloom.runtime.control",
    "TaskInstance": "taskloom.runtime.instance",
    "TaskStatus": "taskloom.runtime.future",
    "current_session": "taskloom.runtime.session",
    "get_task_control_handler": "taskloom.runtime.control",
    "set_task_control_handler": "taskloom.runtime.control",
}

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


__getattr__ = module_getattr(globals(), _MODULES)
__dir__ = module_dir(globals(), __all__)
