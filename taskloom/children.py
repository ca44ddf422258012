"""Child workflows: ``await other(input)`` inside a workflow runs ``other`` as a child execution.

The call is one step of the parent. Its child's id derives from the parent's id and the step's id
(:func:`child_id_for`), and the store's primary key decides whether it exists: a replay, or a re-run
of a parent whose process died after it started the child, finds the child instead of starting a
second one. The step's start event names the child (``data["child"]``) before the child is created, so
a cancel of the parent always sees the children it must cancel too (:func:`on_cancelled`).

Where the child runs: embedded (the parent run by ``wf.run``/``wf.start``), in the parent's process,
on the parent's event loop, under a lease of its own, so a crash of that process is recovered like any
other. When the parent is run by a worker (or ``TASKLOOM_START=queue``, or a server URL), the child is
queued for a worker serving its workflow.

The parent waits durably: while the child has not finished (queued, run by a worker, or paused at a
``pause``/``receive`` of its own), the parent is suspended like a ``receive``: paused, its pause named
``child:<child id>``, waiting for a message of a topic of its own (:func:`wake_topic`). The child's end
sends that message (by the driver that finished it, or by the cancel that cancelled it), which makes
the parent due at once (``wake_at`` now, NOTIFY on PostgreSQL): a worker continues it, or else the next
``wf.run(execution_id=parent)``. A message sent while the parent was still pausing is seen by the pause's
own write (``wake_on_message``), so none is missed; and the pause has a deadline
(:data:`RECHECK_SECONDS`) after which a worker looks at the child again anyway, should the process that
ended the child have died between its end and the message.

The step's outcome is the child's: its output, or its own exception (the child's stored error) raised
in the parent; a child cancelled on its own raises :class:`~taskloom.errors.TaskCancelledError`. The
parent takes the wake message in the same transaction that records the outcome, so none is left unread.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable, Sequence

from taskloom import serde, tracing
from taskloom.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    NonDeterminismError,
    StoreError,
    TaskCancelledError,
    WorkflowCancelled,
    WorkflowError,
)
from taskloom.events import Event, EventType, NewEvent
from taskloom.leases import new_owner
from taskloom.logs import lazy_logger
from taskloom.messages import ReceiveWaiting
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store
from taskloom.typing_free import TYPE_CHECKING
from taskloom.versioning import NO_VERSION

if TYPE_CHECKING:
    from typing import Any

    from taskloom.replay import ExecutionRun, RecordedStep
    from taskloom.workflow import Workflow

log = lazy_logger("taskloom.children")  # logging is imported when it first logs

#: a waiting parent's pause is named this plus its child's id
PAUSE_PREFIX = "child:"
#: the step name of a child in the parent's log is this plus the child's workflow name
STEP_PREFIX = "workflow:"
#: the topic of the message that wakes a parent, plus the step id of the child
TOPIC_PREFIX = "taskloom.child:"
#: how long a parent waits for its child's wake message before a worker looks at the child again anyway
RECHECK_SECONDS = 60.0
#: kinds of lease owners of embedded runs (:func:`taskloom.leases.new_owner`); a worker's id has none
_EMBEDDED_OWNERS = ("run:", "start:")


def child_id_for(parent_id: str, step_id: str) -> str:
    """The id of the child started at ``step_id`` of ``parent_id``: the same in every run of the parent."""
    child_id = f"{parent_id}-child-{step_id}"
    if len(child_id) <= 200:  # executions.MAX_EXECUTION_ID_LENGTH
        return child_id
    import hashlib  # here, not at the top: only ids too long need it, and it loads OpenSSL

    digest = hashlib.sha256(child_id.encode()).hexdigest()[:32]
    return f"{parent_id[:100]}-child-{digest}"


def wake_topic(step_id: str) -> str:
    return f"{TOPIC_PREFIX}{step_id}"


def waiting_child(pause: str | None) -> str | None:
    """The child a paused execution waits for, from its pause's name; None for other pauses."""
    if pause is None or not pause.startswith(PAUSE_PREFIX):
        return None
    return pause[len(PAUSE_PREFIX) :]


