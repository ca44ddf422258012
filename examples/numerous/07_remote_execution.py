"""The same instance code whatever the backend: ``TASKLOOM_BACKEND`` picks where it runs.

numerous-tasks.md, "3. Remote Execution (Production)". ``production_task`` and ``large_dataset`` are
left to the reader there. Run as is, it uses the default ``local`` backend; with
``TASKLOOM_BACKEND=local-process`` the same code runs the task in a worker process (which is why the
session sits under ``if __name__ == "__main__":`` here, as any multiprocessing code must).
"""

from taskloom import Session, task


@task
def production_task(dataset: list) -> int:
    return sum(dataset)


large_dataset = list(range(10_000))

if __name__ == "__main__":
    # Same code works for remote execution
    # Backend is configured via environment variables
    with Session() as session:
        instance = production_task.instance()
        future = instance.start(large_dataset)
        result = future.result()  # Executes on platform

    print(result)  # 49995000
