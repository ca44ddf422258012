"""Whether code runs inside a task: the marker the policy sets around every task run, and a workflow run
around its steps.

Its own module, not the policy's: a workflow run marks its context even when none of its steps needs the
policy (plain steps), and the policy is then not imported at all (issue 12's one-step process).
"""

from __future__ import annotations

import contextvars

#: True while a task runs in this context (its attempts, handlers, and any task its body calls): a task
#: called directly from inside another is part of that run, so :meth:`Task.__call__` warns about a direct
#: call in an active session only for the outermost call, the one the user wrote in the session block.
running: contextvars.ContextVar[bool] = contextvars.ContextVar("taskloom_task_running", default=False)


def mark_inside_task() -> contextvars.Token[bool]:
    """Mark the current context (and the tasks and threads that copy it) as inside a task, for as long as
    a workflow run lasts: what its steps' bodies call directly is part of the run (:func:`inside_task`).
    Undo with :func:`unmark_inside_task`."""
    return running.set(True)


def unmark_inside_task(token: contextvars.Token[bool]) -> None:
    running.reset(token)


def inside_task() -> bool:
    """Whether this code runs inside a task run (direct, instance or step) started by the policy."""
    return running.get()
