"""Quick start: a plain task called directly, and a task with progress run as an instance.

numerous-tasks.md, "Tasks" (first sample). Only change besides the imports: each step sleeps 0.01 s
instead of 0.1 s.
"""

import time

from taskloom import Session, TaskControl, task


# Define a simple task
@task
def process_data(data: list) -> dict:
    # Your task logic here
    result = {"processed": len(data), "items": data}
    return result


# Define a task with progress tracking
@task
def long_running_task(tc: TaskControl, iterations: int) -> str:
    for i in range(iterations):
        # Check if task should stop
        if tc.should_stop:
            tc.log("Task was cancelled", "warning")
            break

        # Update progress
        progress = (i + 1) / iterations * 100
        tc.update_progress(progress, f"Processing item {i + 1}/{iterations}")

        # Simulate work
        time.sleep(0.01)

    tc.log("Task completed successfully", "info")
    return f"Processed {iterations} items"


# Execute tasks within a session
with Session() as session:
    # Direct execution (for simple cases)
    result = process_data([1, 2, 3, 4, 5])
    print(result)  # {"processed": 5, "items": [1, 2, 3, 4, 5]}

    # Task instance execution (for advanced features)
    instance = long_running_task.instance()
    future = instance.start(10)

    # Get result (blocks until complete)
    result = future.result()
    print(result)  # "Processed 10 items"
