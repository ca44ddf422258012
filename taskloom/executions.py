"""Operations on executions that need no user code: create under a caller's id, queue, resume, cancel.

The workflow object, the CLI, the HTTP server and workers all go through these, so an execution is
resumed or cancelled the same way wherever the request comes from.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskloom import serde
from taskloom.errors import ExecutionIdError, ExecutionNotFoundError, ExecutionStateError, WorkflowError
from taskloom.events import Event, EventType, NewEvent
from taskloom.ids import uuid4_hex
from taskloom.messages import not_resumable, waiting_topic
from taskloom.store.base import DEFAULT_QUEUE, ExecutionRecord, ExecutionStatus, Store
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def get_execution(store: Store, execution_id: str) -> ExecutionRecord:
    record = store.get_execution(execution_id)
    if record is None:
        raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {store.url}")
    return record


#: longest caller-chosen execution id: it goes into URLs, log lines and the CLI's output
MAX_EXECUTION_ID_LENGTH = 200


def check_execution_id(execution_id: Any, argument: str = "execution_id") -> str:
    """A caller-chosen id as the store keeps it, or :class:`ExecutionIdError` naming ``argument``.

    The id is the idempotency key of the work it names, so it must survive every place it travels: not
    empty or blank, at most :data:`MAX_EXECUTION_ID_LENGTH` characters, no control character (a NUL
    is refused by PostgreSQL, a newline would split log lines and the CLI's output), no lone surrogate.
    """
    if not isinstance(execution_id, str):
        raise ExecutionIdError(f"{argument} must be a string, got {type(execution_id).__name__} {execution_id!r}")
    if not execution_id.strip():
        raise ExecutionIdError(f"{argument} must not be empty or blank, got {execution_id!r}")
    if len(execution_id) > MAX_EXECUTION_ID_LENGTH:
        raise ExecutionIdError(
            f"{argument} must be at most {MAX_EXECUTION_ID_LENGTH} characters, got {len(execution_id)}: "
            f"{execution_id[:40]!r}..."
        )
    import unicodedata  # here, not at the top: only an id given by the caller is checked

    bad = next((c for c in execution_id if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ExecutionIdError(
            f"{argument} must not contain control characters, got {execution_id!r} (character U+{ord(bad):04X})"
        )
    return execution_id


def create_or_find(
    store: Store,
    execution_id: str,
    workflow: str,
    target: str,
    input: Any,
    status: str,
    *,
    lease_owner: str | None = None,
    lease_seconds: float | None = None,
    wake_at: float | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    version: str | None = None,
) -> ExecutionRecord | None:
    """Create the execution ``execution_id`` if no execution has that id: None when this call created it,
    else the execution that already exists (which must be of ``workflow``: :class:`WorkflowError` else).

    The insert itself decides, never a look before it: of any number of callers racing with one new id,
    in threads or processes, the store's primary key lets exactly one create it; the others get the
    execution it created.
    """
    blob = serde.dumps(input, what=f"workflow {workflow!r} input")
    try:
        store.create_execution(
            execution_id,
            workflow,
            blob,
            status,
            target,
            lease_owner=lease_owner,
            lease_seconds=lease_seconds,
            wake_at=wake_at,
            queue=queue,
            priority=priority,
            version=version,
        )
        return None
    except ExecutionStateError:
        existing = get_execution(store, execution_id)  # only pruning deletes, and only long-finished ones
    if existing.workflow != workflow:
        raise WorkflowError(
            f"execution id {execution_id!r} is taken by an execution of workflow {existing.workflow!r}, "
            f"not {workflow!r}; choose another id"
        )
    return existing


def queue_execution(
    store: Store,
    workflow: str,
    target: str,
    input: Any,
    *,
    execution_id: str | None = None,
    wake_at: float | None = None,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    version: str | None = None,
) -> str:
    """Record a new execution for a worker to claim (not before ``wake_at`` when given); returns its id.

    ``version`` is the starting code's workflow version (``""`` for none): only workers of that version
    claim it. None leaves it to be pinned by the first code that runs it (taskloom.versioning).

    A caller's ``execution_id`` that already exists raises :class:`ExecutionStateError` and writes
    nothing (:func:`create_or_find` returns the existing one instead).
    """
    execution_id = uuid4_hex() if execution_id is None else check_execution_id(execution_id)
    blob = serde.dumps(input, what=f"workflow {workflow!r} input")
    store.create_execution(
        execution_id,
        workflow,
        blob,
        ExecutionStatus.QUEUED,
        target,
        wake_at=wake_at,
        queue=queue,
        priority=priority,
        version=version,
    )
    return execution_id


def record_resume(
    store: Store, execution_id: str, input: Any, *, status: str = ExecutionStatus.RUNNING
) -> ExecutionRecord:
    """Give a paused execution its resume input: the pending ``pause`` step completes with it.

    ``status`` is ``running`` when the caller drives the execution itself, ``queued`` for a worker (which
    wakes workers waiting on the store). Of two resumes racing for one pause, exactly one succeeds; the
    other raises :class:`ExecutionStateError` and writes nothing.
    """
    record = get_execution(store, execution_id)
    if record.status != ExecutionStatus.PAUSED:
        raise not_paused(record)
    pause = paused_at(record, store.load_events(execution_id))
    topic = waiting_topic(pause.name)
    if topic is not None:  # a receive waits there: a message continues it (a resume would not replay)
        raise not_resumable(record, topic)
    from taskloom.children import not_resumable as child_not_resumable
    from taskloom.children import waiting_child

    child = waiting_child(pause.name)
    if child is not None:  # a child workflow's end continues it
        raise child_not_resumable(record, child)
    blob = serde.dumps(input, what=f"resume input of workflow {record.workflow!r}")
    try:
        store.append_events(
            execution_id,
            [
                NewEvent(EventType.EXECUTION_RESUMED, pause.step_id, pause.name, blob),
                NewEvent(EventType.STEP_COMPLETED, pause.step_id, "pause", blob),
            ],
            status=status,
            expected_status=ExecutionStatus.PAUSED,
        )
    except ExecutionStateError:
        raise not_paused(get_execution(store, execution_id), raced=True) from None
    return record


def last_pause(events: Sequence[Event]) -> Event | None:
    """The execution's latest EXECUTION_PAUSED event: the pause a resume answers, and its deadline."""
    return next((e for e in reversed(events) if e.type is EventType.EXECUTION_PAUSED), None)


def paused_at(record: ExecutionRecord, events: Sequence[Event]) -> Event:
    """The pause event of a paused execution (with the step it suspended)."""
    pause = last_pause(events)
    if pause is None or pause.step_id is None:  # pragma: no cover - a paused row always has its event
        raise WorkflowError(f"execution {record.id} is marked paused but has no pause event")
    return pause


def pause_deadline(events: Sequence[Event]) -> float | None:
    """When the latest pause times out (``pause(name, timeout=...)``), or None."""
    pause = last_pause(events)
    deadline = pause.data.get("deadline") if pause is not None else None
    return float(deadline) if deadline is not None else None


def not_paused(record: ExecutionRecord, *, raced: bool = False) -> ExecutionStateError:
    """The error of a resume that found the execution not paused (``raced``: another request was first)."""
    if raced:
        return ExecutionStateError(
            f"execution {record.id} of workflow {record.workflow!r} was resumed or cancelled by another request "
            f"at the same time (it is now {record.status}); this resume was not applied"
        )
    return ExecutionStateError(
        f"execution {record.id} of workflow {record.workflow!r} is {record.status}, not paused; only a paused "
        "execution can be resumed"
    )


#: Attempts of a cancel whose execution keeps changing status (running -> paused -> ...) meanwhile.
CANCEL_ATTEMPTS = 5


def record_cancel(store: Store, execution_id: str) -> ExecutionRecord:
    """Cancel an execution that has not finished; a running one stops at its next step.

    The status seen and the status cancelled are the same: a cancel racing the execution's end either
    wins (the execution is cancelled) or finds it finished, never overwrites a result.
    """
    for _ in range(CANCEL_ATTEMPTS):
        record = get_execution(store, execution_id)
        if record.status in ExecutionStatus.FINISHED:
            raise ExecutionStateError(f"execution {execution_id} is already {record.status}; nothing to cancel")
        try:
            store.append_events(
                execution_id,
                [NewEvent(EventType.EXECUTION_CANCELLED, None, record.workflow)],
                status=ExecutionStatus.CANCELLED,
                expected_status=record.status,
            )
        except ExecutionStateError:
            continue  # its status changed since we read it: look again
        from taskloom.children import on_cancelled

        on_cancelled(store, execution_id)  # its running children are cancelled with it
        return record
    raise ExecutionStateError(
        f"execution {execution_id} changed status {CANCEL_ATTEMPTS} times while being cancelled; try again"
    )
