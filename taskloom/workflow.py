"""@workflow: run, continue and resume durable executions.

``run`` creates an execution and drives the workflow body on an event loop. Every step's start and
outcome reach the store before the body moves on, so running the same execution id again, in this
process or another after a crash, replays recorded steps and continues where it stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from taskloom import serde
from taskloom.context import WorkflowExecutionContext, current_scope
from taskloom.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    LeaseLostError,
    TaskDefinitionError,
    WorkflowCancelled,
    WorkflowError,
    WorkflowPaused,
)
from taskloom.events import EventType, NewEvent
from taskloom.executions import record_cancel, record_resume
from taskloom.options import OutputStorage, TaskOptions
from taskloom.replay import ExecutionRun
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store

T = TypeVar("T")
WorkflowFn = Callable[[WorkflowExecutionContext[Any]], Awaitable[Any]]

#: threads for sync task bodies of one execution (I/O-bound tasks are the common case)
STEP_THREADS = 32


class Workflow(Generic[T]):
    """A durable workflow. ``run``/``resume`` in sync code, ``arun``/``aresume`` in async code."""

    def __init__(
        self,
        fn: WorkflowFn,
        *,
        name: str | None = None,
        secret_requests: tuple[str, ...] = (),
        output_storage: OutputStorage | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TaskDefinitionError(
                f"@workflow needs an `async def` function taking the execution context, got {fn!r}"
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.secret_requests = secret_requests
        self.output_storage = output_storage
        self.target = f"{fn.__module__}:{fn.__qualname__}"
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__

    # -- sync entry points ------------------------------------------------------------------------
    def run(self, input: T | None = None, *, execution_id: str | None = None) -> WorkflowExecutionContext[T]:
        """Run a new execution with ``input`` (or continue ``execution_id``) until it finishes or pauses."""
        _refuse_inside_loop(f"{self.name}.run()", f"await {self.name}.arun(...)")
        return asyncio.run(self.arun(input, execution_id=execution_id))

    def resume(self, execution_id: str, input: Any = None) -> WorkflowExecutionContext[T]:
        """Resume a paused execution; the pending ``await pause(name)`` returns ``input``."""
        _refuse_inside_loop(f"{self.name}.resume()", f"await {self.name}.aresume(...)")
        return asyncio.run(self.aresume(execution_id, input))

    def create(self, input: T | None = None, *, status: str = ExecutionStatus.RUNNING) -> str:
        """Record a new execution without running it and return its id.

        ``run(execution_id=...)`` then drives it; the CLI uses this to follow an execution from its
        first event, workers to queue one (``status="queued"``).
        """
        store = default_store()
        execution_id = uuid.uuid4().hex
        blob = serde.dumps(input, what=f"workflow {self.name!r} input")
        store.create_execution(execution_id, self.name, blob, status, self.target)
        return execution_id

    # -- async entry points -----------------------------------------------------------------------
    async def arun(
        self,
        input: T | None = None,
        *,
        execution_id: str | None = None,
        store: Store | None = None,
        lease_owner: str | None = None,
    ) -> WorkflowExecutionContext[T]:
        """``run`` for async code. ``lease_owner`` is for workers: their writes are fenced by their lease."""
        store = store or default_store()
        if execution_id is None:
            execution_id = uuid.uuid4().hex
            blob = serde.dumps(input, what=f"workflow {self.name!r} input")
            store.create_execution(execution_id, self.name, blob, ExecutionStatus.RUNNING, self.target)
            record = None
        else:
            record = self._load(store, execution_id)
            input = serde.loads(record.input)
            if lease_owner is None and not self._take_over(store, record):
                return self._context(store, store.get_execution(execution_id) or record)
        return await self._drive(store, execution_id, input, lease_owner)

    @staticmethod
    def _take_over(store: Store, record: ExecutionRecord) -> bool:
        """Whether ``run(execution_id=...)`` should drive ``record``; marks it running if so.

        Finished executions are returned as they are; a paused one only once its pause deadline has
        passed (the pause then fails with TaskTimeoutError); a queued one is taken from the queue.
        """
        if record.status == ExecutionStatus.RUNNING:
            return True
        if record.status == ExecutionStatus.PAUSED:
            pause = next(
                (e for e in reversed(store.load_events(record.id)) if e.type is EventType.EXECUTION_PAUSED), None
            )
            deadline = pause.data.get("deadline") if pause is not None else None
            if deadline is None or time.time() < float(deadline):
                return False
        elif record.status != ExecutionStatus.QUEUED:
            return False
        try:
            store.append_events(record.id, [], status=ExecutionStatus.RUNNING, expected_status=record.status)
        except ExecutionStateError:
            return False  # someone else resumed, claimed or cancelled it meanwhile
        return True

    @staticmethod
    def _settle(
        store: Store,
        ctx: WorkflowExecutionContext[Any],
        event: NewEvent,
        status: str,
        output: bytes | None = None,
        wake_at: float | None = None,
        lease_owner: str | None = None,
    ) -> bool:
        """Record the execution's end (or pause) unless it was cancelled meanwhile, or (for a worker) its
        lease passed to another worker; sets ``ctx.status``."""
        try:
            store.append_events(
                ctx.execution_id,
                [event],
                status=status,
                output=output,
                wake_at=wake_at,
                expected_status=ExecutionStatus.RUNNING,
                lease_owner=lease_owner,
            )
        except LeaseLostError:
            ctx.status = ExecutionStatus.RUNNING  # running on the worker that took it over
            return False
        except ExecutionStateError:
            current = store.get_execution(ctx.execution_id)
            ctx.status = current.status if current is not None else ExecutionStatus.CANCELLED
            return False
        ctx.status = status
        return True

    async def aresume(
        self, execution_id: str, input: Any = None, *, store: Store | None = None
    ) -> WorkflowExecutionContext[T]:
        store = store or default_store()
        self._load(store, execution_id)
        record = record_resume(store, execution_id, input)
        return await self._drive(store, execution_id, serde.loads(record.input))

    # -- the driver --------------------------------------------------------------------------------
    async def _drive(
        self, store: Store, execution_id: str, input: Any, lease_owner: str | None = None
    ) -> WorkflowExecutionContext[T]:
        ctx: WorkflowExecutionContext[T] = WorkflowExecutionContext(self.name, execution_id, input, store)
        executor = ThreadPoolExecutor(STEP_THREADS, thread_name_prefix=f"taskloom-{self.name}")
        run = ExecutionRun(store, execution_id, store.load_events(execution_id), executor)
        run.main_task = asyncio.current_task()
        run.lease_owner = lease_owner
        token = current_scope.set(run.root)
        try:
            if self.secret_requests:
                from taskloom.secret_store import default_secret_store

                ctx.secrets = default_secret_store().resolve(self.secret_requests, owner=f"workflow {self.name!r}")
            output = await self.fn(ctx)
            if run.nondeterminism is not None:
                raise run.nondeterminism
            blob = self._encode_output(execution_id, output)
        except WorkflowCancelled:
            ctx.status = ExecutionStatus.CANCELLED
            return ctx
        except LeaseLostError:
            # Another worker took the execution over; it is running there now.
            ctx.status = ExecutionStatus.RUNNING
            return ctx
        except WorkflowPaused as paused:
            data = {} if paused.deadline is None else {"deadline": paused.deadline}
            event = NewEvent(EventType.EXECUTION_PAUSED, paused.step_id, paused.name, data=data)
            self._settle(store, ctx, event, ExecutionStatus.PAUSED, wake_at=paused.deadline, lease_owner=lease_owner)
            return ctx
        except Exception as error:
            if run.nondeterminism is not None:
                # A code change, not a failure of the execution: leave it as it was so that running it
                # again with the right code continues it.
                raise run.nondeterminism from None
            error_blob = serde.dumps_error(error, what=f"workflow {self.name!r}")
            event = NewEvent(EventType.EXECUTION_FAILED, None, self.name, error_blob)
            if self._settle(store, ctx, event, ExecutionStatus.FAILED, error_blob, lease_owner=lease_owner):
                ctx.output = error
            return ctx
        finally:
            current_scope.reset(token)
            run.watchdog.stop()
            executor.shutdown(wait=False)
        event = NewEvent(EventType.EXECUTION_COMPLETED, None, self.name, blob)
        if self._settle(store, ctx, event, ExecutionStatus.COMPLETED, blob, lease_owner=lease_owner):
            ctx.output = output
        return ctx

    def _encode_output(self, execution_id: str, output: Any) -> bytes:
        if self.output_storage is not None:
            output = _StoredOutput(self.output_storage.store(f"{execution_id}/output", output))
        return serde.dumps(output, what=f"workflow {self.name!r} output")

    def _decode_output(self, blob: bytes | None) -> Any:
        value = serde.loads(blob)
        if isinstance(value, _StoredOutput) and self.output_storage is not None:
            return self.output_storage.retrieve(value.reference)
        return value

    def _load(self, store: Store, execution_id: str) -> ExecutionRecord:
        record = store.get_execution(execution_id)
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


def _refuse_inside_loop(call: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise WorkflowError(f"{call} was called inside a running event loop; use `{instead}` in async code")


class _WorkflowDecorator:
    """``@workflow`` and ``@workflow.with_options(name=..., secret_requests=..., output_storage=...)``."""

    def __call__(self, fn: WorkflowFn | None = None, /, **options: Any) -> Any:
        if fn is None:
            return self.with_options(**options)
        return Workflow(fn)

    def with_options(
        self,
        *,
        name: str | None = None,
        secret_requests: list[str] | tuple[str, ...] = (),
        output_storage: OutputStorage | None = None,
    ) -> Callable[[WorkflowFn], Workflow[Any]]:
        # Reuse the task option validation so the messages read the same.
        checked = TaskOptions.build(
            f"workflow {name!r}" if name else "workflow",
            name=name,
            secret_requests=secret_requests,
            output_storage=output_storage,
        )

        def decorate(fn: WorkflowFn) -> Workflow[Any]:
            return Workflow(
                fn,
                name=checked.name,
                secret_requests=checked.secret_requests,
                output_storage=checked.output_storage,
            )

        return decorate


workflow = _WorkflowDecorator()
