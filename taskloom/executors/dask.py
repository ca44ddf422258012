"""The Dask executor: each attempt of a step body or instance runs as one Dask task on a cluster.

The driver (this process) keeps the policy and the store: it pickles the task (by reference, so its module
must be importable on the Dask workers, as with any Dask function), the arguments and the secrets it
resolved, submits :func:`run_attempt` through ``Client.get_executor(pure=False, retries=0)`` (a
``concurrent.futures.Executor``) and awaits it. The worker sends back the outcome pickled by taskloom's
serde (a value, or the exception with its cause chain and traceback), so what cannot be stored fails
there with a SerializationError naming the task, as it would locally.

**At most once per attempt.** Dask re-runs a task whose worker died (up to the scheduler's
``distributed.scheduler.allowed-failures``, 3 by default) and, with ``retries``, one that raised. taskloom
counts attempts itself, so ``retries=0`` on every submit, and each attempt marks itself started on the
scheduler (a ``distributed.Event`` named after the attempt: two round trips) before its body runs. A re-run
that finds the mark does not run the body but fails, saying its worker was lost; so does an attempt that
Dask gives up on (``KilledWorker``). Either way the policy sees one failed attempt (a TaskError) and
retries it per the task's options, as a new Dask task; what completed is never run again. The mark is
checked whatever the scheduler's settings: with ``allowed-failures: 0`` a test of ours still saw Dask
start a lost task again on another worker (and it also fails the tasks merely queued on the lost worker),
so we rely on the mark, not on the setting, and recommend Dask's default.

**TaskControl across.** In the worker the task gets a TaskControl whose calls travel back through
``Worker.log_event`` on a topic of this client (``Client.subscribe_topic``): one thread here replays them, in
order, on the step's or instance's control, in the attempt's context (so its secrets are masked and its
log records say whose they are). ``should_stop`` in the worker reads a ``distributed.Event`` that this side
sets once its control is asked to stop (a timeout, a cancel, ``instance.stop()``); the worker asks the
scheduler at most every :data:`STOP_POLL_SECONDS`. The worker's last message closes the stream, and the
driver waits for it (up to :data:`DRAIN_SECONDS`) before it records the outcome, so no progress is written
after it.

**What a timeout cannot stop.** Dask cannot interrupt a running task. An attempt that times out (or is
cancelled) is released on the cluster and told to stop, and whatever it still returns or reports is
dropped; its body keeps its worker thread until it returns, as a timed-out body keeps its thread locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import pickle
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskloom import masking, serde
from taskloom.errors import BackendError, SerializationError, TaskError
from taskloom.executors import RemoteAttempts
from taskloom.logs import Origin, current_origin
from taskloom.runtime.control import LogRecord, TaskControl, replay_call

try:
    import distributed
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise BackendError(
        f"the Dask executor needs the 'dask' extra: pip install 'taskloom[dask]' ({type(missing).__name__}: {missing})"
    ) from None

if TYPE_CHECKING:
    from taskloom.task import Task

#: how often a worker's ``tc.should_stop`` asks the scheduler (in between it answers what it last learnt)
STOP_POLL_SECONDS = 0.1
#: how often the driver looks at a running attempt's control for a stop request to pass on
WATCH_SECONDS = 0.05
#: how long the driver waits, after an outcome, for the TaskControl calls the attempt made before it
DRAIN_SECONDS = 5.0
#: how long ``TASKLOOM_EXECUTOR=dask://...`` tries to reach its scheduler before saying it cannot (Dask's own
#: default, 30 s, is long to wait for a typo; a scheduler that is up answers in milliseconds)
CONNECT_SECONDS = 10.0
Message = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    """What a worker needs besides the task and its arguments; plain data, pickled with the call."""

    token: str
    topic: str
    #: the driver has a TaskControl for this attempt: the worker ends every run with an "end" message
    reports: bool
    instance_id: str | None
    secrets: tuple[str, ...]
    origin: Origin


def _ran_marker(token: str) -> str:
    return f"taskloom-ran-{token}"


def _stop_marker(token: str) -> str:
    return f"taskloom-stop-{token}"


# -- the driver's side ---------------------------------------------------------------------------------
class _Relay:
    """One thread that replays the workers' TaskControl calls and does the scheduler calls the driver
    makes for its attempts (stop, clean-up), so neither blocks the event loops of Dask or of a workflow."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="taskloom-dask-relay", daemon=True)
        self.thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                job()
            except BaseException:  # a scheduler gone, a handler that raised: the attempt decides its own outcome
                pass