def not_resumable(record: ExecutionRecord, child_id: str) -> ExecutionStateError:
    """The error of a resume of an execution that waits for its child: the child's end continues it."""
    return ExecutionStateError(
        f"execution {record.id} of workflow {record.workflow!r} waits for its child execution {child_id}, not "
        f"for a resume; it continues when that child finishes (cancel the parent to stop both)"
    )


def parent_of(events: Sequence[Event]) -> str | None:
    """The parent's id, from the execution's ``execution_started`` event; None for a top-level one."""
    started = next((e for e in events if e.type is EventType.EXECUTION_STARTED), None)
    parent = started.data.get("parent_id") if started is not None else None
    return parent if isinstance(parent, str) else None


class ChildWaiting(ReceiveWaiting):
    """The child has not finished: the parent pauses until the child's wake message makes it due."""

    def __init__(self, child_id: str, step_id: str, deadline: float) -> None:
        super().__init__(wake_topic(step_id), step_id, deadline)
        self.name = f"{PAUSE_PREFIX}{child_id}"
        self.child_id = child_id


class ChildCall:
    """What ``other(input)`` returns inside a workflow; its step id was fixed at call time."""

    __slots__ = ("input", "run", "step_id", "workflow")

    def __init__(self, run: ExecutionRun, step_id: str, workflow: Workflow[Any], input: Any) -> None:
        self.run = run
        self.step_id = step_id
        self.workflow = workflow
        self.input = input

    def __await__(self) -> Generator[Any, None, Any]:
        return run_child_step(self.run, self.step_id, self.workflow, self.input).__await__()

    def __repr__(self) -> str:
        return f"<child step {self.step_id} {self.workflow.name!r}>"


def _queues_children(run: ExecutionRun) -> bool:
    """Whether children of this run are queued for workers rather than run in this process."""
    from taskloom.settings import Settings

    settings = Settings.from_env()
    if settings.start == "queue" or (settings.start == "auto" and settings.server_url):
        return True
    owner = run.lease_owner or ""
    return not owner.startswith(_EMBEDDED_OWNERS)


async def run_child_step(run: ExecutionRun, step_id: str, child: Workflow[Any], input: Any) -> Any:
    """The child step at ``step_id``: its recorded outcome on replay; else start the child (once), wait
    for it (here, or durably), and record its outcome."""
    name = f"{STEP_PREFIX}{child.name}"
    step = run.recorded(step_id, name)
    if step is not None and step.outcome is EventType.STEP_COMPLETED:
        return run.decode(step.value, step_id, name)
    if step is not None and step.outcome is EventType.STEP_FAILED:
        raise run.decode(step.value, step_id, name)
    if run.resume is not None and run.resume[0] == step_id:
        # wf.run(execution_id=parent) continues a waiting parent with None: the child is looked at again.
        run.resume = None
    run.check_cancelled()
    store = run.store
    queued = _queues_children(run)
    created = False
    owner: str | None = None
    if step is None:
        blob = serde.dumps(input, what=f"child workflow {child.name!r} input (step {step_id})")
        child_id = child_id_for(run.execution_id, step_id)
        data = {"child": child_id, "workflow": child.name}
        # Written before the child exists: a cancel of the parent that does not see this step finds no child.
        run.append(NewEvent(EventType.STEP_STARTED, step_id, name, data=data))
        from taskloom.replay import RecordedStep

        step = run.steps[step_id] = RecordedStep(name, data)
        owner = None if queued else new_owner("run")
        created = _create(store, run, step_id, child, child_id, blob, queued, owner)
    else:
        child_id = str(step.started["child"])
    if created:
        _cancel_if_parent_cancelled(store, run, child_id)
    with tracing.step(run.execution_id, step_id, name):  # its span is the parent of the child's run here
        record = await _wait(run, child, child_id, queued, owner if created else None)
        if record.status not in ExecutionStatus.FINISHED:
            raise ChildWaiting(child_id, step_id, time.time() + RECHECK_SECONDS)
        return _settle(run, step_id, name, child, record)


