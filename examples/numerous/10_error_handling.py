"""Error handling: a failing instance's future re-raises the task's own exception.

numerous-tasks.md, "Error Handling". The first result is printed too.
"""

from taskloom import Session, TaskControl, task


@task
def error_prone_task(tc: TaskControl, should_fail: bool) -> str:
    try:
        tc.update_status("Processing")

        if should_fail:
            raise ValueError("Simulated error")

        tc.update_progress(100.0, "Success")
        return "Task completed successfully"

    except Exception as e:
        tc.log(f"Task failed: {e!s}", "error")
        raise  # Re-raise to mark task as failed


with Session() as session:
    # Successful execution
    instance1 = error_prone_task.instance()
    future1 = instance1.start(False)
    result1 = future1.result()  # "Task completed successfully"
    print(result1)

    # Failed execution
    instance2 = error_prone_task.instance()
    future2 = instance2.start(True)

    try:
        result2 = future2.result()
    except ValueError as e:
        print(f"Task failed: {e}")  # "Task failed: Simulated error"
        print(f"Future status: {future2.status}")  # "failed"
        print(f"Future error: {future2.error}")  # ValueError instance
