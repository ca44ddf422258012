"""A named session grouping two related task instances.

numerous-tasks.md, "Session Management". ``task_a``, ``task_b`` and the data chunks are left to the
reader there; here they are two small tasks and two lists.
"""

from taskloom import Session, task


@task
def task_a(chunk: list) -> int:
    return sum(chunk)


@task
def task_b(chunk: list) -> int:
    return max(chunk)


data_chunk_1 = [1, 2, 3]
data_chunk_2 = [7, 8, 9]

# Create a named session
with Session(name="data-processing-batch") as session:
    # All tasks created in this context belong to this session
    instance1 = task_a.instance()
    instance2 = task_b.instance()

    # Start tasks
    future1 = instance1.start(data_chunk_1)
    future2 = instance2.start(data_chunk_2)

    # Wait for results
    result1 = future1.result()
    result2 = future2.result()

print(session.name, result1, result2)  # data-processing-batch 6 9
