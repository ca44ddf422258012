"""A custom TaskControlHandler receives every TaskControl call.

numerous-tasks.md, "Custom Task Control Handlers". The document only installs the handler; the lines
after it run a small task so the handler has something to print.
"""

from taskloom import Session, TaskControl, task
from taskloom.control import TaskControlHandler, set_task_control_handler


class CustomTaskControlHandler(TaskControlHandler):
    def log(self, task_control, message, level, **extra_data):
        # Custom logging implementation
        print(f"[{level.upper()}] {task_control.task_definition_name}: {message}")

    def update_progress(self, task_control, progress, status):
        # Custom progress tracking
        print(f"Progress: {progress}% - {status}")

    def update_status(self, task_control, status):
        # Custom status updates
        print(f"Status: {status}")


# Set custom handler globally
set_task_control_handler(CustomTaskControlHandler())


@task
def reporting_task(tc: TaskControl, name: str) -> str:
    tc.log(f"hello {name}", "info")
    tc.update_progress(50.0, "half way")
    tc.update_status("finishing")
    return name.upper()


with Session() as session:
    print(reporting_task.instance().start("world").result())
