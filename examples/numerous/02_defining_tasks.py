"""Defining tasks, with and without options.

numerous-tasks.md, "Defining Tasks". The document only defines the two tasks; the lines after them call
each one and show the options, so there is something to see.
"""

from taskloom import task


@task
def simple_task(value: int) -> int:
    return value * 2


# Task with configuration
@task(max_parallel=5, size="medium")
def configured_task(data: list) -> dict:
    return {"count": len(data)}


print(simple_task(21))  # 42
print(configured_task([1, 2, 3]))  # {'count': 3}
print(configured_task.options.max_parallel, configured_task.options.size)  # 5 medium