def _create(
    store: Store,
    run: ExecutionRun,
    step_id: str,
    child: Workflow[Any],
    child_id: str,
    blob: bytes,
    queued: bool,
    owner: str | None,
) -> bool:
    """Create the child unless it exists (the primary key decides); whether this call created it."""
    from taskloom.settings import Settings

    started = {"parent_id": run.execution_id, "parent_step": step_id}
    try:
        store.create_execution(
            child_id,
            child.name,
            blob,
            ExecutionStatus.QUEUED if queued else ExecutionStatus.RUNNING,
            child.target,
            # Embedded: leased to the run that drives it here from its first event, as wf.start does.
            lease_owner=owner,
            lease_seconds=None if owner is None else Settings.from_env().lease_seconds,
            started_data=started,
            version=child.version or NO_VERSION,  # only workers with this code's version claim it
            # The parent's queue, as Temporal's child workflows take their parent's task queue: the
            # workers that serve the parent serve its children, and the parent's limits hold for them.
            queue=run.queue,
        )
        return True
    except ExecutionStateError:
        existing = store.get_execution(child_id)
    if existing is None:  # pragma: no cover - executions are never deleted
        raise ExecutionNotFoundError(f"child execution {child_id} disappeared from the store {store.url}")
    if existing.workflow != child.name or parent_of(store.load_events(child_id)) != run.execution_id:
        raise WorkflowError(
            f"execution {run.execution_id}: the id {child_id!r} of its child at step {step_id} is taken by "
            f"another execution (of workflow {existing.workflow!r}); a caller chose that id for another execution"
        )
    return False


def _cancel_if_parent_cancelled(store: Store, run: ExecutionRun, child_id: str) -> None:
    """A cancel of the parent that came between the step's start and the child's creation found no child
    to cancel: cancel it here."""
    parent = store.get_execution(run.execution_id)
    if parent is not None and parent.status == ExecutionStatus.CANCELLED:
        _cancel_quietly(store, child_id)
        raise WorkflowCancelled(run.execution_id)


async def _wait(
    run: ExecutionRun, child: Workflow[Any], child_id: str, queued: bool, owner: str | None
) -> ExecutionRecord:
    """Drive the child here (embedded) until it finishes or waits; the child's record then. ``owner``: this
    call created the child, leased to it."""
    from taskloom.settings import Settings

    store = run.store
    if owner is not None:
        lease = Settings.from_env().lease_seconds
        await _driven(run, child.arun(execution_id=child_id, store=store, lease_owner=owner, lease_seconds=lease))
    while True:
        record = store.get_execution(child_id)
        if record is None:  # pragma: no cover - executions are never deleted
            raise ExecutionNotFoundError(f"child execution {child_id} disappeared from the store {store.url}")
        if queued or record.status in ExecutionStatus.FINISHED or record.status == ExecutionStatus.PAUSED:
            return record
        # Running (under a live owner: arun waits for it, or takes it over once it died) or queued.
        ctx = await _driven(run, child.arun(execution_id=child_id, store=store, continue_paused=False))
        if ctx.status != ExecutionStatus.RUNNING:
            return store.get_execution(child_id) or record


async def _driven(run: ExecutionRun, driving: Any) -> Any:
    """Await the child's driver; a child that this code cannot replay leaves the parent as it was too."""
    try:
        return await driving
    except NonDeterminismError as error:
        run.nondeterminism = run.nondeterminism or error
        raise


