"""``wf.start()`` and :class:`ExecutionHandle`: start an execution without waiting, follow it by its id.

Where the execution runs is decided once, at the start (``TASKLOOM_START``, see
:mod:`taskloom.settings`): embedded, the starting process drives it on its background runner
(:mod:`taskloom.runner`) under a lease, like a worker; with a server URL it is queued through the HTTP
API; with ``TASKLOOM_START=queue`` it is queued in the store. Wherever it runs, the handle reads its
state from the store (or the server), so a handle works the same in the process that started the
execution, in another process (``wf.handle(id)``), and after that process died and a worker took over.

Starting is idempotent by id: :func:`taskloom.executions.create_or_find` lets the store's primary key
decide, so a start with an id that exists returns that execution's handle and starts nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import time
from collections.abc import Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from taskloom.errors import TaskCancelledError, WorkflowError
from taskloom.executions import check_execution_id, create_or_find, get_execution, record_cancel
from taskloom.ids import uuid4_hex
from taskloom.leases import new_owner
from taskloom.queues import Queue, check_priority, named_declaration, queue_name, register_queues
from taskloom.runner import runner
from taskloom.settings import Settings
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store, held_by_another
from taskloom.versioning import NO_VERSION

if TYPE_CHECKING:
    from taskloom.workflow import Workflow

T = TypeVar("T")

#: first and longest wait between two looks at an execution this process does not run itself
FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.25


class _Source(Protocol):
    """Where a handle reads its execution: the store, or a taskloom server."""

    def status(self, execution_id: str) -> str: ...

    def outcome(self, execution_id: str) -> tuple[str, Any] | None:
        """``(status, output)`` once the execution finished (the output decoded), else None."""

    def cancel(self, execution_id: str) -> None: ...


class ExecutionHandle(Generic[T]):
    """One execution, started or looked up by id: its status, its result, a way to cancel it.

    ``result(timeout=None)`` waits for the execution to finish and returns its output, raises the
    workflow's own exception when it failed, :class:`~taskloom.errors.TaskCancelledError` when it was
    cancelled, and ``TimeoutError`` when ``timeout`` seconds pass first (the handle stays usable: ask
    again later). In async code, ``await handle`` (or ``await handle.aresult(timeout)``).
    A paused execution has not finished: ``result`` goes on waiting until it is resumed and ends.
    """

    def __init__(self, workflow: Workflow[T], execution_id: str, source: _Source) -> None:
        self.workflow = workflow
        self.execution_id = execution_id
        self._source = source

    def __repr__(self) -> str:
        return f"ExecutionHandle(workflow={self.workflow.name!r}, execution_id={self.execution_id!r})"

    def status(self) -> str:
        """The execution's status now: ``queued``, ``running``, ``paused``, ``completed``, ``failed`` or
        ``cancelled``."""
        return self._source.status(self.execution_id)

    def cancel(self) -> None:
        """Cancel the execution: a queued or paused one at once, a running one at its next step.

        An execution that has already finished raises :class:`~taskloom.errors.ExecutionStateError`.
        """
        self._source.cancel(self.execution_id)

    def result(self, timeout: float | None = None) -> Any:
        """The execution's output once it finished; see the class for what else it raises."""
        _refuse_inside_loop(f"handle {self.execution_id}.result()", "await handle")
        deadline = _deadline(timeout)
        run = runner.running(self.execution_id)
        if run is not None:  # driven here: wait for its run rather than look at the store
            concurrent.futures.wait([run], timeout=_remaining(deadline))
        poll = FIRST_POLL_SECONDS
        while True:
            outcome = self._source.outcome(self.execution_id)
            if outcome is not None:
                return self._settle(outcome)
            _raise_if_run_failed(run)
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise self._timeout(timeout)
            time.sleep(poll if remaining is None else min(poll, remaining))
            poll = min(poll * 2, MAX_POLL_SECONDS)

    async def aresult(self, timeout: float | None = None) -> Any:
        """:meth:`result` for async code (``await handle`` is ``await handle.aresult()``)."""
        deadline = _deadline(timeout)
        run = runner.running(self.execution_id)
        if run is not None:
            # shield: a caller that stops waiting (its own timeout, a cancel) must not cancel the run
            await asyncio.wait([asyncio.shield(asyncio.wrap_future(run))], timeout=_remaining(deadline))
        poll = FIRST_POLL_SECONDS
        while True:
            outcome = await asyncio.to_thread(self._source.outcome, self.execution_id)
            if outcome is not None:
                return self._settle(outcome)
            _raise_if_run_failed(run)
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise self._timeout(timeout)
            await asyncio.sleep(poll if remaining is None else min(poll, remaining))
            poll = min(poll * 2, MAX_POLL_SECONDS)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.aresult().__await__()

    def _settle(self, outcome: tuple[str, Any]) -> Any:
        status, output = outcome
        if status == ExecutionStatus.COMPLETED:
            return output
        if status == ExecutionStatus.CANCELLED:
            raise TaskCancelledError(f"execution {self.execution_id} of workflow {self.workflow.name!r} was cancelled")
        if isinstance(output, BaseException):
            raise output  # the workflow's own exception, as the store kept it
        raise WorkflowError(f"execution {self.execution_id} of workflow {self.workflow.name!r} failed: {output!r}")

    def _timeout(self, timeout: float | None) -> TimeoutError:
        return TimeoutError(
            f"execution {self.execution_id} of workflow {self.workflow.name!r} did not finish within {timeout} s "
            f"(it is {self.status()}); the handle can wait again"
        )


