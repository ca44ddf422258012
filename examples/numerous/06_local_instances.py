"""Local task instances: the same task run as an instance in a session.

numerous-tasks.md, "2. Local Task Instances (Testing)", with ``development_task`` from the sample before.
"""

from taskloom import Session, task


@task
def development_task(value: int) -> int:
    return value * 2


with Session() as session:
    instance = development_task.instance()
    future = instance.start(5)
    result = future.result()  # Returns 10

print(result)
