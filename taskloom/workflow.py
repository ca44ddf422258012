"""@workflow: run, continue and resume durable executions.

``run`` creates an execution and drives the workflow body on an event loop. Every step's start and
outcome reach the store before the body moves on, so running the same execution id again, in this
process or another after a crash, replays recorded steps and continues where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from taskloom import masking, serde, tracing
from taskloom.children import close_children, has_child_steps, parent_of, waiting_child, wake_parent
from taskloom.children import not_resumable as child_not_resumable
from taskloom.context import WorkflowExecutionContext, current_scope
from taskloom.deadlines import Deadline, check_timeout
from taskloom.errors import (
    ExecutionCrashedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    LeaseLostError,
    StoreError,
    StoreInterrupted,
    TaskDefinitionError,
    UndecodableValueError,
    WorkflowCancelled,
    WorkflowError,
    WorkflowPaused,
)
from taskloom.events import Event, EventType, NewEvent
from taskloom.executions import (
    check_execution_id,
    create_or_find,
    not_paused,
    pause_deadline,
    paused_at,
    record_cancel,
)
from taskloom.ids import uuid4_hex
from taskloom.leases import keeper, new_owner
from taskloom.logs import lazy_logger
from taskloom.loop_free import NO_LOOP, LoopNeeded, current_task, drive, loop_running, lost_loop, on_loop
from taskloom.messages import ReceiveWaiting, not_resumable, waiting_topic
from taskloom.options import OutputStorage, TaskOptions
from taskloom.replay import ExecutionRun
from taskloom.settings import Settings
from taskloom.signatures import is_coroutine_function
from taskloom.store import default_store
from taskloom.store.base import Acquired, ExecutionRecord, ExecutionStatus, Store, holder_died, not_yet_due
from taskloom.task_running import mark_inside_task, unmark_inside_task
from taskloom.typing_free import TYPE_CHECKING
from taskloom.versioning import NO_VERSION, check_version, claim_version

if TYPE_CHECKING:
    import signal
    from datetime import timedelta
    from typing import Any, Generic, TypeVar

    from taskloom.handles import ExecutionHandle
    from taskloom.queues import Queue
    from taskloom.schedule_ticks import Cron
    from taskloom.schedules import Schedule
else:
    # The C module the ``signal`` package wraps: ``signal`` adds its enums (Signals, Handlers), whose making
    # is most of its import, 0.5 ms of every run's process (issue 12); the calls used here are the same.
    import _signal as signal

    from taskloom.typing_free import Any, Generic, TypeVar

T = TypeVar("T")
WorkflowFn = Callable[[WorkflowExecutionContext[Any]], Awaitable[Any]]

log = lazy_logger("taskloom.workflow")  # logging is imported when it first logs
#: the ends a run records that leave none of its children awaited (a cancel closes them itself: children.on_cancelled)
_CLOSES_CHILDREN = (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)

#: sync task bodies of one execution running at once (I/O-bound tasks are the common case)
STEP_THREADS = 32
#: how often a second driver looks whether the owner of an execution finished (or died)
OWNER_POLL_SECONDS = 0.2
#: how often an execution may kill the process running it before it is failed (max_recovery_attempts)
DEFAULT_MAX_RECOVERY_ATTEMPTS = 3


class Workflow(Generic[T]):
    """A durable workflow. ``run``/``resume`` in sync code, ``arun``/``aresume`` in async code."""

    def __init__(
        self,
        fn: WorkflowFn,
        *,
        name: str | None = None,
        timeout: float | None = None,
        secret_requests: tuple[str, ...] = (),
        output_storage: OutputStorage | None = None,
        max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
        schedule: str | None = None,
        version: str | None = None,
    ) -> None:
        if not is_coroutine_function(fn):
            raise TaskDefinitionError(
                f"@workflow needs an `async def` function taking the execution context, got {fn!r}"
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.secret_requests = secret_requests
        self.output_storage = output_storage
        self.max_recovery_attempts = _check_recovery_attempts(max_recovery_attempts, name or fn.__name__)
        #: ``@workflow(timeout=seconds)``: each execution fails with TaskTimeoutError past its deadline
        self.timeout = check_timeout(timeout, f"workflow {self.name!r}")
        #: ``@workflow(schedule=...)``: registered in the store by every worker that imports the workflow
        self.declared_schedule = None if schedule is None else _check_schedule(schedule, f"workflow {self.name!r}")
        self.target = f"{fn.__module__}:{fn.__qualname__}"
        #: ``@workflow(version=...)``: stored with each execution; only code with it runs them (versioning.py)
        self.version = check_version(version, f"workflow {self.name!r}")
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__

    def __call__(self, input: T | None = None) -> Awaitable[Any]:
        """``await other(input)`` inside a running workflow: run ``other`` as a child execution, one step of
        the calling workflow (see :mod:`taskloom.children`); its output is the value, its failure raises."""
        scope = current_scope.get()
        if scope is None:
            raise TypeError(
                f"workflow {self.name!r} was called outside a running workflow; awaiting it runs a child "
                f"execution only inside a workflow. Use {self.name}.run(input), await {self.name}.arun(input) "
                f"or {self.name}.start(input)"
            )
        from taskloom.children import ChildCall

        return ChildCall(scope.run, scope.next_id(), self, input)

    # -- sync entry points ------------------------------------------------------------------------
    def run(self, input: T | None = None, *, execution_id: str | None = None) -> WorkflowExecutionContext[T]:
        """Run a new execution with ``input`` until it finishes or pauses, and return its context.

        With ``execution_id`` (your own id: the idempotency key of this work) the execution is created
        under that id if none has it, else continued (queued, interrupted, or running elsewhere: this
        call waits for it) or returned as it is (finished), its stored input kept: an id never starts
        twice, also when several callers race with one new id. Continuing a paused execution resumes
        it, as in Flux: its ``pause`` returns None (``resume(id, value)`` passes a value instead), but only
        when no ``input`` is given; a repeated start with its input returns the paused execution as it is.
        """
        _refuse_inside_loop(f"{self.name}.run()", f"await {self.name}.arun(...)")
        with _interruptible():
            if self.timeout is not None or _asyncio_loaded():
                import asyncio

                return asyncio.run(self.arun(input, execution_id=execution_id))
            # Nothing here imported asyncio, so the body cannot call it: driven without a loop until a step
            # needs one (loop_free), which a run of plain sync steps never does.
            try:
                return drive(self.arun(input, execution_id=execution_id))
            except LoopNeeded as needed:  # the body imported asyncio and called it after all: again on a loop
                import asyncio

                return asyncio.run(self.arun(input, execution_id=needed.execution_id))

    def resume(self, execution_id: str, input: Any = None) -> WorkflowExecutionContext[T]:
        """Resume a paused execution; the pending ``await pause(name)`` returns ``input``."""
        _refuse_inside_loop(f"{self.name}.resume()", f"await {self.name}.aresume(...)")
        import asyncio

        with _interruptible():
            return asyncio.run(self.aresume(execution_id, input))

    def create(
        self, input: T | None = None, *, status: str = ExecutionStatus.RUNNING, execution_id: str | None = None
    ) -> str:
        """Record a new execution without running it and return its id.

        ``run(execution_id=...)`` then drives it; the CLI uses this to follow an execution from its
        first event, workers to queue one (``status="queued"``). An ``execution_id`` of your own that
        already exists raises :class:`ExecutionStateError` and writes nothing.
        """
        store = default_store()
        execution_id = uuid4_hex() if execution_id is None else check_execution_id(execution_id)
        blob = serde.dumps(input, what=f"workflow {self.name!r} input")
        # A running execution gets a lease without an owner: no worker takes it before its creator drives it.
        grace = Settings.from_env().lease_seconds if status == ExecutionStatus.RUNNING else None
        store.create_execution(execution_id, self.name, blob, status, self.target, lease_seconds=grace)
        return execution_id

    def start(
        self,
        input: T | None = None,
        *,
        execution_id: str | None = None,
        delay: float | timedelta | None = None,
        queue: str | Queue | None = None,
        priority: int = 0,
    ) -> ExecutionHandle[T]:
        """Start an execution without waiting for it and return its :class:`ExecutionHandle` at once.

        Embedded (the default), this process runs it in the background under a lease, as a worker would:
        if the process dies, any worker or ``taskloom recover`` takes it over. With a server URL
        (``TASKLOOM_SERVER_URL``) or ``TASKLOOM_START=queue`` it is queued for workers instead.
        ``execution_id`` works as in :meth:`run` (an existing one is not started again: its handle comes
        back); ``delay`` (seconds or a timedelta) starts it no earlier than that from now.
        ``queue`` (a :class:`~taskloom.Queue` or its name) and ``priority`` (lower runs first) queue it for
        the workers serving that queue, whose claims keep its limits (:mod:`taskloom.queues`).
        """
        # Imported here, not at the top: handles (and the queues and runner it brings) serve start() and
        # handle(), never run(), which should not load them (tests/perf/test_import.py).
        from taskloom.handles import start_execution

        return start_execution(self, input, execution_id=execution_id, delay=delay, queue=queue, priority=priority)

    async def astart(
        self,
        input: T | None = None,
        *,
        execution_id: str | None = None,
        delay: float | timedelta | None = None,
        queue: str | Queue | None = None,
        priority: int = 0,
    ) -> ExecutionHandle[T]:
        """:meth:`start` for async code: ``handle = await wf.astart(input)``, then ``await handle``."""
        import asyncio

        from taskloom.handles import start_execution

        return await asyncio.to_thread(
            start_execution, self, input, execution_id=execution_id, delay=delay, queue=queue, priority=priority
        )

    def handle(self, execution_id: str) -> ExecutionHandle[T]:
        """The handle of an existing execution of this workflow (:class:`ExecutionNotFoundError` if none)."""
        from taskloom.handles import handle_for

        return handle_for(self, check_execution_id(execution_id))

    def schedule(
        self,
        cron: str,
        input: Any = None,
        name: str | None = None,
        timezone: str = "UTC",
        catchup: str = "latest",
    ) -> Schedule:
        """Start this workflow on ``cron`` (five fields, or six with seconds first) in ``timezone``, with
        ``input``, from whichever worker serving it sees the tick first, once per tick.

        The schedule is stored under ``name`` (default: the workflow's name): created, or changed with its
        last tick kept. Ticks missed while no worker ran are started per ``catchup``: ``"latest"`` (only
        the newest), ``"all"`` or ``"none"``. See :mod:`taskloom.schedules`.
        """
        from taskloom.schedules import upsert_schedule  # see _check_schedule

        return upsert_schedule(default_store(), self, cron, input=input, name=name, timezone=timezone, catchup=catchup)

    # -- async entry points -----------------------------------------------------------------------
    async def arun(
        self,
        input: T | None = None,
        *,
        execution_id: str | None = None,
        store: Store | None = None,
        lease_owner: str | None = None,
        lease_seconds: float | None = None,
        wait: bool = True,
        continue_paused: bool = True,
    ) -> WorkflowExecutionContext[T]:
        """``run`` for async code.

        A run holds the execution's lease while it drives it. ``lease_owner`` is for workers, which claimed
        the execution (and its lease) before calling. Continuing an execution that another live process is
        running does not run its steps twice: this call waits until that owner finishes (or dies, and then
        takes over) and returns the result; with ``wait=False`` it raises :class:`ExecutionStateError`
        naming the owner instead. A paused execution is continued (its pause returns None) unless
        ``continue_paused=False``, for callers that only recover executions (``taskloom recover``): then
        only a pause whose deadline has passed is taken, and times out.
        """
        store = store or default_store()
        lease = lease_seconds or Settings.from_env().lease_seconds
        # Only the Flux form, run(execution_id=ID) with no input, continues a pause: a caller repeating its
        # start (run(input, execution_id=ID), the idempotency key) must never approve a pause with None.
        continue_paused = continue_paused and input is None
        if execution_id is None:
            execution_id = uuid4_hex()
            blob = serde.dumps(input, what=f"workflow {self.name!r} input")
            owner = new_owner("run")
            store.create_execution(
                execution_id,
                self.name,
                blob,
                ExecutionStatus.RUNNING,
                self.target,
                lease_owner=owner,
                lease_seconds=lease,
                version=self.version or NO_VERSION,
            )
            # Its log is its start alone, which the run has no use for: not read back (nor datetime imported).
            return await self._drive(store, execution_id, input, owner, lease, before=None, events=())
        found = store.get_execution(check_execution_id(execution_id))
        if found is None and lease_owner is None:
            # A new id of the caller's: the insert decides, so of callers racing with it one creates it
            # and drives it here; the others continue (wait for) the execution it created.
            owner = new_owner("run")
            found = create_or_find(
                store,
                execution_id,
                self.name,
                self.target,
                input,
                ExecutionStatus.RUNNING,
                lease_owner=owner,
                lease_seconds=lease,
                version=self.version or NO_VERSION,
            )
            if found is None:
                return await self._drive(store, execution_id, input, owner, lease, before=None, events=())
        # Only code of the execution's version runs it (an execution no code ran yet is pinned to this one).
        record = claim_version(store, self._checked(store, execution_id, found), self.version)
        input = self._decode_input(record)
        if lease_owner is not None:  # a worker's claim: the lease is already held, its crashes counted
            return await self._drive(
                store, execution_id, input, lease_owner, lease, before=record, crashes=record.crashes, claimed=True
            )
        owner = new_owner("run")
        if continue_paused and record.status == ExecutionStatus.PAUSED:
            # Running a paused execution continues it (Flux): a resume with None, through the same lazy path
            # as resume(). Only a pause found here, when the caller asked: one that an execution reaches
            # while this call waits for its owner is that owner's result, returned as it is.
            continued = await self._continue_paused(store, record, input, owner, lease)
            if isinstance(continued, WorkflowExecutionContext):
                return continued
            record = continued  # its deadline passed (taken below), or another resume or a cancel came first
        while True:
            if not_yet_due(record, time.time()):  # started with a delay: not before its time
                if not wait:
                    raise ExecutionStateError(
                        f"execution {execution_id} of workflow {self.name!r} was started with a delay; it "
                        f"starts at {_clock(record.wake_at)}"
                    )
                record = await self._await_due(store, record)
                continue
            acquired = self._acquire(store, record, owner, lease)
            if acquired is None:  # finished, or paused until a resume: nothing to drive
                return self._context(store, store.get_execution(execution_id) or record)
            if acquired.taken:
                crashes = acquired.record.crashes + holder_died(acquired.record, owner)
                return await self._drive(
                    store, execution_id, input, owner, lease, before=acquired.record, crashes=crashes
                )
            holder = acquired.record
            if not wait:
                raise ExecutionStateError(
                    f"execution {execution_id} of workflow {self.name!r} is being run by {holder.lease_owner} "
                    f"(lease until {_clock(holder.lease_expires_at)}); wait for it, or cancel it first"
                )
            record = await self._await_owner(store, holder)

    @staticmethod
    def _acquire(store: Store, record: ExecutionRecord, owner: str, lease: float) -> Acquired | None:
        """Take ``record`` for this run if it is there to be driven: running without a live owner,
        queued, or paused with a deadline that has passed (the pause then fails with TaskTimeoutError).
        None when it is finished or waits for a resume."""
        statuses: tuple[str, ...] = (ExecutionStatus.RUNNING, ExecutionStatus.QUEUED)
        if record.status == ExecutionStatus.PAUSED:
            deadline = pause_deadline(store.load_events(record.id))
            if deadline is None or time.time() < deadline:
                return None
            statuses += (ExecutionStatus.PAUSED,)
        elif record.status in ExecutionStatus.FINISHED:
            return None
        acquired = store.acquire_execution(record.id, owner, lease, from_statuses=statuses)
        if not acquired.taken and acquired.record.status != ExecutionStatus.RUNNING:
            # it changed status meanwhile (finished, paused, cancelled): look again from the top
            return Workflow._acquire(store, acquired.record, owner, lease) if acquired.record != record else None
        return acquired

    async def _await_due(self, store: Store, record: ExecutionRecord) -> ExecutionRecord:
        """Wait until a delayed execution may start; the record as it is then."""
        await on_loop()
        import asyncio

        await asyncio.sleep(max(0.0, (record.wake_at or 0.0) - time.time()))
        return self._load(store, record.id)

    @staticmethod
    async def _await_owner(store: Store, holder: ExecutionRecord) -> ExecutionRecord:
        """Wait while another live owner runs the execution; the record once it stopped doing so."""
        await on_loop()
        import asyncio

        while True:
            await asyncio.sleep(OWNER_POLL_SECONDS)
            record = store.get_execution(holder.id)
            if record is None:
                raise ExecutionNotFoundError(f"execution {holder.id} disappeared from the store {store.url}")
            if (
                record.status != ExecutionStatus.RUNNING
                or record.lease_owner != holder.lease_owner
                or record.lease_expires_at is None
                or record.lease_expires_at < time.time()
            ):
                return record

    async def aresume(
        self, execution_id: str, input: Any = None, *, store: Store | None = None
    ) -> WorkflowExecutionContext[T]:
        """``resume`` for async code.

        The resume is recorded only once the replay reaches the pause it answers: a resume whose replay
        fails (the code changed) leaves the execution paused, its events and the resume unconsumed.
        """
        store = store or default_store()
        record = claim_version(store, self._load(store, execution_id), self.version)
        stored_input = self._decode_input(record)
        if record.status != ExecutionStatus.PAUSED:
            raise not_paused(record)
        events = store.load_events(execution_id)
        pause_name = paused_at(record, events).name
        topic = waiting_topic(pause_name)
        if topic is not None:
            raise not_resumable(record, topic)
        child = waiting_child(pause_name)
        if child is not None:
            raise child_not_resumable(record, child)
        blob = serde.dumps(input, what=f"resume input of workflow {record.workflow!r}")
        lease = Settings.from_env().lease_seconds
        resumed = await self._resume(store, record, stored_input, blob, new_owner("run"), lease, events)
        if not isinstance(resumed, WorkflowExecutionContext):
            raise not_paused(resumed, raced=True)
        return resumed

    async def _continue_paused(
        self, store: Store, record: ExecutionRecord, input: Any, owner: str, lease: float
    ) -> WorkflowExecutionContext[T] | ExecutionRecord:
        """``run(execution_id=...)`` of a paused execution: resume it with None, unless its pause's deadline
        has passed (then the pause times out, as a worker would have it). The record to go on with when
        this did not drive it."""
        events = store.load_events(record.id)
        deadline = pause_deadline(events)
        if deadline is not None and time.time() >= deadline:
            return record
        blob = serde.dumps(None, what=f"resume input of workflow {record.workflow!r}")
        return await self._resume(store, record, input, blob, owner, lease, events)

    async def _resume(
        self,
        store: Store,
        record: ExecutionRecord,
        input: Any,
        blob: bytes,
        owner: str,
        lease: float,
        events: Sequence[Event],
    ) -> WorkflowExecutionContext[T] | ExecutionRecord:
        """Take the paused execution under ``owner``'s lease and drive it, its pause answered with ``blob``.

        Nothing is written here: the resume's events go with the run's first write (ExecutionRun.pending),
        so a run that dies before it (or whose replay fails) leaves the execution paused as it was once its
        lease runs out, and the next run pauses there again. Returns the record as it is now when another
        resume or a cancel took the execution first.
        """
        acquired = store.acquire_execution(record.id, owner, lease, from_statuses=(ExecutionStatus.PAUSED,))
        if not acquired.taken:
            return acquired.record
        if acquired.record != record:
            # Resumed, run and paused again between the reads and the acquire: the log read is stale.
            events = store.load_events(record.id)
        # Otherwise the log read is still the whole log: nothing is appended to a paused execution but by a
        # resume or a cancel, and either would have changed its row.
        pause = paused_at(acquired.record, events)
        resume = (str(pause.step_id), blob)
        return await self._drive(
            store, record.id, input, owner, lease, before=acquired.record, resume=resume, events=events
        )

    # -- the driver --------------------------------------------------------------------------------
    async def _drive(
        self,
        store: Store,
        execution_id: str,
        input: Any,
        owner: str,
        lease: float,
        *,
        before: ExecutionRecord | None,
        crashes: int = 0,
        resume: tuple[str, bytes] | None = None,
        claimed: bool = False,
        events: Sequence[Event] | None = None,
    ) -> WorkflowExecutionContext[T]:
        """Drive the body under ``owner``'s lease until it finishes, pauses or stops.

        ``before`` is the execution as it was before this run took it: what a replay mismatch restores;
        ``crashes`` how often its owners died running it, counting the one this run takes over from.
        The lease is released at the end: put back in the queue when the run was interrupted (Ctrl-C, a
        task's ``sys.exit``, counted as a crash), free to take over otherwise; except that a worker's run
        (``claimed``) that meets a replay mismatch keeps it, for the worker to set the execution aside.
        """
        ctx: WorkflowExecutionContext[T] = WorkflowExecutionContext(self.name, execution_id, input, store)
        if events is None:
            events = store.load_events(execution_id)
        parent = parent_of(events)  # a child execution tells its parent when it ends
        # the process's threads, reused, through a lane of the run's own, made by its first body that needs one
        run = ExecutionRun(store, execution_id, events, None, lane=(STEP_THREADS, f"taskloom-{self.name}"))
        run.main_task = current_task()  # NO_LOOP: driven without an event loop (loop_free)
        run.lease_owner = owner
        run.resume = resume
        if before is not None:
            run.queue = before.queue
        kept = keeper.keep(store, execution_id, owner, lease, run.cancelled)
        token = current_scope.set(run.root)
        inside = mark_inside_task()  # for every step of the run, once (replay passes mark_running=False)
        requeue = crashed = False
        release = True
        masked = contextlib.ExitStack()  # the workflow's own secrets are masked in all it writes
        if self.secret_requests:
            masked.enter_context(masking.secret_scope())
        watch = tracing.execution(execution_id, self.name)  # its logs' origin, and its span
        try:
            if crashes > self.max_recovery_attempts:
                return self._give_up(run, ctx, crashes)
            if self.timeout is not None:
                run.deadline = self._deadline(store, execution_id, self.timeout)
                run.check_cancelled()  # a run that starts past the deadline fails at once, running nothing
            if self.secret_requests:
                from taskloom.secret_store import default_secret_store

                ctx.secrets = default_secret_store().resolve(self.secret_requests, owner=f"workflow {self.name!r}")
                masking.register_secrets(ctx.secrets.values())
            output = await self._body(run, ctx)
            if run.nondeterminism is not None:
                raise run.nondeterminism
            run.check_cancelled()  # past the deadline, also when the body swallowed what told it so
            blob = self._encode_output(execution_id, output)
            event = NewEvent(EventType.EXECUTION_COMPLETED, None, self.name, blob)
            if self._settle(run, ctx, event, ExecutionStatus.COMPLETED, blob):
                ctx.output = masking.mask_value(output)
            return ctx
        except WorkflowCancelled:
            ctx.status = ExecutionStatus.CANCELLED
            return ctx
        except LeaseLostError:
            # Another owner took the execution over; it is running there now.
            ctx.status = ExecutionStatus.RUNNING
            return ctx
        except StoreInterrupted as interrupted:
            # The store failed under a bookkeeping write: no verdict; a re-run, worker or recover continues.
            raise interrupted.error from interrupted.error.__cause__
        except WorkflowPaused as paused:
            data = {} if paused.deadline is None else {"deadline": paused.deadline}
            output = run.pause_outputs.get(paused.step_id)
            event = NewEvent(EventType.EXECUTION_PAUSED, paused.step_id, paused.name, output, data)
            # A receive's pause is made due at once if its message came while it was pausing (messages.py).
            topic = paused.topic if isinstance(paused, ReceiveWaiting) else None
            self._settle(run, ctx, event, ExecutionStatus.PAUSED, wake_at=paused.deadline, wake_on_message=topic)
            return ctx
        except Exception as error:
            if run.main_task is NO_LOOP and lost_loop(error):
                # The body called asyncio, driven without a loop: no verdict; Workflow.run drives it again on one.
                raise LoopNeeded(execution_id) from error
            if run.nondeterminism is not None:
                # A code change, not a failure of the execution: leave it as it was so that running it
                # again with the right code continues it.
                self._restore(run, before)
                release = not claimed  # a worker sets the execution aside under its lease (Worker._execute)
                raise run.nondeterminism from run.nondeterminism.__cause__
            failure: BaseException = error
            if run.deadline is not None and run.deadline.passed(time.time()):
                # whatever the body made of it, the execution timed out
                failure = run.deadline.error()
                event, error_blob = run.deadline.failure(failure)
            else:
                error_blob = serde.dumps_error(failure, what=f"workflow {self.name!r}")
                event = NewEvent(EventType.EXECUTION_FAILED, None, self.name, error_blob)
            if self._settle(run, ctx, event, ExecutionStatus.FAILED, error_blob):
                ctx.output = masking.mask_value(failure)
            return ctx
        except BaseException:
            # Ctrl-C, a cancelled event loop, or a task that ended its process: back to the queue for the
            # next owner (a worker, recover, a re-run); a task's sys.exit counts as a crash of this run.
            requeue, crashed = True, run.exited is not None
            raise
        finally:
            watch.end(ctx.status, ctx.output)
            masked.close()
            unmark_inside_task(inside)
            current_scope.reset(token)
            keeper.drop(kept)
            run.watchdog.stop()
            run.main_task = None  # no cycle keeps this task alive past its run (see replay._alone_on_loop)
            run.close_lane()
            if release:
                _release(store, execution_id, owner, requeue=requeue, crashed=crashed)
            if ctx.status in _CLOSES_CHILDREN and has_child_steps(run.steps.values()):
                close_children(store, execution_id)  # children a failed sibling or the deadline left behind
            if parent is not None and ctx.status in ExecutionStatus.FINISHED:
                wake_parent(store, parent, execution_id, events)

    async def _body(self, run: ExecutionRun, ctx: WorkflowExecutionContext[T]) -> Any:
        """The workflow body; with a deadline, cancelled when it passes, as a task's attempt is at its
        timeout: the step in flight records no outcome (a sync body's thread is asked to stop) and the
        body's ``finally`` blocks run, but no new step starts (see :mod:`taskloom.deadlines`)."""
        deadline = run.deadline
        if deadline is None:
            return await self.fn(ctx)
        await run.on_loop()
        import asyncio

        loop = asyncio.get_running_loop()
        limit = asyncio.timeout_at(loop.time() + deadline.at - time.time())
        try:
            async with limit:
                return await self.fn(ctx)
        except TimeoutError:
            if limit.expired():
                raise deadline.error() from None
            raise

    def _deadline(self, store: Store, execution_id: str, timeout: float) -> Deadline:
        """The execution's deadline: fixed in the store by its first run (or a worker's sweep), then kept."""
        try:
            at = store.fix_deadline(execution_id, timeout)
        except StoreError as error:
            raise StoreInterrupted(error) from error
        if at is None:
            raise ExecutionNotFoundError(f"execution {execution_id} disappeared from the store {store.url}")
        return Deadline(execution_id, self.name, timeout, at)

    def _settle(
        self,
        run: ExecutionRun,
        ctx: WorkflowExecutionContext[Any],
        event: NewEvent,
        status: str,
        output: bytes | None = None,
        wake_at: float | None = None,
        wake_on_message: str | None = None,
    ) -> bool:
        """Record the execution's end (or pause) unless it was cancelled meanwhile, or its lease passed to
        another owner; sets ``ctx.status``."""
        try:
            extra = {} if wake_on_message is None else {"wake_on_message": wake_on_message}
            run.append(event, status=status, output=output, wake_at=wake_at, **extra)
        except LeaseLostError:
            ctx.status = ExecutionStatus.RUNNING  # running under the owner that took it over
            return False
        except WorkflowCancelled:
            ctx.status = ExecutionStatus.CANCELLED
            return False
        ctx.status = status
        return True

    def _give_up(
        self, run: ExecutionRun, ctx: WorkflowExecutionContext[T], crashes: int
    ) -> WorkflowExecutionContext[T]:
        """Fail an execution that keeps killing the processes that run it, so it cannot take every worker
        down for ever."""
        error = ExecutionCrashedError(
            f"execution {run.execution_id} of workflow {self.name!r} killed the process running it {crashes} "
            f"times (a step called os._exit or sys.exit, or crashed its process); max_recovery_attempts is "
            f"{self.max_recovery_attempts}, so it was failed instead of being run again"
        )
        error_blob = serde.dumps_error(error, what=f"workflow {self.name!r}")
        event = NewEvent(EventType.EXECUTION_FAILED, None, self.name, error_blob)
        if self._settle(run, ctx, event, ExecutionStatus.FAILED, error_blob):
            ctx.output = error
        return ctx

    @staticmethod
    def _restore(run: ExecutionRun, before: ExecutionRecord | None) -> None:
        """After a replay mismatch, give the execution back the status it had before this run took it."""
        if before is None or before.status == ExecutionStatus.RUNNING or run.writes:
            return
        paused = before.status == ExecutionStatus.PAUSED
        wake_at = pause_deadline(run.store.load_events(run.execution_id)) if paused else None
        try:
            run.store.append_events(
                run.execution_id,
                [],
                status=before.status,
                output=before.output,
                wake_at=wake_at,
                expected_status=ExecutionStatus.RUNNING,
                lease_owner=run.lease_owner,
            )
        except (StoreError, ExecutionStateError, LeaseLostError) as error:
            log.warning("execution %s: could not restore its status %s: %s", run.execution_id, before.status, error)

    def _encode_output(self, execution_id: str, output: Any) -> bytes:
        if self.output_storage is not None:
            output = _StoredOutput(self.output_storage.store(f"{execution_id}/output", output))
        return serde.dumps(output, what=f"workflow {self.name!r} output")

    def _decode_output(self, blob: bytes | None) -> Any:
        value = serde.loads(blob)
        if isinstance(value, _StoredOutput) and self.output_storage is not None:
            return self.output_storage.retrieve(value.reference)
        return value

    def _decode_input(self, record: ExecutionRecord) -> Any:
        try:
            return serde.loads(record.input)
        except Exception as cause:
            raise UndecodableValueError(
                f"execution {record.id}: its input cannot be decoded by this code ({type(cause).__name__}: "
                f"{cause}); a class it needs was renamed, moved or removed. It was left as it was."
            ) from cause

    def _load(self, store: Store, execution_id: str) -> ExecutionRecord:
        return self._checked(store, execution_id, store.get_execution(execution_id))

    def _checked(self, store: Store, execution_id: str, record: ExecutionRecord | None) -> ExecutionRecord:
        if record is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {store.url}")
        if record.workflow != self.name:
            raise WorkflowError(f"execution {execution_id} belongs to workflow {record.workflow!r}, not {self.name!r}")
        return record

    def _context(self, store: Store, record: ExecutionRecord) -> WorkflowExecutionContext[T]:
        return WorkflowExecutionContext(
            self.name,
            record.id,
            serde.loads(record.input),
            store,
            status=record.status,
            output=self._decode_output(record.output),
        )

    def status(self, execution_id: str) -> WorkflowExecutionContext[T]:
        """The execution as the store has it now, without running anything."""
        store = default_store()
        return self._context(store, self._load(store, execution_id))

    def cancel(self, execution_id: str) -> WorkflowExecutionContext[T]:
        """Cancel an unfinished execution: a paused or queued one at once, a running one at its next step.

        A finished execution raises :class:`ExecutionStateError`.
        """
        store = default_store()
        self._load(store, execution_id)
        record_cancel(store, execution_id)
        return self.status(execution_id)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}>"


class _StoredOutput:
    """Marks a workflow output kept in its output storage; the store holds only the reference."""

    __slots__ = ("reference",)

    def __init__(self, reference: Any) -> None:
        self.reference = reference

    def __reduce__(self) -> tuple[Any, ...]:
        return (_StoredOutput, (self.reference,))


def _check_schedule(schedule: str, owner: str) -> Cron:
    """``@workflow(schedule=...)`` checked where it is written. Schedules (cron parsing, time zones) load
    with the first workflow that has one, not with ``import taskloom``: most workflows never need them."""
    from taskloom.schedules import check_schedule

    return check_schedule(schedule, owner=owner)


def _check_recovery_attempts(value: Any, workflow: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TaskDefinitionError(
            f"workflow {workflow!r}: option 'max_recovery_attempts' must be a whole number >= 0, got {value!r}"
        )
    return value


def _release(store: Store, execution_id: str, owner: str, *, requeue: bool, crashed: bool) -> None:
    """Give up the lease; if the store is down, the lease simply runs out and the execution is taken over."""
    try:
        store.release_execution(execution_id, owner, requeue=requeue, crashed=crashed)
    except Exception as error:
        log.warning(
            "execution %s: could not release its lease (%s); it is taken over when it expires", execution_id, error
        )


def _clock(at: float | None) -> str:
    if at is None:
        return "unknown"
    from datetime import UTC, datetime  # only messages need it

    return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M:%S UTC")


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C interrupt a sync ``run``/``resume`` wherever it is, a sync step on the loop's thread
    included: asyncio's own SIGINT handler would only cancel the workflow at its next ``await``, so a
    workflow of quick sync steps would run on to its end. The interrupted run puts its execution back in
    the queue. Only the main thread receives signals; elsewhere, and under a handler of the program's
    own, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _asyncio_loaded() -> bool:
    """Whether anything in this process imported asyncio: its code may call asyncio from a workflow body,
    so ``run`` gives the body a loop from the start (else it drives it without one: loop_free)."""
    return "asyncio" in sys.modules


def _refuse_inside_loop(call: str, instead: str) -> None:
    if not loop_running():
        return
    raise WorkflowError(f"{call} was called inside a running event loop; use `{instead}` in async code")


class _WorkflowDecorator:
    """``@workflow`` and ``@workflow.with_options(name=..., secret_requests=..., output_storage=...,
    max_recovery_attempts=..., schedule=..., version=..., timeout=...)``."""

    def __call__(self, fn: WorkflowFn | None = None, /, **options: Any) -> Any:
        if fn is None:
            return self.with_options(**options)
        return Workflow(fn)

    def with_options(
        self,
        *,
        name: str | None = None,
        timeout: float | None = None,
        secret_requests: list[str] | tuple[str, ...] = (),
        output_storage: OutputStorage | None = None,
        max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
        schedule: str | None = None,
        version: str | None = None,
    ) -> Callable[[WorkflowFn], Workflow[Any]]:
        # Reuse the task option validation so the messages read the same.
        checked = TaskOptions.build(
            f"workflow {name!r}" if name else "workflow",
            name=name,
            secret_requests=secret_requests,
            output_storage=output_storage,
        )
        check_timeout(timeout, f"workflow {name!r}" if name else "workflow")
        _check_recovery_attempts(max_recovery_attempts, name or "workflow")
        if schedule is not None:
            _check_schedule(schedule, f"workflow {name!r}" if name else "workflow")
        check_version(version, f"workflow {name!r}" if name else "workflow")

        def decorate(fn: WorkflowFn) -> Workflow[Any]:
            return Workflow(
                fn,
                name=checked.name,
                timeout=timeout,
                secret_requests=checked.secret_requests,
                output_storage=checked.output_storage,
                max_recovery_attempts=max_recovery_attempts,
                schedule=schedule,
                version=version,
            )

        return decorate


workflow = _WorkflowDecorator()
