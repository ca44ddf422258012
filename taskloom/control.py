"""TaskControl and its handlers, as ``from taskloom.control import ...``.

``set_task_control_handler(handler)`` installs one :class:`TaskControlHandler` for every TaskControl call
in this process; subclass it and override only the methods you need (``log``, ``update_progress``,
``update_status``, ``request_stop``). Instances keep their logs, progress and status on their Future
whatever handler is installed.
"""

from taskloom.runtime.control import (
    LogRecord,
    TaskControl,
    TaskControlHandler,
    get_task_control_handler,
    set_task_control_handler,
)

__all__ = [
    "LogRecord",
    "TaskControl",
    "TaskControlHandler",
    "get_task_control_handler",
    "set_task_control_handler",
]