class _Attempt:
    """One submitted attempt: its Dask future, and the control its worker's calls are replayed on."""

    def __init__(self, executor: DaskExecutor, task: Task[Any, Any], control: TaskControl | None) -> None:
        self.executor = executor
        self.task = task
        self.control = control
        self.token = uuid.uuid4().hex
        self.context = contextvars.copy_context()
        #: set by the relay once the worker's last message was replayed
        self.drained: ConcurrentFuture[None] = ConcurrentFuture()
        self.stop_sent = False
        self.future: ConcurrentFuture[Any] | None = None

    def replay(self, message: Message) -> None:
        """Apply one call made in the worker (runs on the relay thread, in the attempt's context)."""
        if message[0] == "end":
            self.drained.set_result(None)
        elif self.control is not None:
            if message[0] == "stop":
                self.stop_sent = True  # asked by the body itself: the worker knows already
            replay_call(self.control, message)

    def pass_on_stop(self) -> None:
        if self.stop_sent or self.control is None or not self.control.should_stop:
            return
        self.stop_sent = True
        event = distributed.Event(_stop_marker(self.token), client=self.executor.client)
        self.executor.relay.submit(event.set)

    def finish(self) -> None:
        """Forget the attempt here and on the scheduler; what its worker still reports is dropped.

        An attempt abandoned while it runs (a timeout, a cancel) is released on the cluster, and a body
        with a TaskControl told to stop: its stop mark stays set on the scheduler for it to see.
        """
        self.executor.attempts.pop(self.token, None)
        client = self.executor.client
        markers = [_ran_marker(self.token)]
        if self.future is not None and not self.future.done():
            self.future.cancel()
            if self.control is not None and not self.stop_sent:
                self.stop_sent = True
                self.executor.relay.submit(distributed.Event(_stop_marker(self.token), client=client).set)
        elif self.stop_sent:
            markers.append(_stop_marker(self.token))
        for name in markers:
            self.executor.relay.submit(distributed.Event(name, client=client).clear)