class StoreSource:
    """A handle's view through the store this process uses (embedded, or ``TASKLOOM_START=queue``)."""

    def __init__(self, workflow: Workflow[Any], store: Store) -> None:
        self.workflow = workflow
        self.store = store

    def status(self, execution_id: str) -> str:
        return get_execution(self.store, execution_id).status

    def outcome(self, execution_id: str) -> tuple[str, Any] | None:
        record = get_execution(self.store, execution_id)
        if record.status not in ExecutionStatus.FINISHED:
            return None
        return record.status, self.workflow._decode_output(record.output)

    def cancel(self, execution_id: str) -> None:
        record_cancel(self.store, execution_id)


class ServerSource:
    """A handle's view through a taskloom server (``TASKLOOM_SERVER_URL``): outputs come as their JSON
    views, and a failure as a :class:`~taskloom.errors.WorkflowError` naming the exception's type."""

    def status(self, execution_id: str) -> str:
        from taskloom.client import TaskloomClient

        with TaskloomClient() as client:
            return str(client.status(execution_id)["status"])

    def outcome(self, execution_id: str) -> tuple[str, Any] | None:
        from taskloom.client import TaskloomClient

        with TaskloomClient() as client:
            view = client.status(execution_id)
        status = view["status"]
        if status not in ExecutionStatus.FINISHED:
            return None
        output = view.get("output")
        if status == ExecutionStatus.FAILED:
            kind = output.get("type") if isinstance(output, dict) else None
            message = output.get("message") if isinstance(output, dict) else output
            return status, WorkflowError(f"execution {execution_id} failed with {kind}: {message}")
        return status, output

    def cancel(self, execution_id: str) -> None:
        from taskloom.client import TaskloomClient

        with TaskloomClient() as client:
            client.cancel(execution_id)


