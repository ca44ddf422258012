"""Every exception taskloom raises, in one tree.

Task failures derive from :class:`TaskError`. Where callers expect a builtin (``TimeoutError``), the
exception inherits from it too. Control signals (pause) derive from ``BaseException`` so that an
``except Exception`` in user code cannot swallow them. Every exception here survives pickling, because
errors travel through the event store and across processes.
"""

from __future__ import annotations

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


class TaskloomError(Exception):
    """Base of every error taskloom raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only constructors do not pickle by default; rebuild from args
        # and restore the instance dict so extra attributes survive the store.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class TaskError(TaskloomError):
    """A task failed, or could not be run as asked."""


class TaskDefinitionError(TaskError, ValueError):
    """A task or workflow was declared with an invalid option; the message names the option."""


class TaskTimeoutError(TaskError, TimeoutError):
    """An attempt ran longer than the task's ``timeout``."""


class SecretNotFoundError(TaskError, KeyError):
    """A task asked for a secret that is not in the secret store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TaskCancelledError(TaskError):
    """The task instance or execution was cancelled before it produced a result."""


class MaxInstancesReachedError(TaskError):
    """``Session(on_limit="raise")`` and the task's ``max_parallel`` slots are all taken."""


class SessionNotFoundError(TaskError):
    """``task.instance()`` was called outside ``with Session():``."""


class SessionError(TaskError):
    """A :class:`~taskloom.Session` was used wrongly: entered while it is already active, or asked to start
    an instance after its ``with`` block ended. The message names the session.

    A ``TaskError``, as in Numerous Tasks, so code that catches task errors around a session catches it too.
    """


class SerializationError(TaskError):
    """A value could not be stored with its type; the message names the task and the value's type."""


class WorkflowError(TaskloomError):
    """A workflow was used wrongly (unknown execution, run inside a running loop, ...)."""


class ExecutionNotFoundError(WorkflowError, LookupError):
    """No execution with that id exists in the store."""


class ExecutionStateError(WorkflowError):
    """An execution is not in the state an operation needs (resume a paused one, cancel an unfinished one),
    or its state changed under the operation; nothing was written."""


class ExecutionIdError(WorkflowError, ValueError):
    """A caller-chosen execution id is not usable: empty, too long, or holding a control character."""


class NonDeterminismError(WorkflowError):
    """Replayed workflow code called a different task at a recorded step position.

    The execution is left exactly as it was (status, events, a resume's input), so running it again with
    the code it started with continues it.
    """


class UndecodableValueError(NonDeterminismError):
    """A recorded value (a step's result or error, an input) no longer unpickles with this code, for
    example because its class was renamed between deploys. Like any replay mismatch, the execution is left
    untouched: the right code can still finish it."""


class ExecutionCrashedError(WorkflowError):
    """An execution killed the process running it (``os._exit``, ``sys.exit``, a crash) more often than its
    workflow's ``max_recovery_attempts`` allows; it was failed so that it cannot take every worker down."""


class GraphError(TaskloomError, ValueError):
    """A Graph is malformed: a cycle, an unknown node, an unreachable end node."""


class StoreError(TaskloomError):
    """The store failed: it could not be opened, its schema is newer than this taskloom, or a read or write
    failed for a reason that waiting does not cure (disk full, read-only file, damaged database).

    The message names the file or URL, the real cause and what to do. A store error is never a task's
    error: a run that meets one stops without recording a verdict, and the execution stays resumable.
    """


class StoreUnavailableError(StoreError):
    """The store stayed unreachable (connection lost, database restarting, write lock held) for longer
    than the store's retry budget. Transient by nature: the same call may succeed later."""


class BackendError(TaskError):
    """An unknown or unusable task backend or executor was configured, or the backend refused an instance.

    A ``TaskError`` (as in Numerous Tasks): it is raised where a task instance is created or started, so it
    belongs with the errors of running a task.
    """


class SecretStoreError(TaskloomError):
    """The secret store's key is missing or wrong, or its data was tampered with."""


class WorkflowSignal(BaseException):
    """Base of control-flow signals that must unwind through user ``except Exception`` blocks."""


class WorkflowPaused(WorkflowSignal):
    """Raised inside a workflow by ``pause(name)`` to suspend it until resumed."""

    def __init__(self, name: str, step_id: str, deadline: float | None = None) -> None:
        super().__init__(name, step_id, deadline)
        self.name = name
        self.step_id = step_id
        #: Unix time after which the pause times out (``pause(name, timeout=...)``), else None
        self.deadline = deadline


class LeaseLostError(WorkflowSignal):
    """A worker's lease on the execution it runs has passed to another worker: it must stop writing.

    Raised by the store when a write carries a lease the execution no longer has (a fencing check), so
    a stalled worker that wakes after its lease expired cannot record anything next to its successor.
    """


class StoreInterrupted(WorkflowSignal):
    """Raised inside a workflow when a bookkeeping write or read failed (:attr:`error`, a StoreError).

    A signal, not an exception, so that no ``except Exception`` in the workflow body mistakes a store
    outage for the task's failure: the run unwinds, writes no verdict, and the execution stays resumable.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class WorkflowCancelled(WorkflowSignal):
    """Raised inside a workflow when its execution was cancelled from outside."""