def _settle(run: ExecutionRun, step_id: str, name: str, child: Workflow[Any], record: ExecutionRecord) -> Any:
    """Record the finished child's outcome as the step's (taking its wake message), and return or raise it."""
    data = {"child": record.id, "status": record.status}
    if record.status == ExecutionStatus.COMPLETED:
        kind, blob = EventType.STEP_COMPLETED, record.output
    elif record.status == ExecutionStatus.FAILED:
        kind, blob = EventType.STEP_FAILED, record.output
    else:
        error = TaskCancelledError(f"child execution {record.id} of workflow {child.name!r} was cancelled")
        kind, blob = EventType.STEP_FAILED, serde.dumps_error(error, what=f"child workflow {child.name!r}")
    outcome = NewEvent(kind, step_id, name, blob, data)
    taken = run.take_message(wake_topic(step_id), step_id, lambda seq, value: [outcome])
    if taken is None:
        run.append(outcome)
    step = run.steps[step_id]
    step.outcome, step.value, step.data = kind, blob, data
    value = run.decode(blob, step_id, name)
    if kind is EventType.STEP_FAILED:
        if not isinstance(value, BaseException):  # pragma: no cover - a failed execution stores its error
            raise WorkflowError(f"child execution {record.id} failed with {value!r}")
        raise value
    if child.output_storage is not None:
        value = child._decode_output(blob)
    return value


# -- the child's end, and cancels ----------------------------------------------------------------------
def wake_parent(store: Store, parent_id: str, child_id: str, events: Sequence[Event] | None = None) -> None:
    """Tell the parent its child finished: a message that makes the parent due if it waits for the child.

    Best effort: should it fail, the parent's pause deadline has a worker look at the child anyway."""
    try:
        started = events if events is not None else store.load_events(child_id)
        step = next((e.data.get("parent_step") for e in started if e.type is EventType.EXECUTION_STARTED), None)
        if not isinstance(step, str):
            return
        # One wake per child, however many of its ends tell (its driver, a cancel, a retried write).
        store.send_message(
            parent_id, wake_topic(step), None, wake_pause=f"{PAUSE_PREFIX}{child_id}", idempotency_key=f"end:{child_id}"
        )
    except ExecutionStateError:
        pass  # the parent finished (cancelled): nothing waits
    except Exception as error:
        log.warning("child execution %s: could not wake its parent %s: %s", child_id, parent_id, error)


def running_children(events: Sequence[Event]) -> list[str]:
    """The children an execution started that have no recorded outcome in its log."""
    from taskloom.replay import index_steps

    return [
        str(step.started["child"])
        for step in index_steps(events).values()
        if step.outcome is None and "child" in step.started and step.name and step.name.startswith(STEP_PREFIX)
    ]


def on_cancelled(store: Store, execution_id: str) -> None:
    """After a cancel of ``execution_id``: cancel its unfinished children (and theirs), and wake its parent."""
    events = _events_to_close(store, execution_id, "cancelled")
    if events is None:
        return
    close_children(store, execution_id, events)
    parent = parent_of(events)
    if parent is not None:
        wake_parent(store, parent, execution_id, events)


def close_children(store: Store, execution_id: str, events: Sequence[Event] | None = None) -> None:
    """``execution_id`` ended (completed, failed, timed out, cancelled): cancel the children it started that
    have not finished, and theirs. Nothing awaits them any more: a child step abandoned when a sibling in
    ``parallel()`` failed, or when the parent's deadline passed, would otherwise be left running or paused
    for ever (Temporal's default parent-close policy, TERMINATE, does the same). ``events``: the parent's
    log, when the caller has it."""
    if events is None:
        events = _events_to_close(store, execution_id, "finished")
        if events is None:
            return
    for child_id in running_children(events):
        _cancel_quietly(store, child_id)


def has_child_steps(steps: Iterable[RecordedStep]) -> bool:
    """Whether any of a run's steps is a child workflow (the cheap test before :func:`close_children`)."""
    return any(step.name.startswith(STEP_PREFIX) for step in steps if step.name)


def _events_to_close(store: Store, execution_id: str, how: str) -> Sequence[Event] | None:
    try:
        return store.load_events(execution_id)
    except StoreError as error:  # the end itself is recorded; its children stop at their parent-less end
        log.warning("execution %s: %s, but its children could not be looked up: %s", execution_id, how, error)
        return None


def _cancel_quietly(store: Store, child_id: str) -> None:
    from taskloom.executions import record_cancel

    try:
        record_cancel(store, child_id)
    except (ExecutionStateError, ExecutionNotFoundError):
        pass  # finished already, or never created
    except StoreError as error:
        log.warning("child execution %s: could not be cancelled: %s", child_id, error)
