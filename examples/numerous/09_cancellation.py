"""Graceful cancellation: ``instance.stop()`` and a task that checks ``tc.should_stop``.

numerous-tasks.md, "Task Cancellation". Only changes besides the imports: each step sleeps 0.05 s instead
of 1 s, the stop comes after 0.15 s instead of 3 s, and the result is printed.
"""

import time

from taskloom import Session, TaskControl, task


@task
def cancellable_task(tc: TaskControl, duration: int) -> str:
    for i in range(duration):
        if tc.should_stop:
            tc.log("Task cancelled gracefully", "info")
            return "Cancelled"

        tc.update_progress(i / duration * 100, f"Step {i + 1}/{duration}")
        time.sleep(0.05)

    return "Completed"


with Session() as session:
    instance = cancellable_task.instance()
    future = instance.start(10)

    # Cancel after 0.15 seconds
    time.sleep(0.15)
    instance.stop()  # Requests graceful cancellation

    result = future.result()  # Will be "Cancelled"
    print(result)
