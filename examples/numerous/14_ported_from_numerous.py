"""Code written against Numerous Tasks' own API, beyond the document's samples, ported by its imports only.

What a Numerous user also writes (issue 8): a duck-typed TaskControl handler, reset with
``set_task_control_handler(None)``; ``Session(name, session_id=...)`` and ``Session.current()``; a
``SessionError`` (a ``TaskError``) on entering an active session; ``session.tasks`` and
``get_running_instances_count``; ``instance.is_running``, ``task_control`` and ``task_definition``;
``TaskStatus`` comparisons; and ``tc.status`` starting as ``""``. Every claim is asserted, then printed.

Backend-agnostic (the tasks run until stopped, which crosses to a worker process), so it runs on
``TASKLOOM_BACKEND=local-process`` as well, hence the ``if __name__ == "__main__":`` guard.
"""

import time

from taskloom import Session, SessionError, TaskControl, TaskError, TaskStatus, task
from taskloom.control import get_task_control_handler, set_task_control_handler


class ConsoleHandler:
    """A handler by duck typing: the three methods, no base class."""

    def __init__(self):
        self.lines = []

    def log(self, task_control, message, level, **extra_data):
        self.lines.append(f"[{level.upper()}] {task_control.task_definition_name}: {message}")

    def update_progress(self, task_control, progress, status):
        self.lines.append(f"progress {progress:.0f}% {status}")

    def update_status(self, task_control, status):
        self.lines.append(f"status {status}")


@task(max_parallel=3)
def crunch(tc: TaskControl, n: int) -> dict:
    first_status = tc.status  # "" until the task sets one
    tc.log(f"crunching {n}", "info")
    for _ in range(2000):  # runs until stopped (at most about 20 s)
        if tc.should_stop:
            break
        time.sleep(0.01)
    tc.update_progress(100.0, "stopped")
    return {"n": n, "square": n * n, "first_status": first_status}


if __name__ == "__main__":
    handler = ConsoleHandler()
    set_task_control_handler(handler)

    with Session(name="nightly", session_id="nightly-2026-12-01") as session:
        assert Session.current() is session

        try:
            with session:  # already active
                pass
        except SessionError as error:
            assert isinstance(error, TaskError)
            refused = str(error).split(":")[0]

        instances = [crunch.instance() for _ in range(3)]
        assert all(instance.status == TaskStatus.PENDING and not instance.is_running for instance in instances)
        futures = [instance.start(n) for n, instance in enumerate(instances, 1)]
        assert all(instance.is_running for instance in instances)
        running = session.get_running_instances_count("crunch")

        for instance in instances:
            instance.stop()
        results = [future.result(timeout=30) for future in futures]

        assert all(future.status == TaskStatus.COMPLETED for future in futures)
        assert not any(instance.is_running for instance in instances)
        assert session.get_running_instances_count("crunch") == 0
        assert list(session.tasks) == ["crunch"]
        assert sorted(session.tasks["crunch"]) == sorted(instance.id for instance in instances)
        assert instances[0].task_definition is crunch
        assert instances[0].task_control.status == "stopped"

    set_task_control_handler(None)  # back to the default handler
    assert get_task_control_handler() is not handler
    assert Session.current() is None

    print(f"session {session.name} ({session.id}): {running} running, then 0")
    print(f"squares {[r['square'] for r in results]}, first statuses {[r['first_status'] for r in results]}")
    print(f"statuses {', '.join(future.status for future in futures)}")
    print(f"entering it again: {refused}")
    for line in sorted(handler.lines):
        print(line)