class DaskExecutor:
    """Runs attempts on the cluster of a ``distributed.Client`` (see the module docstring)."""

    name = "dask"

    def __init__(self, client: distributed.Client, *, owns_client: bool = False) -> None:
        if getattr(client, "asynchronous", False):
            raise BackendError(
                "use_dask(client): taskloom needs a synchronous distributed.Client (one made without "
                "asynchronous=True); it drives the client from its own threads"
            )
        self.client = client
        self.owns_client = owns_client
        self.pool = client.get_executor(pure=False, retries=0)
        self.topic = f"taskloom-control-{uuid.uuid4().hex}"  # one per executor: a client may serve several
        self.attempts: dict[str, _Attempt] = {}
        self.relay = _Relay()
        self.closed = False
        client.subscribe_topic(self.topic, self._on_event)

    @classmethod
    def for_client(cls, client: distributed.Client | None) -> DaskExecutor:
        if client is None:
            try:
                client = distributed.get_client()
            except ValueError:
                raise BackendError(
                    "use_dask(): no Dask client in this context; pass a distributed.Client or a scheduler address"
                ) from None
        if not isinstance(client, distributed.Client):
            raise BackendError(
                f"use_dask(client): expected a distributed.Client or a scheduler address, got {type(client).__name__}"
            )
        return cls(client)

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A worker's TaskControl call (on the client's event loop): handed to the relay thread."""
        token, blob = event[1]
        attempt = self.attempts.get(token)
        if attempt is not None:
            message = pickle.loads(blob)
            self.relay.submit(lambda: attempt.context.run(attempt.replay, message))

    def submit(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> _Attempt:
        attempt = _Attempt(self, task, control)
        try:
            job = pickle.dumps((task, args, kwargs), serde.PROTOCOL)
        except Exception as error:
            raise SerializationError(
                masking.mask_text(
                    f"task {task.name!r}: its arguments cannot be sent to a Dask worker ({type(error).__name__}: "
                    f"{error}); use values that pickle, and a task defined at module level"
                )
            ) from None
        spec = AttemptSpec(
            attempt.token,
            self.topic,
            control is not None,
            control.instance_id if control is not None else None,
            masking.active_secrets(),
            current_origin.get(),
        )
        self.attempts[attempt.token] = attempt
        attempt.future = self.pool.submit(run_attempt, job, spec, key=f"taskloom-{task.name}-{attempt.token}")
        return attempt

    async def run_attempt(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> Any:
        attempt = self.submit(task, args, kwargs, control)
        assert attempt.future is not None
        try:
            waiting = asyncio.wrap_future(attempt.future)
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=WATCH_SECONDS if control is not None else None)
                attempt.pass_on_stop()
            if waiting.cancelled():
                raise TaskError(f"task {task.name!r}: its attempt was cancelled on the Dask cluster")
            error = waiting.exception()
            if error is not None:
                raise TaskError(
                    f"task {task.name!r}: its attempt on Dask was lost ({type(error).__name__}: {error}); "
                    "a Dask worker died or left while running it"
                ) from error
            ok, blob = waiting.result()
            if control is not None:  # the worker's TaskControl calls come before its outcome
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.wrap_future(attempt.drained), DRAIN_SECONDS)
            value = serde.loads(blob)
        finally:
            attempt.finish()  # also when cancelled (a timeout, a failed sibling): released and told to stop
        if not ok:
            raise value
        return value

    def stand_in(self, task: Task[Any, Any]) -> RemoteAttempts:
        return RemoteAttempts(task, self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.relay.close()
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)
        if self.owns_client:
            self.client.close()


def connect_dask(address: str) -> DaskExecutor:
    """A DaskExecutor on a new client of the scheduler at ``address`` (``dask://HOST:PORT``,
    ``dask+tls://HOST:PORT``, or a Dask address such as ``tcp://HOST:PORT``); the executor closes it."""
    scheme, _, rest = address.partition("://")
    target = {"dask": f"tcp://{rest}", "dask+tls": f"tls://{rest}"}.get(scheme.lower(), address)
    try:
        client = distributed.Client(target, set_as_default=False, timeout=CONNECT_SECONDS)
    except OSError as error:  # refused, unresolvable, or no answer within CONNECT_SECONDS (TimeoutError)
        raise BackendError(
            f"TASKLOOM_EXECUTOR={address!r}: cannot reach the Dask scheduler at {target} within "
            f"{CONNECT_SECONDS:g} s ({error})"
        ) from None
    return DaskExecutor(client, owns_client=True)


# -- the worker's side ---------------------------------------------------------------------------------
class _Link:
    """In the worker: the attempt's TaskControl reporter (calls go back to the driver) and stop flag."""

    def __init__(self, spec: AttemptSpec) -> None:
        self.spec = spec
        self.worker = distributed.get_worker()
        self._stopped = False
        self._asked_at = 0.0
        self._event: distributed.Event | None = None

    def send(self, message: Message) -> None:
        self.worker.log_event(self.spec.topic, [self.spec.token, pickle.dumps(message, serde.PROTOCOL)])

    # ControlReporter
    def on_log(self, control: TaskControl, record: LogRecord) -> None:
        self.send(("log", record.message, record.level, record.extra))

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None:
        self.send(("progress", progress, status))

    def on_status(self, control: TaskControl, status: str) -> None:
        self.send(("status", status))

    # the stop flag TaskControl reads (an object with is_set/set)
    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._stopped and now - self._asked_at >= STOP_POLL_SECONDS:
            self._asked_at = now
            if self._event is None:
                self._event = distributed.Event(_stop_marker(self.spec.token))
            self._stopped = self._event.is_set()
        return self._stopped

    def set(self) -> None:
        self._stopped = True
        self.send(("stop",))


def _first_run(token: str) -> bool:
    """Mark the attempt started on the scheduler; False if it was already (Dask is re-running it)."""
    ran = distributed.Event(_ran_marker(token))
    if ran.is_set():
        return False
    ran.set()
    return True


def run_attempt(job: bytes, spec: AttemptSpec) -> tuple[bool, bytes]:
    """Run one attempt on a Dask worker: ``(True, value)`` or ``(False, exception)``, pickled by serde."""
    link = _Link(spec)
    try:
        return _run_once(job, spec, link)
    finally:
        if spec.reports:  # whatever happened: the driver waits for this before it records the outcome
            link.send(("end",))


def _run_once(job: bytes, spec: AttemptSpec, link: _Link) -> tuple[bool, bytes]:
    if not _first_run(spec.token):
        lost = TaskError(
            "the Dask worker running this attempt was lost, and Dask started it again on another worker; "
            "taskloom counts that as a failed attempt (retried per the task's options) instead of running it twice"
        )
        return False, serde.dumps_error(lost, what="attempt")
    name = "task"
    try:
        task, args, kwargs = pickle.loads(job)
        name = f"task {task.name!r}"
        value = _call(task, args, kwargs, spec, link)
    except BaseException as error:
        error.add_note(f"(raised on Dask worker {link.worker.address}, process {os.getpid()})")
        return False, serde.dumps_error(error, what=name)
    try:
        return True, serde.dumps(value, what=f"{name} result")
    except SerializationError as error:
        return False, serde.dumps_error(error, what=name)


def _call(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], spec: AttemptSpec, link: _Link) -> Any:
    token = current_origin.set(spec.origin)  # the body's log records say whose they are, as locally
    try:
        with masking.secret_scope():  # the secrets the driver resolved stay masked in what the body reports
            masking.register_secrets(spec.secrets)
            index = task.control_index
            if index is not None:
                control = TaskControl(task.name, spec.instance_id, reporter=link, stop_event=link)
                args = (*args[:index], control, *args[index:])
            value = task.fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_await(value))
            return value
    finally:
        current_origin.reset(token)


async def _await(awaitable: Any) -> Any:
    return await awaitable
