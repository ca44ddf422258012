"""Futures: five instances of a task limited to three at a time, results collected in order.

numerous-tasks.md, "Future Objects and Asynchronous Execution". Only change besides the imports: the task
sleeps 0.05 s instead of 1 s.
"""

import time

from taskloom import Session, TaskControl, task


@task(max_parallel=3)
def async_task(tc: TaskControl, value: int) -> int:
    tc.update_progress(50.0, "Processing")
    time.sleep(0.05)  # Simulate work
    tc.update_progress(100.0, "Complete")
    return value * 2


with Session() as session:
    # Start multiple tasks concurrently
    futures = []
    for i in range(5):
        instance = async_task.instance()
        future = instance.start(i)
        futures.append(future)

    # Collect results as they complete
    results = []
    for future in futures:
        result = future.result()  # Blocks until this task completes
        results.append(result)

    print(results)  # [0, 2, 4, 6, 8]
