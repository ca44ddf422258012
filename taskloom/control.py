"""TaskControl and its handlers, as ``from taskloom.control import ...``.

``set_task_control_handler(handler)`` installs one handler for every TaskControl call in this process:
subclass :class:`TaskControlHandler` and override only the methods you need (``log``, ``update_progress``,
``update_status``, ``request_stop``), or pass any object with the first three methods (duck typing, as in
Numerous Tasks). ``set_task_control_handler(None)`` puts the default handler back. Instances keep their
logs, progress and status on their Future whatever handler is installed.
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
