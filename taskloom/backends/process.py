"""The ``local-process`` backend: each attempt of an instance runs in a worker process.

Why a process: a sync function that hangs or ignores ``should_stop`` cannot be ended from another thread,
but its process can. So the task's policy (retry, timeout, fallback, rollback) runs here, in the parent,
and only the attempts themselves go to a worker; an attempt that times out, or that is cancelled and does
not return within :data:`CANCEL_GRACE_SECONDS`, has its worker killed and replaced.

Workers come from ``forkserver`` (``spawn`` where that does not exist), never ``fork``: the parent has
threads. A task crosses by reference (``Task.__reduce__``), so it must be importable by the worker: defined
at module level, and a script's own code guarded by ``if __name__ == "__main__":``, as with any
multiprocessing pool. Arguments and results are pickled.

TaskControl calls made in the worker travel back over the worker's pipe and are replayed on the
instance's control in the parent (so futures and handlers there see them); a stop request sets the
worker's ``multiprocessing.Event``, which is what ``tc.should_stop`` reads in the worker.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import multiprocessing
import multiprocessing.connection
import multiprocessing.util
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, cast

from taskloom import policy
from taskloom.backends.pool import shared_thread_pool
from taskloom.errors import SerializationError, TaskCancelledError, TaskError, TaskTimeoutError
from taskloom.logs import current_origin, origin
from taskloom.runtime.control import TaskControl, TaskControlHandler, replay_call, set_task_control_handler
from taskloom.runtime.instance import InstanceRun

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

    from taskloom.options import TaskOptions
    from taskloom.task import Task

Args = tuple[Any, ...]
Kwargs = dict[str, Any]

#: how long a cancelled attempt may take to return after its stop request before its worker is killed
CANCEL_GRACE_SECONDS = 1.0
#: how often a waiting attempt looks at its cancel state (messages and worker exit wake it at once)
POLL_SECONDS = 0.05
#: idle workers kept for reuse; more are ended when they finish
MAX_IDLE_WORKERS = max(2, os.cpu_count() or 2)


def _context() -> BaseContext:
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Workers fork from a server that has taskloom imported already, so a new worker is quick.
        context.set_forkserver_preload([__name__])
    return context


class _Worker:
    """One worker process and the parent's end of its pipe. Runs one attempt at a time."""

    def __init__(self, context: BaseContext) -> None:
        parent_end, child_end = context.Pipe(duplex=True)
        self.stop: Event = context.Event()
        self.process: BaseProcess = context.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child_end, self.stop), name="taskloom-worker"
        )
        self.process.start()
        child_end.close()
        self.conn: Connection = parent_end

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(1)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class _Attempts:
    """Stands in for the task in ``policy.call_sync``: the same options and arguments, but each attempt
    is sent to a worker process. (The policy reads only ``name``, ``options``, ``fn`` and
    ``prepare_arguments``.)"""

    def __init__(self, task: Task[Any, Any], fn: Callable[..., Any]) -> None:
        self.name: str = task.name
        self.options: TaskOptions = task.options
        self.is_async = False
        self.fn = fn
        self._task = task

    def prepare_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self._task.prepare_arguments(args, kwargs, control)


class _RunWorkers:
    """The workers one run is using right now, so a stop request reaches each of them.

    ``spare`` is a worker acquired before the policy starts, so starting a process does not count
    against the first attempt's timeout.
    """

    def __init__(self, spare: _Worker) -> None:
        self.lock = threading.Lock()
        self.workers: set[_Worker] = set()
        self.stopping = False
        self.spare: _Worker | None = spare

    def take_spare(self) -> _Worker | None:
        with self.lock:
            spare, self.spare = self.spare, None
            return spare

    def stop_all(self) -> None:
        with self.lock:
            self.stopping = True
            for worker in self.workers:
                worker.stop.set()


