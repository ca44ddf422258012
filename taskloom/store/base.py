"""The Store protocol: a dozen domain methods, each one transaction, taking values already encoded.

Nothing above this layer writes SQL. Every concrete store (SQLite, PostgreSQL) passes the same contract
suite in ``tests/store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from taskloom.events import Event, NewEvent


class ExecutionStatus:
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUEUED = "queued"

    FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
    ALL = (QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One row of the executions table; ``input``/``output`` are still encoded."""

    id: str
    workflow: str
    status: str
    input: bytes | None
    output: bytes | None
    created_at: float
    updated_at: float
    target: str | None = None


class Store(Protocol):
    url: str

    def create_execution(
        self, execution_id: str, workflow: str, input: bytes | None, status: str, target: str | None = None
    ) -> None:
        """Insert a new execution together with its ``execution_started`` event.

        ``target`` is ``"module:qualname"`` of the workflow, so another process can import and resume it.
        """

    def get_execution(self, execution_id: str) -> ExecutionRecord | None: ...

    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """The execution's events in order, in one round trip."""

    def append_events(
        self,
        execution_id: str,
        events: Sequence[NewEvent],
        *,
        status: str | None = None,
        output: bytes | None = None,
        expected_status: str | None = None,
        wake_at: float | None = None,
        lease_owner: str | None = None,
    ) -> int:
        """Append ``events`` and, when given, set the execution's status/output, in one transaction.

        ``lease_owner`` fences a worker's writes: unless the execution is still leased to it, nothing is
        written and :class:`~taskloom.errors.LeaseLostError` is raised.
        ``wake_at`` (with ``status``) is when a paused execution's deadline passes; workers claim it then.
        With ``expected_status``, the execution must have that status when the transaction runs, else
        nothing is written and :class:`~taskloom.errors.ExecutionStateError` is raised: two callers that
        both saw the status (two resumes of one paused execution) cannot both succeed. Setting the status
        to ``queued`` wakes waiting workers (:meth:`wait_for_work`).

        Returns the seq of the last event written. Durable when it returns.
        """

    def list_executions(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ExecutionRecord]: ...

    # -- the work queue (workers) -------------------------------------------------------------------
    def claim_next_execution(
        self, worker_id: str, lease_seconds: float, workflows: Sequence[str]
    ) -> ExecutionRecord | None:
        """Atomically claim the oldest execution of one of ``workflows`` that is queued, running under a
        lease that expired (its worker died), or paused with a deadline (``wake_at``) that has passed.
        The claim sets status ``running`` and a lease."""

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        """Extend every lease ``worker_id`` holds; returns the ids it still holds."""

    def release_execution(self, execution_id: str, worker_id: str, *, requeue: bool) -> None:
        """Drop ``worker_id``'s lease; ``requeue`` puts an unfinished execution back in the queue."""

    def next_lease_expiry(self, workflows: Sequence[str]) -> float | None:
        """The earliest time (Unix seconds) a lease on a running execution of ``workflows`` expires or a
        paused one's deadline passes, or None: an idle worker waits until then to take the work over."""

    def wait_for_work(self, timeout: float) -> bool:
        """Block until work may have been queued (an execution created or put back as ``queued``) or
        ``timeout`` seconds passed; True means "claim now", False only that the time is up.

        PostgreSQL wakes within milliseconds of another process's commit (LISTEN/NOTIFY); SQLite only on
        work queued through this store object, so its callers poll with ``timeout``. A True may be
        spurious (the first call, a reconnect, work another worker took): callers claim and wait again.
        Meant for one waiting thread per store, such as a worker's claim loop.
        """

    def put_secret(self, name: str, ciphertext: bytes) -> None: ...

    def get_secret(self, name: str) -> bytes | None: ...

    def list_secret_names(self) -> list[str]: ...

    def delete_secret(self, name: str) -> bool: ...

    def close(self) -> None: ...
