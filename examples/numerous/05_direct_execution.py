"""Direct execution: a task called like its function, no session needed.

numerous-tasks.md, "1. Direct Execution (Development)".
"""

from taskloom import task


@task
def development_task(value: int) -> int:
    return value * 2


# Direct execution - no session required
result = development_task(5)  # Returns 10 immediately
print(result)
