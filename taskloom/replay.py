"""The step cursor: position-based step ids, O(1) lookup of recorded outcomes, durable step writes.

An execution's events are read once, in one query, into a dict keyed by step id. Each task call in the
workflow takes the next id of its scope *when it is called* (not when awaited), so ids follow the
deterministic call order even inside ``parallel``, ``map`` and graphs. Calls made by an async task's
body get ids under that step (``"3.1"``, ``"3.2"``). A completed step is answered from the dict and never
run again; a call whose task differs from the recorded one raises :class:`NonDeterminismError`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Generator, Sequence

from taskloom import loop_free, masking, serde, tracing
from taskloom.context import current_scope
from taskloom.deadlines import Deadline
from taskloom.errors import (
    ExecutionStateError,
    LeaseLostError,
    NonDeterminismError,
    SerializationError,
    StoreError,
    StoreInterrupted,
    TaskTimeoutError,
    UndecodableValueError,
    WorkflowCancelled,
    WorkflowPaused,
)
from taskloom.events import Event, EventType, NewEvent
from taskloom.logs import current_origin
from taskloom.loop_free import NO_LOOP, cancelled_error, current_task, lost_loop
from taskloom.store.base import DEFAULT_QUEUE
from taskloom.typing_free import TYPE_CHECKING
from taskloom.versioning import PatchLog

if TYPE_CHECKING:
    import asyncio
    from concurrent.futures import Executor
    from typing import Any, NoReturn

    from taskloom.executors import AttemptExecutor
    from taskloom.group_commit import GroupCommit
    from taskloom.runtime.control import LogRecord, TaskControl
    from taskloom.store.base import Store
    from taskloom.task import Task
    from taskloom.thread_hops import ThreadLane

#: how long a step may run before its start is written on its own (see DeferredStart)
START_FLUSH_DELAY = 0.05
#: what ExecutionRun.run_plain_step answers for a step it leaves to the general path
GENERAL: Any = object()
_COMPLETED = EventType.STEP_COMPLETED
_FAILED = EventType.STEP_FAILED


class RecordedStep:
    """What the log says about one step: its task name, start data and outcome (if any).

    A plain class, not a dataclass: making a dataclass compiles its methods, about 1 ms of every process's
    start (issue 12's one-step process), and nothing compares or prints a recorded step.
    """

    __slots__ = ("data", "name", "outcome", "retried", "started", "value")

    def __init__(
        self,
        name: str | None,
        started: dict[str, Any] | None = None,
        outcome: EventType | None = None,
        value: bytes | None = None,
        data: dict[str, Any] | None = None,
        retried: tuple[int, float] | None = None,
    ) -> None:
        self.name = name
        self.started: dict[str, Any] = {} if started is None else started
        self.outcome = outcome
        self.value = value
        self.data: dict[str, Any] = {} if data is None else data
        #: an unsettled step's last recorded retry: the attempt that failed, and when its wait ends
        self.retried = retried


def index_steps(events: Sequence[Event]) -> dict[str, RecordedStep]:
    """One pass over the log; afterwards every lookup is a dict access."""
    steps: dict[str, RecordedStep] = {}
    for event in events:
        if event.step_id is None:
            continue
        if event.type is EventType.STEP_STARTED:
            step = steps.get(event.step_id)
            if step is None:
                steps[event.step_id] = RecordedStep(event.name, event.data)
        elif event.type in (_COMPLETED, _FAILED):
            step = steps.setdefault(event.step_id, RecordedStep(event.name))
            step.outcome, step.value, step.data = event.type, event.raw_value, event.data
        elif event.type is EventType.STEP_RETRYING and event.step_id in steps:
            ends = event.timestamp.timestamp() + float(event.data.get("delay", 0))
            steps[event.step_id].retried = (int(event.data.get("attempt", 0)), ends)
    return steps


def _remote_executor() -> AttemptExecutor | None:
    """``executors.current_executor()``, without importing taskloom.executors where nothing can have
    chosen one: TASKLOOM_EXECUTOR unset and the module (whose ``use_dask`` chooses in code) not loaded."""
    if "taskloom.executors" not in sys.modules and not os.environ.get("TASKLOOM_EXECUTOR"):
        return None
    from taskloom.executors import current_executor

    return current_executor()


def _remote_attempts(task: Task[Any, Any], remote: AttemptExecutor) -> Any:
    from taskloom.executors import RemoteAttempts

    return RemoteAttempts(task, remote)


def _task_control(name: str, instance_id: str, reporter: StepReporter) -> TaskControl:
    """A step's TaskControl (taskloom.runtime.control is imported by the first task that takes one)."""
    from taskloom.runtime.control import TaskControl

    return TaskControl(name, instance_id, reporter=reporter)


def _task_registry() -> Any:
    """asyncio's registry of every task (``_all_tasks`` in 3.11, ``_scheduled_tasks`` in 3.12 and 3.13), read
    for its size only; None from 3.14, where C tasks are listed elsewhere (all_tasks() is the only test)."""
    import asyncio

    tasks = asyncio.tasks
    return (
        getattr(tasks, "_scheduled_tasks", getattr(tasks, "_all_tasks", None)) if sys.version_info < (3, 14) else None
    )


#: the registry, once a loop was asked about (asyncio is imported then, not by ``import taskloom``)
_TASKS: Any = NO_LOOP


def _alone_on_loop() -> bool:
    """No other asyncio task exists (asked of the workflow's main task: steps inside parallel/map run in
    child tasks, never inline). When asyncio knows of one task at most, it is this one; all_tasks() would
    build a set on every step. Without a loop (loop_free), the run is alone by definition."""
    global _TASKS
    if _TASKS is NO_LOOP:
        if "asyncio" not in sys.modules:
            return True
        _TASKS = _task_registry()
    if _TASKS is not None and len(_TASKS) <= 1:
        return True
    import asyncio

    return asyncio._get_running_loop() is None or len(asyncio.all_tasks()) <= 1


class DeferredStart:
    """A step's STEP_STARTED event, written together with its outcome when the step is quick.

    Both reach the store before the workflow moves on, in one transaction instead of two. A step still
    running after :data:`START_FLUSH_DELAY` (or reporting progress, or retrying) has its start written at
    once, so long steps show as running. Safe to flush from a task's own thread or the watchdog's: the
    event goes to whoever takes this start out of the watchdog's ``pending`` dict, which one caller at most
    can (``dict.pop`` is atomic), so no lock is taken on a step's path.
    """

    __slots__ = ("_event", "_run", "cancelled")

    def __init__(self, run: ExecutionRun, event: NewEvent | None) -> None:
        self._run = run
        self._event = event
        #: the step was cancelled (see ExecutionRun._run_body): nothing more is written for it
        self.cancelled = False
        if event is not None:
            run.watchdog.watch(self)

    def _claim(self) -> NewEvent | None:
        """The start event for the caller to write, if nobody took it before (and stop watching it)."""
        return self._event if self._run.watchdog.pending.pop(self, None) is not None else None

    def flush(self) -> None:
        if (event := self._claim()) is not None:
            self._run.append(event)

    def take(self) -> tuple[NewEvent, ...]:
        """The start event if it was not written yet (to go with the outcome), and stop watching it."""
        return (event,) if (event := self._claim()) is not None else ()

    def cancel(self) -> None:
        """The step was cancelled: its start, if not written yet, never is, nor anything its body reports."""
        self.cancelled = True
        self._claim()


class StartWatchdog:
    """One thread per execution that writes the starts of steps still running after START_FLUSH_DELAY.

    A thread rather than loop timers, because a sync step running inline blocks the loop. ``pending`` holds
    the starts not written yet, with when each is due; a start leaves it with the one who writes it
    (:meth:`DeferredStart._claim`).
    """

    def __init__(self) -> None:
        self.pending: dict[DeferredStart, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, start: DeferredStart) -> None:
        self.pending[start] = time.monotonic() + START_FLUSH_DELAY
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="taskloom-start-watchdog", daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(START_FLUSH_DELAY / 2):
            now = time.monotonic()
            # A copy made in one C call (no other thread runs meanwhile); a start taken since is skipped by flush.
            due = [start for start, deadline in list(self.pending.items()) if deadline <= now]
            for start in due:
                try:
                    start.flush()
                except BaseException:  # the outcome write carries the start, or meets the same error
                    pass


def plain_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` with no scope, so task calls made by a sync task body are plain calls (policy.Plain)."""
    token = current_scope.set(None)
    try:
        return fn(*args, **kwargs)
    finally:
        current_scope.reset(token)


class ExecutionRun:
    """One execution being run (or replayed) in this process."""

    def __init__(
        self,
        store: Store,
        execution_id: str,
        events: Sequence[Event],
        executor: Executor | ThreadLane | None,
        *,
        lane: tuple[int, str] | None = None,
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self._executor = executor
        #: where the run's sync bodies that leave the loop's thread run, when ``executor`` is None: a
        #: ThreadLane of this (limit, name), made by the first such body (a run of plain steps makes none)
        self._lane = lane
        #: where the attempts of sync step bodies run when not here: TASKLOOM_EXECUTOR or use_dask() (executors)
        self.remote = _remote_executor()
        self.steps = index_steps(events)
        self.root = StepScope(self, "")
        #: the asyncio task driving the workflow body (see _alone_on_loop)
        self.main_task: asyncio.Task[Any] | None = None
        self.watchdog = StartWatchdog()
        #: who runs this execution (a worker, or an embedded run): every write is fenced by its lease
        self.lease_owner: str | None = None
        #: the queue the execution is run from; the children it queues for workers go to it too
        self.queue = DEFAULT_QUEUE
        #: set (by the lease keeper) once the execution was cancelled from outside: no new step starts
        self.cancelled = threading.Event()
        #: set when replayed code diverged; reported even if user code swallowed the exception
        self.nondeterminism: NonDeterminismError | None = None
        #: set when a step's body tried to end the process (sys.exit): the run counts as a crash
        self.exited: BaseException | None = None
        #: events of a resume (EXECUTION_RESUMED and the pause step's completion) written with the next write,
        #: so that a resume whose replay fails (changed code) leaves the log as it was
        self.pending: list[NewEvent] = []
        self._pending_lock = threading.Lock()
        #: the pause step that a resume given to this run answers, and its input
        self.resume: tuple[str, bytes] | None = None
        #: events this run wrote (0: the execution is as it was before the run)
        self.writes = 0
        #: the stored ``output=`` of each pause met, by step id: the value of its EXECUTION_PAUSED event
        self.pause_outputs: dict[str, bytes] = {}
        #: ``@workflow(timeout=...)``: past this deadline no new step starts (taskloom.deadlines)
        self.deadline: Deadline | None = None
        #: what ``patched()`` answers in this run (taskloom.versioning); reads the log only if it is called
        self.patches = PatchLog(events)
        self._group: GroupCommit | None = None

    @property
    def executor(self) -> Executor | ThreadLane | None:
        """The executor of the run's sync bodies off the loop (see ``lane``)."""
        executor = self._executor
        if executor is None and self._lane is not None:
            from taskloom.thread_hops import ThreadLane

            executor = self._executor = ThreadLane(*self._lane)
        return executor

    def close_lane(self) -> None:
        """Refuse new jobs on the lane this run made, if it made one (``ThreadLane.shutdown``)."""
        if self._lane is not None and self._executor is not None:
            self._executor.shutdown(wait=False)

    @property
    def group(self) -> GroupCommit:
        """Outcomes of steps finishing together (map, parallel, graph waves) share one transaction; made by
        the first step that is not the workflow's own (taskloom.group_commit is imported then)."""
        group = self._group
        if group is None:
            from taskloom.group_commit import GroupCommit

            group = self._group = GroupCommit(lambda batch: self.append(*batch))
        return group

    def check_cancelled(self) -> None:
        """Stop before a new step once the execution was cancelled from outside (an in-memory flag), or
        with TaskTimeoutError once its deadline passed."""
        if self.cancelled.is_set():
            raise WorkflowCancelled(self.execution_id)
        if self.deadline is not None and self.deadline.passed(time.time()):
            raise self.deadline.error()

    def write_with_next(self, *events: NewEvent) -> None:
        """Informational events (a Graph's shape and waves) written in this run's next write: no
        transaction of their own, and nothing at all if the run writes nothing more."""
        with self._pending_lock:
            self.pending.extend(events)

    def append(self, *events: NewEvent, **outcome: Any) -> None:
        """Write ``events`` (and, through ``outcome``, the execution's new status) under this run's lease.

        Each write requires the execution to be still running and leased to this run, so a cancel is seen
        at the latest by the step in flight (WorkflowCancelled), and a run whose lease passed to another
        owner stops (LeaseLostError). A store failure is not the task's failure: it unwinds the workflow
        as :class:`StoreInterrupted`, which no ``except Exception`` in user code catches.
        """
        pending: list[NewEvent] = []
        if self.pending:  # taken under the lock: the start watchdog writes from a thread of its own
            with self._pending_lock:
                pending, self.pending = self.pending, []
            events = (*pending, *events)
        try:
            self._append_fenced(events, outcome)
        except BaseException:
            if pending:  # not written: they go with the next write
                with self._pending_lock:
                    self.pending[:0] = pending
            raise
        self.writes += 1

    def _append_fenced(self, events: Sequence[NewEvent], outcome: dict[str, Any]) -> None:
        try:
            self.store.append_events(
                self.execution_id, events, lease_owner=self.lease_owner, expected_status="running", **outcome
            )
        except ExecutionStateError as changed:
            if not self._written_already(outcome.get("status")):
                self._refused(changed)
        except StoreError as error:
            raise StoreInterrupted(error) from error

    def _written_already(self, status: str | None) -> bool:
        """Whether a refused write of ``status`` (a write ending the run: completed, failed, paused) is in
        the store after all: the execution has that status under this run's own lease. Then the write
        committed and only its answer was lost (the connection dropped after the commit), and the store's
        retry of it met the write itself. Nobody else writes a status under this lease; a cancel writes
        ``cancelled``, another owner holds its own lease."""
        if status is None or self.lease_owner is None:
            return False
        try:
            record = self.store.get_execution(self.execution_id)
        except StoreError as error:
            raise StoreInterrupted(error) from error
        return record is not None and record.status == status and record.lease_owner == self.lease_owner

    def _refused(self, changed: ExecutionStateError) -> NoReturn:
        """A fenced write was refused. Only a cancel (or another owner's write, fenced by the lease)
        changes a running execution: say which, as WorkflowCancelled or LeaseLostError."""
        self.cancelled.set()
        try:
            record = self.store.get_execution(self.execution_id)
        except StoreError as error:
            raise StoreInterrupted(error) from error
        if record is not None and record.status == "cancelled":
            raise WorkflowCancelled(self.execution_id) from None
        raise LeaseLostError(f"execution {self.execution_id}: {changed}") from None

    def take_message(
        self, topic: str, step_id: str, receipt: Callable[[int, bytes | None], Sequence[NewEvent]]
    ) -> tuple[int, bytes | None] | None:
        """The oldest unread message of ``topic`` for the receive at ``step_id``, taken with its receipt
        events in one fenced write (:meth:`Store.receive_message`), or None; errors as in :meth:`append`.

        Events still pending (a resume's) go first in the same write; when nothing is taken they stay
        pending, since nothing was written."""
        with self._pending_lock:
            pending, self.pending = self.pending, []

        def events(seq: int, value: bytes | None) -> list[NewEvent]:
            return [*pending, *receipt(seq, value)]

        taken: tuple[int, bytes | None] | None = None
        try:
            taken = self.store.receive_message(self.execution_id, topic, step_id, events, lease_owner=self.lease_owner)
        except ExecutionStateError as changed:  # cancelled meanwhile (or taken over)
            self._refused(changed)
        except StoreError as error:
            raise StoreInterrupted(error) from error
        finally:
            if taken is None and pending:
                with self._pending_lock:
                    self.pending[:0] = pending
        if taken is not None:
            self.writes += 1
        return taken

    def decode(self, blob: bytes | None, step_id: str, name: str) -> Any:
        """A recorded value; one this code cannot unpickle (a renamed class) is a replay mismatch."""
        try:
            return serde.loads(blob)
        except Exception as cause:
            error = UndecodableValueError(
                f"execution {self.execution_id}: the recorded value of step {step_id} ({name!r}) cannot be "
                f"decoded by this code ({type(cause).__name__}: {cause}); a class it needs was renamed, moved "
                "or removed since it was recorded. Run the execution with code that has that class; it was "
                "left as it was."
            )
            self.nondeterminism = self.nondeterminism or error
            raise error from cause

    # -- replay checks -----------------------------------------------------------------------------
    def recorded(self, step_id: str, name: str) -> RecordedStep | None:
        step = self.steps.get(step_id)
        if step is not None and step.name != name:
            error = NonDeterminismError(
                f"execution {self.execution_id}: step {step_id} was recorded as {step.name!r} but the "
                f"workflow now calls {name!r} there. The workflow code changed since this execution started; run it "
                "with the code it started with, or start a new execution."
            )
            self.nondeterminism = self.nondeterminism or error
            raise error
        return step

    @types.coroutine
    def on_loop(self) -> Generator[Any, None, None]:
        """Await (or ``yield from``) this before what needs an event loop: a run driven without one
        (:mod:`taskloom.loop_free`) goes on on a loop from here, its main task the loop's task from now on."""
        if self.main_task is NO_LOOP:
            yield from loop_free.on_loop()
            self.main_task = current_task()

    # -- task steps --------------------------------------------------------------------------------
    def plain_start(
        self, step_id: str, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, alone: bool
    ) -> DeferredStart | None:
        """The start of a fresh step of a plain task (:attr:`Task.plain`) awaited by the workflow's main task
        itself, run by the fast path (:meth:`run_plain_step`, :meth:`run_plain_async_step`); None when the
        step needs the general path (:meth:`run_task_step`) after all: replayed, awaited elsewhere (``alone``:
        or anything else on the loop, which a sync body would block), a deadline, a remote executor or secrets
        in force, or arguments that cannot be stored (the general path records that failure, naming them).

        Most steps of most workflows are such steps, and most of a step's cost was the machinery the general
        path needs for what they have none of (retries, timeouts, fallback, rollback, cache, secrets,
        TaskControl, threads, a remote executor). What they do is the same either way: the body runs where
        run_task_step runs it, its start and outcome are written together, before the workflow goes on.
        """
        if (
            step_id in self.steps
            or current_task() is not self.main_task
            or (alone and not _alone_on_loop())
            or not self._plain_allowed()
        ):
            return None
        self.check_cancelled()
        try:
            event = self.start_event(step_id, task, args, kwargs)
        except SerializationError:
            return None
        return DeferredStart(self, event)

    def _plain_allowed(self) -> bool:
        """Whether this run lets plain steps and maps take their fast paths: no deadline, remote executor,
        secret nor tracing span (a span per step: the general path's tracing.step) in force."""
        return (
            self.deadline is None and self.remote is None and not masking.active_secrets() and not tracing.is_enabled()
        )

    def plain_map_ready(self, task: Task[Any, Any]) -> bool:
        """Whether a map of fresh steps of ``task``, their starts written, can run as a plain map
        (:mod:`taskloom.plain_map`): a plain sync task, where the run allows it."""
        return task.plain and not task.is_async and self._plain_allowed()

    def run_plain_step(self, step_id: str, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A plain sync step run here and now, with no coroutine, no policy and no thread (see
        :meth:`plain_start`); :data:`GENERAL` when it needs the general path."""
        start = self.plain_start(step_id, task, args, kwargs, alone=True)
        if start is None:
            return GENERAL
        # Its logs' origin (no span: plain_start leaves steps to the general path while tracing is on).
        origin = current_origin.set(tracing.step_origin(self.execution_id, step_id, task.name))
        try:
            try:
                call_args, call_kwargs = task.prepare_arguments(args, kwargs, None)
                value = plain_call(task.fn, call_args, call_kwargs)
                outcome = self.completed_event(task, step_id, value)
            except Exception as error:
                self._plain_failed(start, task, step_id, error)
                raise
            except SystemExit as exiting:
                self.exited = exiting  # a crash of this attempt, not an outcome (see _run_body)
                raise
            self.append(*start.take(), outcome)
        finally:
            current_origin.reset(origin)
        return value

    def run_plain_async_step(
        self, step_id: str, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], start: DeferredStart
    ) -> Generator[Any, None, Any]:
        """A plain async step, its body awaited right in the workflow's task (see :meth:`plain_start`); task
        calls in its body are its sub-steps, as on the general path."""
        origin = current_origin.set(tracing.step_origin(self.execution_id, step_id, task.name))
        token = current_scope.set(StepScope(self, f"{step_id}."))
        try:
            try:
                call_args, call_kwargs = task.prepare_arguments(args, kwargs, None)
                value = yield from task.fn(*call_args, **call_kwargs).__await__()
                outcome = self.completed_event(task, step_id, value)
            except Exception as error:
                self._plain_failed(start, task, step_id, error)
                raise
            except SystemExit as exiting:
                self.exited = exiting
                raise
            except cancelled_error():
                start.cancel()  # no outcome: it runs again if the execution continues (see _run_body)
                raise
            finally:
                current_scope.reset(token)
            self.append(*start.take(), outcome)
        finally:
            current_origin.reset(origin)
        return value

    def _plain_failed(self, start: DeferredStart, task: Task[Any, Any], step_id: str, error: Exception) -> None:
        """Record a plain step's failure with its start; unless it is asyncio's complaint that no loop runs in
        a run driven without one: not the step's outcome, nothing is written (loop_free.LoopNeeded)."""
        if self.main_task is NO_LOOP and lost_loop(error):
            start.cancel()
            return
        self.append(*start.take(), self.failed_event(task, step_id, error))

    async def run_task_step(
        self,
        step_id: str,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        start_recorded: bool = False,
    ) -> Any:
        step = self.recorded(step_id, task.name)
        if step is not None:
            if step.outcome is _COMPLETED:
                return self._decode_result(task, step, step_id)
            if step.outcome is _FAILED:
                raise self.decode(step.value, step_id, task.name)
        self.check_cancelled()
        on_main = self.main_task is not None and current_task() is self.main_task
        # A sync body runs on the loop's thread only when no other asyncio task exists to be blocked
        # (a sequential workflow driven by run()); otherwise, or with a timeout, it gets a thread.
        # A deadline (``@workflow(timeout=...)``) must be able to interrupt the loop: no body runs on it then.
        inline = (
            on_main
            and not task.is_async
            and not task.options.effective_timeout
            and self.deadline is None
            and _alone_on_loop()
        )
        start_event: NewEvent | None = None
        if step is None and not start_recorded:
            try:
                start_event = self.start_event(step_id, task, args, kwargs)
            except SerializationError as error:
                # Unstorable arguments fail the step before its body runs, recorded like any failure.
                started = NewEvent(EventType.STEP_STARTED, step_id, task.name)
                self.append(started, self.failed_event(task, step_id, error))
                raise
        start = DeferredStart(self, start_event)
        control = (
            _task_control(task.name, f"{self.execution_id}:{step_id}", StepReporter(self, step_id, start))
            if task.wants_control
            else None
        )
        retried = None if step is None else step.retried
        options = task.options
        # The observer records retries, fallbacks and rollbacks: a task with none of them needs none (most
        # steps, a map's items included: one object less each to make and to collect).
        observes = options.retry_max_attempts or options.fallback is not None or options.rollback is not None
        observer = StepObserver(self, step_id, task.name, start, retried) if observes or retried else None
        with tracing.step(self.execution_id, step_id, task.name):  # its logs' origin, and its span
            return await self._run_body(step_id, task, args, kwargs, start, control, observer, inline, on_main)

    async def _run_body(
        self,
        step_id: str,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        start: DeferredStart,
        control: TaskControl | None,
        observer: StepObserver | None,
        inline: bool,
        on_main: bool,
    ) -> Any:
        from taskloom import policy  # the general path's: plain steps never load it

        retried = None if observer is None else observer.retried
        try:
            # mark_running=False: the run's context already marks everything in it as inside a task
            # (Workflow._drive), which setting it again on every step would only repeat.
            if task.is_async:
                token = current_scope.set(StepScope(self, f"{step_id}."))
                try:
                    value = await policy.call_async(
                        task, args, kwargs, control=control, observer=observer, retried=retried, mark_running=False
                    )
                finally:
                    current_scope.reset(token)
            else:
                runs: Any = task if self.remote is None else _remote_attempts(task, self.remote)
                value = await policy.call_async(
                    runs,
                    args,
                    kwargs,
                    control=control,
                    observer=observer,
                    retried=retried,
                    executor=self.executor,
                    plain=plain_call,
                    inline=inline,
                    mark_running=False,
                )
            completed = self.completed_event(task, step_id, value)
        except Exception as error:
            if (written := self.record((*start.take(), self.failed_event(task, step_id, error)), on_main)) is not None:
                await written
            raise
        except SystemExit as exiting:
            # The body asked to end the process: that is a crash of this attempt, not an outcome.
            self.exited = exiting
            raise
        except cancelled_error():
            # A sibling in parallel() failed or paused: the step did not finish, so it records no outcome
            # (a start already written stays, as after a crash) and runs again if the execution continues.
            # A sync body already running in its thread cannot be interrupted; it is asked to stop, and
            # whatever it returns is dropped.
            start.cancel()
            if control is not None:
                control.request_stop()
            raise
        if (written := self.record((*start.take(), completed), on_main)) is not None:
            await written
        return value

    def record(self, events: tuple[NewEvent, ...], on_main: bool) -> Awaitable[None] | None:
        """Write a step's outcome: at once from the workflow's main task (a sequential step: nobody to wait
        for; None is returned), else in a transaction shared with the steps finishing with it
        (:mod:`taskloom.group_commit`), whose awaitable is returned. Not a coroutine: most steps are
        sequential, and they need not build one."""
        if on_main:
            self.append(*events)
            return None
        return self.group.write(events)

    def start_event(
        self, step_id: str, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> NewEvent:
        """The STEP_STARTED event, with the call's arguments (for humans and workers).

        Arguments that cannot be stored raise :class:`SerializationError` naming the task and the argument.
        """
        if not args and not kwargs:
            return NewEvent(EventType.STEP_STARTED, step_id, task.name)
        try:
            blob = serde.dumps_arguments(args, kwargs, what=f"task {task.name!r} arguments")
        except SerializationError:
            named = [
                *((f"argument {i}", v) for i, v in enumerate(args, 1)),
                *((f"argument {k!r}", v) for k, v in kwargs.items()),
            ]
            for where, value in named:  # name the argument at fault, not the tuple holding it
                serde.dumps(value, what=f"task {task.name!r} {where}")
            raise
        return NewEvent(EventType.STEP_STARTED, step_id, task.name, blob)

    def completed_event(self, task: Task[Any, Any], step_id: str, value: Any) -> NewEvent:
        """The STEP_COMPLETED event of ``value``, stored by the task's output storage if it has one.

        Raises :class:`SerializationError` naming the task and step for a value that cannot be stored. Safe
        in a thread of the run's (taskloom.plain_map): it reads only the run's id.
        """
        storage = task.options.output_storage
        what = f"task {task.name!r} result (step {step_id})"
        if storage is None:
            return NewEvent(_COMPLETED, step_id, task.name, serde.dumps(value, what=what))
        reference = storage.store(f"{self.execution_id}/{step_id}", value)
        data = {"output_storage": type(storage).__qualname__}
        return NewEvent(_COMPLETED, step_id, task.name, serde.dumps(reference, what=what), data)

    def failed_event(self, task: Task[Any, Any], step_id: str, error: BaseException) -> NewEvent:
        """The STEP_FAILED event of ``error`` (replaced by its text, naming the step, if it cannot be stored)."""
        return NewEvent(
            _FAILED, step_id, task.name, serde.dumps_error(error, what=f"task {task.name!r} (step {step_id})")
        )

    def _decode_result(self, task: Task[Any, Any], step: RecordedStep, step_id: str) -> Any:
        value = self.decode(step.value, step_id, task.name)
        if step.data.get("output_storage") and task.options.output_storage is not None:
            return task.options.output_storage.retrieve(value)
        return value

    # -- built-in steps ----------------------------------------------------------------------------
    async def run_value_step(self, step_id: str, name: str, compute: Callable[[], Any]) -> Any:
        """A step whose value is computed once and then replayed: now(), uuid4(), random picks."""
        step = self.recorded(step_id, name)
        if step is not None and step.outcome is _COMPLETED:
            return self.decode(step.value, step_id, name)
        self.check_cancelled()
        value = compute()
        blob = serde.dumps(value, what=f"built-in {name!r}")
        self.append(NewEvent(EventType.STEP_STARTED, step_id, name), NewEvent(_COMPLETED, step_id, name, blob))
        return value

    async def run_sleep_step(self, step_id: str, seconds: float) -> None:
        """A durable timer: the wake-up time is recorded, so a re-run sleeps only what is left."""
        step = self.recorded(step_id, "sleep")
        if step is not None and step.outcome is _COMPLETED:
            return
        self.check_cancelled()
        if step is not None and "until" in step.started:
            until = float(step.started["until"])
        else:
            until = time.time() + seconds
            self.append(NewEvent(EventType.STEP_STARTED, step_id, "sleep", data={"until": until, "seconds": seconds}))
        remaining = until - time.time()
        if remaining > 0:
            await self.on_loop()
            import asyncio

            await asyncio.sleep(remaining)
        self.append(NewEvent(_COMPLETED, step_id, "sleep", serde.dumps(None, what="sleep")))

    async def run_pause_step(self, step_id: str, name: str, timeout: float | None = None, output: Any = None) -> Any:
        """Suspend the execution at a named pause; once resumed, the step's value is the resume input.

        A pause with a timeout records its deadline; met again after the deadline without a resume, it
        fails with TaskTimeoutError (recorded, so replays fail the same way). ``output`` goes on the
        EXECUTION_PAUSED event the driver writes (:attr:`pause_outputs`); it is stored before anything
        else, so a value that cannot be stored fails the ``await pause(...)`` and writes nothing.
        """
        step = self.recorded(step_id, "pause")
        if step is not None and step.outcome is _COMPLETED:
            return self.decode(step.value, step_id, "pause")
        if step is not None and step.outcome is _FAILED:
            raise self.decode(step.value, step_id, "pause")
        if self.resume is not None and self.resume[0] == step_id and step is not None:
            # The resume this run was given: its events are written with the next write.
            blob = self.resume[1]
            self.resume = None
            self.pending += [
                NewEvent(EventType.EXECUTION_RESUMED, step_id, name, blob),
                NewEvent(_COMPLETED, step_id, "pause", blob),
            ]
            step.outcome, step.value = _COMPLETED, blob
            return self.decode(blob, step_id, "pause")
        self.check_cancelled()
        if output is not None:
            self.pause_outputs[step_id] = serde.dumps(output, what=f"pause {name!r} output")
        if step is None:
            data: dict[str, Any] = {"pause": name}
            if timeout is not None:
                data["deadline"] = time.time() + timeout
            self.append(NewEvent(EventType.STEP_STARTED, step_id, "pause", data=data))
            step = self.steps[step_id] = RecordedStep("pause", data)
        deadline = step.started.get("deadline")
        if deadline is not None and time.time() >= deadline:
            error = TaskTimeoutError(f"pause {name!r} (step {step_id}) was not resumed before its deadline")
            self.append(NewEvent(_FAILED, step_id, "pause", serde.dumps_error(error, what=f"pause {name!r}")))
            raise error
        raise WorkflowPaused(name, step_id, deadline)


class StepScope:
    """Hands out step ids in call order for one level of the workflow (the body, or a step's body)."""

    __slots__ = ("counter", "prefix", "run")

    def __init__(self, run: ExecutionRun, prefix: str) -> None:
        self.run = run
        self.prefix = prefix
        self.counter = 0

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.prefix}{self.counter}"

    def call(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepCall:
        return StepCall(self.run, self.next_id(), task, args, kwargs)

    def map(self, task: Task[Any, Any], items: Sequence[Any]) -> MapCall:
        return MapCall(self.run, [self.call(task, (item,), {}) for item in items])


class StepCall:
    """The awaitable a task call returns inside a workflow; its step id was fixed at call time."""

    __slots__ = ("args", "kwargs", "run", "start_recorded", "step_id", "task")

    def __init__(
        self,
        run: ExecutionRun,
        step_id: str,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.run = run
        self.step_id = step_id
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.start_recorded = False

    def __await__(self) -> Generator[Any, None, Any]:
        run, task = self.run, self.task
        if task.plain and not self.start_recorded:  # the fast path, when it applies (plain_start)
            if not task.is_async:
                value = run.run_plain_step(self.step_id, task, self.args, self.kwargs)
                if value is not GENERAL:
                    return value
            elif (start := run.plain_start(self.step_id, task, self.args, self.kwargs, alone=False)) is not None:
                return (yield from run.run_plain_async_step(self.step_id, task, self.args, self.kwargs, start))
        if run.main_task is NO_LOOP and ((step := run.steps.get(self.step_id)) is None or step.outcome is None):
            yield from run.on_loop()  # a step with a policy (a recorded outcome, replayed, needs no loop)
        return (
            yield from run.run_task_step(
                self.step_id, task, self.args, self.kwargs, start_recorded=self.start_recorded
            ).__await__()
        )

    def __repr__(self) -> str:
        return f"<step {self.step_id} {self.task.name!r}>"


class MapCall:
    """``task.map(items)`` in a workflow: all starts written in one transaction, then run concurrently."""

    def __init__(self, run: ExecutionRun, calls: list[StepCall]) -> None:
        self.run = run
        self.calls = calls

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self._run().__await__()

    async def _run(self) -> list[Any]:
        await self.run.on_loop()
        fresh = [c for c in self.calls if self.run.recorded(c.step_id, c.task.name) is None]
        starts: list[NewEvent] = []
        started: list[StepCall] = []
        for call in fresh:
            try:
                starts.append(self.run.start_event(call.step_id, call.task, call.args, call.kwargs))
            except SerializationError:
                continue  # its step records the failure when it runs
            started.append(call)
        if starts:
            self.run.append(*starts)
            for call in started:
                call.start_recorded = True
        if self.calls and len(started) == len(self.calls) and self.run.plain_map_ready(self.calls[0].task):
            from taskloom.plain_map import run_plain_map

            return await run_plain_map(self.run, self.calls[0].task, self.calls)
        from taskloom.tasks.compose import gather_steps

        return await gather_steps(self.calls)


class StepObserver:
    """Records retries, fallbacks and rollbacks of a step in the event log."""

    __slots__ = ("name", "retried", "run", "start", "step_id")

    def __init__(
        self,
        run: ExecutionRun,
        step_id: str,
        name: str,
        start: DeferredStart,
        retried: tuple[int, float] | None = None,
    ) -> None:
        self.run, self.step_id, self.name, self.start = run, step_id, name, start
        #: the step's last recorded retry when a run that died left it waiting to retry (see policy._turns)
        self.retried = retried

    def _event(self, kind: EventType, error: BaseException, **data: Any) -> None:
        if self.start.cancelled:
            return
        data["error"] = masking.mask_text(f"{type(error).__name__}: {error}")
        self.start.flush()
        self.run.append(NewEvent(kind, self.step_id, self.name, data=data))

    def on_retry(self, attempt: int, error: BaseException, delay: float) -> None:
        self._event(EventType.STEP_RETRYING, error, attempt=attempt, delay=delay)
        tracing.step_retried(attempt, error, delay)

    def on_fallback(self, error: BaseException) -> None:
        self._event(EventType.STEP_FALLBACK, error)

    def on_rollback(self, error: BaseException) -> None:
        self._event(EventType.STEP_ROLLBACK, error)


class StepReporter:
    """Writes a step's TaskControl progress, status and logs to the store, where the CLI follows them."""

    __slots__ = ("run", "start", "step_id")

    def __init__(self, run: ExecutionRun, step_id: str, start: DeferredStart) -> None:
        self.run, self.step_id, self.start = run, step_id, start

    def _append(self, event: NewEvent) -> None:
        if self.start.cancelled:  # a cancelled body still running in its thread: what it reports is dropped
            return
        self.start.flush()
        self.run.append(event)

    def on_log(self, control: TaskControl, record: LogRecord) -> None:
        data = {"level": record.level, "message": record.message}
        self._append(NewEvent(EventType.STEP_LOG, self.step_id, control.task_definition_name, data=data))

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None:
        data: dict[str, Any] = {"progress": progress}
        if status is not None:
            data["status"] = status
        self._append(NewEvent(EventType.STEP_PROGRESS, self.step_id, control.task_definition_name, data=data))

    def on_status(self, control: TaskControl, status: str) -> None:
        data = {"progress": control.progress, "status": status}
        self._append(NewEvent(EventType.STEP_PROGRESS, self.step_id, control.task_definition_name, data=data))
