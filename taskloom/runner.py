"""The background runner of ``wf.start()``: the starting process runs its executions as a worker would.

One runner per process (not one thread per start): a daemon thread with its own event loop drives every
execution this process started, each under its lease (renewed by :mod:`taskloom.leases`, fenced on every
write), at most :data:`MAX_RUNNING` at once. Nothing here is special to durability: a run is the normal
replaying driver, so if the process dies (SIGKILL, power loss) the lease runs out and any worker or
``taskloom recover`` takes the execution over and replays it, without running a completed step again.

At interpreter exit (the main thread returned, ``sys.exit``, Ctrl-C) the runs still going are stopped
at their current ``await`` and put back in the queue (their lease released, status ``queued``) with a
warning naming them, so that a worker or ``taskloom recover`` continues them from their last completed
step; they are never silently dropped. A sync step in flight then finishes in its thread before the
process ends (as at any exit), and its result is not recorded: it runs again where the execution is
continued. A script that wants its results waits with ``handle.result()``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from taskloom.leases import KeptLease, keeper
from taskloom.store.base import Store

if TYPE_CHECKING:
    from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.runner")
R = TypeVar("R")

#: executions one process drives at once; more wait in line (their leases kept alive meanwhile)
MAX_RUNNING = 100
#: how long interpreter exit waits for the runs still going to put their executions back in the queue
EXIT_GRACE_SECONDS = 5.0


class Runner:
    """Drives started executions on one background event loop; created on first use, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._pid = os.getpid()
        self._running: dict[str, concurrent.futures.Future[None]] = {}
        #: set when a run here has ended and released what it held (exit waits on these)
        self._ended: dict[str, threading.Event] = {}
        #: the loop's task of each run (a running coroutine is cancelled through its task, not its future)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(
        self, workflow: Workflow[Any], store: Store, execution_id: str, owner: str | None, lease_seconds: float
    ) -> concurrent.futures.Future[None]:
        """Drive ``execution_id`` in the background. With ``owner``, the caller created it leased to that
        owner and this runner drives it under that lease (kept alive while it waits for a slot); without,
        it takes the execution as ``wf.run(execution_id=...)`` would (waiting for a delay to pass, or for
        another live owner to finish or die)."""
        kept: KeptLease | None = None
        if owner is not None:
            kept = keeper.keep(store, execution_id, owner, lease_seconds, threading.Event())
        loop = self._started()
        ended = threading.Event()
        job = self._drive(workflow, store, execution_id, owner, lease_seconds, kept, ended)
        future = asyncio.run_coroutine_threadsafe(job, loop)
        with self._lock:
            self._running[execution_id] = future
            self._ended[execution_id] = ended
        future.add_done_callback(lambda done: self._forget(execution_id, done))
        return future

    def call(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` on the runner's thread, waited for.

        Starts write their new execution from here: the runner's runs write to the same store, and one
        thread taking turns with itself is much faster than two threads taking SQLite's write lock from
        each other (whose busy handler sleeps). Called from the runner's own thread, it runs at once.
        """
        loop = self._started()
        if self._thread is threading.current_thread():
            return fn(*args, **kwargs)

        async def on_loop() -> R:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(on_loop(), loop).result()

    def running(self, execution_id: str) -> concurrent.futures.Future[None] | None:
        """The run of ``execution_id`` in this process, if there is one."""
        with self._lock:
            return self._running.get(execution_id) if self._pid == os.getpid() else None

    async def _drive(
        self,
        workflow: Workflow[Any],
        store: Store,
        execution_id: str,
        owner: str | None,
        lease_seconds: float,
        kept: KeptLease | None,
        ended: threading.Event,
    ) -> None:
        assert self._slots is not None
        task = asyncio.current_task()
        if task is not None:
            with self._lock:
                self._tasks[execution_id] = task
        try:
            async with self._slots:
                if owner is None:
                    await workflow.arun(
                        execution_id=execution_id, store=store, lease_seconds=lease_seconds, continue_paused=False
                    )
                    return
                await workflow.arun(
                    execution_id=execution_id, store=store, lease_owner=owner, lease_seconds=lease_seconds
                )
        finally:
            if kept is not None:
                keeper.drop(kept)
            if owner is not None:
                # A no-op when the driver released it; else (stopped before it drove it: exit, an error
                # reading it) back to the queue for a worker, never left leased to nobody alive.
                _release(store, execution_id, owner)
            with self._lock:
                if self._tasks.get(execution_id) is task:
                    del self._tasks[execution_id]
            ended.set()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's loop thread does not exist here
                self._loop, self._running, self._ended, self._tasks = None, {}, {}, {}
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=_serve, args=(loop, ready), name="taskloom-start-runner", daemon=True)
                thread.start()
                ready.wait()
                self._slots = asyncio.Semaphore(MAX_RUNNING)
                self._loop, self._thread = loop, thread
                _at_interpreter_exit(self._at_exit)
            return self._loop

    def _forget(self, execution_id: str, done: concurrent.futures.Future[None]) -> None:
        with self._lock:
            if self._running.get(execution_id) is done:
                del self._running[execution_id]
                self._ended.pop(execution_id, None)
        if not done.cancelled() and done.exception() is not None:
            log.warning("started execution %s stopped in this process: %s", execution_id, done.exception())

    def _at_exit(self) -> None:
        """Interpreter exit: stop what still runs and put it back in the queue, saying so."""
        with self._lock:
            if self._pid != os.getpid():
                return
            left = dict(self._running)
            ended = [self._ended[execution_id] for execution_id in left if execution_id in self._ended]
            tasks = list(self._tasks.values())
            loop = self._loop
        if not left:
            return
        log.warning(
            "taskloom: %d execution(s) started by this process had not finished at exit and were put back in "
            "the queue: a worker (`taskloom worker MODULE`) or `taskloom recover` continues them from their last "
            "completed step (wait with handle.result() to keep them here): %s",
            len(left),
            ", ".join(sorted(left)),
        )
        for future in left.values():
            future.cancel()  # a run that has not begun never will
        for task in tasks:  # a run that has: its driver releases the lease with requeue
            if loop is not None:
                loop.call_soon_threadsafe(task.cancel)
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        for event in ended:
            event.wait(max(0.0, deadline - time.monotonic()))


def _at_interpreter_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when the interpreter exits, before it waits for the threads of thread pools.

    ``atexit`` would be too late: by then the interpreter has waited for every step still running in a
    pool thread while this runner's loop went on driving, and the next step of such a run would fail
    to start (the pools refuse new work at exit), failing the execution for no fault of its own.
    ``threading._register_atexit`` (what ``concurrent.futures`` itself uses) runs hooks in reverse
    order of registration, so this one, registered after the pools', runs first.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every supported Python has it
        atexit.register(hook)
        return
    register(hook)


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    # A task that never ends: with it the loop is never a single run's alone, so the driver never runs a
    # sync step inline on the loop's thread (its shortcut for a lone ``wf.run``), which would hold up
    # every other run, every new start, and the cancel at exit until that step returned.
    keep_company = loop.create_task(asyncio.Event().wait(), name="taskloom-runner-company")
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        keep_company.cancel()


def _release(store: Store, execution_id: str, owner: str) -> None:
    try:
        store.release_execution(execution_id, owner, requeue=True)
    except Exception as error:
        log.warning(
            "execution %s: could not release its lease (%s); it is taken over when it expires", execution_id, error
        )


#: the runner of this process
runner = Runner()