def start_execution(
    workflow: Workflow[T],
    input: T | None,
    *,
    execution_id: str | None,
    delay: float | timedelta | None,
    queue: str | Queue | None,
    priority: int,
) -> ExecutionHandle[T]:
    """``wf.start()``: create the execution (or find the one with that id) and see that it runs.

    With ``queue=`` or ``priority=`` it is always queued for workers (:mod:`taskloom.queues`): the limits
    are kept by the workers' claims, which a run in this process would bypass."""
    on_queue, priority = queue_name(queue), check_priority(priority)
    queued = queue is not None or priority != 0
    seconds = delay_seconds(delay)
    execution_id = uuid4_hex() if execution_id is None else check_execution_id(execution_id)
    settings = Settings.from_env()
    if settings.start == "auto" and settings.server_url:
        from taskloom.client import TaskloomClient

        with TaskloomClient() as client:
            client.start(
                workflow.target, input, execution_id=execution_id, delay=seconds, queue=on_queue, priority=priority
            )
        return ExecutionHandle(workflow, execution_id, ServerSource())
    store = default_store()
    wake_at = time.time() + seconds if seconds else None
    handle = ExecutionHandle(workflow, execution_id, StoreSource(workflow, store))
    # The execution as this call would create it: stamped with this code's version, so only workers with
    # that version claim it (taskloom.versioning).
    create = functools.partial(
        create_or_find,
        store,
        execution_id,
        workflow.name,
        workflow.target,
        input,
        version=workflow.version or NO_VERSION,
    )
    if settings.start == "queue" or queued:
        declared = queue if isinstance(queue, Queue) else named_declaration(on_queue)
        if declared is not None:  # its limits reach the store before any worker of it starts
            register_queues(store, [declared])
        create(ExecutionStatus.QUEUED, wake_at=wake_at, queue=on_queue, priority=priority)
        return handle
    if wake_at is not None:
        # Queued with its not-before time: workers respect it, and so does the runner here.
        existing = runner.call(create, ExecutionStatus.QUEUED, wake_at=wake_at)
        if _to_drive(existing):
            runner.submit(workflow, store, execution_id, None, settings.lease_seconds)
        return handle
    owner = new_owner("start")
    existing = runner.call(create, ExecutionStatus.RUNNING, lease_owner=owner, lease_seconds=settings.lease_seconds)
    if existing is None:
        runner.submit(workflow, store, execution_id, owner, settings.lease_seconds)
    elif _to_drive(existing):
        runner.submit(workflow, store, execution_id, None, settings.lease_seconds)
    return handle


def _to_drive(existing: ExecutionRecord | None) -> bool:
    """Whether this process's runner should drive an execution a start found (or created: None): not when
    it finished, waits for a resume, runs under another live owner, or already runs here."""
    if existing is None:
        return True
    if existing.status in ExecutionStatus.FINISHED or existing.status == ExecutionStatus.PAUSED:
        return False  # a paused one whose deadline passed is a worker's or recover's to time out
    if held_by_another(existing, "", time.time()):
        return False
    return runner.running(existing.id) is None


def handle_for(workflow: Workflow[T], execution_id: str) -> ExecutionHandle[T]:
    """``wf.handle(id)``: the handle of an existing execution of ``workflow``."""
    settings = Settings.from_env()
    if settings.start == "auto" and settings.server_url:
        source = ServerSource()
        source.status(execution_id)  # ExecutionNotFoundError now rather than at the first look
        return ExecutionHandle(workflow, execution_id, source)
    store = default_store()
    workflow._load(store, execution_id)  # it exists, and belongs to this workflow
    return ExecutionHandle(workflow, execution_id, StoreSource(workflow, store))


def delay_seconds(delay: float | timedelta | None, argument: str = "delay") -> float | None:
    """``delay`` as a finite number of seconds >= 0 (None stays None); a clear error naming it else."""
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise ValueError(f"{argument} must be a number of seconds or a timedelta, got {delay!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{argument} must be a finite number of seconds >= 0, got {delay!r}")
    return seconds


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _raise_if_run_failed(run: concurrent.futures.Future[None] | None) -> None:
    """The run in this process stopped on an error of its own (the store failed, the code cannot replay
    it) and the execution has not finished: say why rather than wait for someone else to finish it."""
    if run is not None and run.done() and not run.cancelled():
        error = run.exception()
        if error is not None:
            raise error


def _refuse_inside_loop(call: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise WorkflowError(f"{call} was called inside a running event loop; use `{instead}` in async code")