class ProcessBackend:
    """Runs instance attempts in reusable worker processes; kills a worker to end an attempt."""

    name = "local-process"

    def __init__(self, cancel_grace: float = CANCEL_GRACE_SECONDS) -> None:
        self.cancel_grace = cancel_grace
        self._context = _context()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._closed = False
        self._pool = shared_thread_pool()
        # Registered after multiprocessing's own exit hook, so it runs first (atexit is last-in,
        # first-out): workers are told to end before multiprocessing joins its children.
        atexit.register(self.close)

    def submit(self, run: InstanceRun) -> None:
        self._pool.submit(self._run, run)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy, self._busy = set(self._busy), set()
        for worker in idle:
            worker.close()
        for worker in busy:
            worker.kill()

    # -- one run -----------------------------------------------------------------------------------
    def _run(self, run: InstanceRun) -> None:
        if not run.begin():
            return
        try:
            workers = _RunWorkers(self._acquire())
        except BaseException as error:
            run.fail(error)
            return
        run.on_stop(workers.stop_all)
        attempts = _Attempts(run.task, lambda *a, **k: self._attempt(run, workers, a, k))
        # Records made here (the worker's TaskControl logs replayed on the instance's control) say whose.
        origin_token = current_origin.set(origin(task=run.task.name, instance_id=run.instance_id))
        try:
            policy_task = cast("Task[Any, Any]", attempts)
            value = policy.call_sync(policy_task, run.args, run.kwargs, control=run.control)
        except BaseException as error:
            run.fail(error)
        else:
            run.succeed(value)
        finally:
            current_origin.reset(origin_token)
            unused = workers.take_spare()  # the arguments were bad: no attempt was made
            if unused is not None:
                self._release(unused, True)

    def _attempt(self, run: InstanceRun, workers: _RunWorkers, args: Args, kwargs: Kwargs) -> Any:
        task = run.task
        if task.wants_control:
            args = args[1:]  # the worker makes its own TaskControl, wired back to this one
        worker = workers.take_spare() or self._acquire()
        with workers.lock:
            workers.workers.add(worker)
            if workers.stopping:
                worker.stop.set()
        keep = False
        try:
            try:
                worker.conn.send((task, args, kwargs, run.instance_id))
            except OSError as error:  # the worker died while idle
                raise TaskError(f"task {task.name!r}: could not reach a worker process ({error})") from error
            except Exception as error:  # pickling failed before anything was written: the worker is fine
                keep = True
                raise SerializationError(
                    f"task {task.name!r}: its arguments cannot be sent to a worker process "
                    f"({type(error).__name__}: {error}); local-process needs picklable arguments"
                ) from error
            kind, payload = self._await_outcome(run, worker)
            keep = True
            if kind == "error":
                raise payload
            return payload
        finally:
            with workers.lock:
                workers.workers.discard(worker)
            self._release(worker, keep)

    def _await_outcome(self, run: InstanceRun, worker: _Worker) -> tuple[str, Any]:
        """Relay the worker's messages until its outcome, ``("ok", value)`` or ``("error", exception)``.

        Raises (the worker then dead) if it exits, times out, or does not answer a cancel in time.
        """
        task = run.task
        timeout = task.options.effective_timeout
        deadline = time.monotonic() + timeout if timeout else None
        kill_at: float | None = None
        sentinel = worker.process.sentinel
        while True:
            wait = POLL_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            ready = multiprocessing.connection.wait([worker.conn, sentinel], wait)
            if worker.conn in ready:
                try:
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    ready = [sentinel]
                else:
                    if message[0] in ("ok", "error"):
                        return message[0], message[1]
                    replay_call(run.control, message)
                    continue
            if sentinel in ready:
                worker.process.join(1)
                raise TaskError(
                    f"task {task.name!r}: its worker process exited unexpectedly (exit code "
                    f"{worker.process.exitcode}); if the task is defined in a script, guard the script's "
                    "own code with `if __name__ == '__main__':`"
                )
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self._kill_and_replace(worker)  # the policy has already failed this attempt (timeout)
                raise TaskTimeoutError(f"task {task.name!r}: attempt timed out after {timeout:g}s")
            if run.cancelled:
                kill_at = kill_at if kill_at is not None else now + self.cancel_grace
                if now >= kill_at:
                    self._kill_and_replace(worker)
                    raise TaskCancelledError(
                        f"task {task.name!r}: cancelled, and its worker did not return within "
                        f"{self.cancel_grace:g}s of the stop request, so it was ended"
                    )

    # -- workers -----------------------------------------------------------------------------------
    def _acquire(self) -> _Worker:
        dead: list[_Worker] = []
        try:
            with self._lock:
                if self._closed:
                    raise TaskError("the local-process backend is closed (the interpreter is exiting)")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        worker.stop.clear()
                        self._busy.add(worker)
                        return worker
                    dead.append(worker)
        finally:
            for worker in dead:
                worker.kill()  # reaps it and closes its pipe
        worker = _Worker(self._context)
        with self._lock:
            self._busy.add(worker)
        return worker

    def _kill_and_replace(self, worker: _Worker) -> None:
        """End a worker mid-attempt, and start its replacement now, so a retry need not wait for one."""
        worker.kill()
        self._pool.submit(self._add_idle_worker)

    def _add_idle_worker(self) -> None:
        with self._lock:
            if self._closed or len(self._idle) >= MAX_IDLE_WORKERS:
                return
        worker = _Worker(self._context)
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.close()

    def _release(self, worker: _Worker, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            keep = reusable and not self._closed and worker.alive and len(self._idle) < MAX_IDLE_WORKERS
            if keep:
                self._idle.append(worker)
        if not keep:
            if worker.alive and reusable:
                worker.close()
            elif worker.alive:
                worker.kill()


# -- the worker process --------------------------------------------------------------------------------
class _ForwardingHandler(TaskControlHandler):
    """In a worker, every TaskControl call goes to the parent, where the instance's control lives."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
        self._send(("log", message, level, extra_data))

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
        self._send(("progress", progress, status))

    def update_status(self, task_control: TaskControl, status: str) -> None:
        self._send(("status", status))

    def request_stop(self, task_control: TaskControl) -> None:
        self._send(("stop",))


def _worker_main(conn: Connection, stop: Event) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what stops (a session leaving by
    # KeyboardInterrupt asks its instances to stop), so a worker must not die of it mid-attempt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    forwarder = _ForwardingHandler(send)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        except Exception as error:  # the task's module could not be imported here, for one
            send(
                (
                    "error",
                    TaskError(f"a worker process could not load the task: {type(error).__name__}: {error}"),
                )
            )
            continue
        if job is None:
            return
        # Loading the job may have imported the task's module, and a module may install its own handler
        # at import time: in a worker, calls must still go to the parent, whose handler is the user's.
        set_task_control_handler(forwarder)
        task, args, kwargs, instance_id = job
        kind, payload = _run_attempt(task, args, kwargs, instance_id, stop)
        try:
            send((kind, payload))
        except Exception as error:  # pickling failed before anything was written
            what = "result" if kind == "ok" else f"exception {type(payload).__name__}: {payload}"
            send(
                (
                    "error",
                    SerializationError(
                        f"task {task.name!r}: its {what} cannot be sent back from the worker process "
                        f"({type(error).__name__}: {error})"
                    ),
                )
            )


def _run_attempt(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], instance_id: str, stop: Event
) -> tuple[str, Any]:
    """Call the task's function once, as the parent's policy asked; the outcome, not raised."""
    origin_token = current_origin.set(origin(task=task.name, instance_id=instance_id))  # on its log records
    try:
        if task.wants_control:
            args = (TaskControl(task.name, instance_id, stop_event=stop), *args)
        value = task.fn(*args, **kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except BaseException as error:
        where = traceback.format_exc().rstrip()
        error.add_note(f"(raised in taskloom worker process {os.getpid()}:\n{where})")
        return "error", error
    finally:
        current_origin.reset(origin_token)
    return "ok", value


async def _await(awaitable: Any) -> Any:
    return await awaitable


def create_backend() -> ProcessBackend:
    return ProcessBackend()
