"""Sync bodies off the event loop, at the cost of a lock and a deque append per body.

``loop.run_in_executor`` costs per call a concurrent Future, its Condition, a ``wrap_future`` chaining
two futures, and one ``call_soon_threadsafe`` (a write to the loop's self-pipe) when the body ends; and a
workflow run made a thread pool of its own, so every run started its threads again. A durable ``map`` of
1,000 trivial sync tasks spent more time there than in its store. Here instead:

- **Lanes** (:class:`ThreadLane`) bound the concurrency of one user of threads, as a thread pool's
  ``max_workers`` did (a workflow run: ``STEP_THREADS``; a loop's default: asyncio's own limit), but own
  no threads. A lane keeps its waiting jobs in a deque and runs at most ``limit`` *drains*: a drain takes
  jobs from the lane one after the other until none is left, then gives its thread back.
- **Threads** come from one pool per process (:class:`_Threads`): started on first need, reused by every
  lane and every run, daemon threads (so a body that never returns does not hold up interpreter exit, as
  the per-run pool's atexit join did), and retired after ``IDLE_SECONDS`` without work. The pool is not
  bounded itself: the lanes are, so nested runs (a step body running a workflow of its own) never wait
  for a thread their caller holds.
- **Results** go back in batches (:class:`_Hub`, one per event loop): a finished job is appended to the
  loop's done-list, and only the append that makes the list non-empty wakes the loop, with one
  ``call_soon_threadsafe``; the loop then settles every finished job's future in one callback.

What ``run_in_executor`` guaranteed stays: the body runs in a copy of the caller's context (contextvars:
the TaskControl, secrets scope, the step's ``plain`` marker); any exception, ``BaseException`` too, is
delivered to the awaiting future; a job whose future was cancelled before it started does not run (a
failed sibling in ``parallel``/``map`` cancels the queued rest); a cancelled future is skipped when its
batch is settled, the others are not; a closed loop does not raise in the worker. After ``fork`` the
child starts with a fresh pool and fresh hubs (the parent's threads do not exist there).

``isolated`` jobs (an attempt with a timeout) keep a daemon thread of their own, which the caller can
abandon: a hung attempt never occupies a lane's slot.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
from collections import deque
from collections.abc import Callable

from taskloom.logs import lazy_logger
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    import queue
    from concurrent.futures import Executor, Future
    from typing import Any

log = lazy_logger("taskloom.thread_hops")  # logging is imported when it first logs
#: how long a pool thread waits for work before it ends (a later job starts a new one)
IDLE_SECONDS = 30.0
#: the limit of the lane that stands in for a loop's default executor: asyncio's default max_workers
DEFAULT_LIMIT = min(32, (os.cpu_count() or 1) + 4)
#: the name of a pool thread between drains
IDLE_NAME = "taskloom-thread"


class _Threads:
    """The process's pool of worker threads: each runs the callables it is handed, then waits for more.

    ``_idle`` counts the threads waiting for work minus the callables queued for them, kept under
    ``_lock`` together with every put, so a thread that retires never leaves a callable behind.
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        #: made with the first thread (``queue`` is imported then: a run of inline steps starts none)
        self._queue: queue.SimpleQueue[Callable[[], None]] | None = None
        self._idle = 0

    def start(self, work: Callable[[], None]) -> None:
        """Run ``work`` on a waiting thread, or on a new one when none waits."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                assert self._queue is not None  # an idle thread waits on it
                self._queue.put(work)
                return
            if self._queue is None:
                import queue

                self._queue = queue.SimpleQueue()
        # The first work goes in a box the thread empties: Thread keeps its args for as long as it runs.
        threading.Thread(target=self._serve, args=([work],), name=IDLE_NAME, daemon=True).start()

    def _serve(self, first: list[Callable[[], None]]) -> None:
        import queue

        waiting = self._queue
        assert waiting is not None  # made before this thread was started
        work = first.pop()
        while True:
            work()  # a drain: it catches what its jobs raise
            del work  # an idle thread keeps no lane alive
            with self._lock:
                self._idle += 1
            try:
                work = waiting.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    try:
                        work = waiting.get_nowait()  # handed over just as the wait ran out
                    except queue.Empty:
                        self._idle -= 1
                        return


_threads = _Threads()


class ThreadLane:
    """At most ``limit`` jobs at once on the process's threads, named ``{name}_N`` while they run them.

    It has a ``concurrent.futures.Executor``'s ``submit``, ``shutdown`` and ``with``, so it goes where a
    thread pool went; :func:`run_in_thread` sees a lane and takes the fast way instead of
    ``run_in_executor``. It does not derive from ``Executor``: ``concurrent.futures`` imports ``logging``,
    and every workflow run makes a lane (issue 12's one-step process). ``shutdown`` refuses new jobs, as a
    pool's does; the jobs already queued still run, and the threads stay with the process.
    """

    def __init__(self, limit: int, name: str = "taskloom") -> None:
        if limit < 1:
            raise ValueError(f"a thread lane needs a limit of at least 1, not {limit}")
        self.limit = limit
        self.name = name
        self._lock = threading.Lock()
        self._pending: deque[Callable[[], None]] = deque()
        self._running = 0
        self._closed = False
        self._numbers = itertools.count()

    def push(self, job: Callable[[], None]) -> None:
        """Queue ``job`` (which must not raise), starting a drain while fewer than ``limit`` run.

        No lock on the way of a job (the loop thread would queue behind its own workers for it): deque
        appends and pops are atomic, and only starting or ending a drain takes the lock. The job is
        appended *before* the count is read, and a drain ends only after seeing the deque empty under
        the lock with its count already given back, so a job is never left without a drain.
        """
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self._pending.append(job)
        if self._running >= self.limit:
            return
        with self._lock:
            if self._running >= self.limit:
                return
            self._running += 1
        _threads.start(self._drain)

    def _drain(self) -> None:
        current = threading.current_thread()
        current.name = f"{self.name}_{next(self._numbers)}"
        pending = self._pending
        try:
            while True:
                try:
                    job = pending.popleft()
                except IndexError:
                    if self._stop_draining():
                        return
                    continue
                try:
                    job()
                except BaseException:  # a job catches its own errors; one that did not must not stop the lane
                    log.exception("a job of thread lane %r raised", self.name)
        finally:
            current.name = IDLE_NAME

    def _stop_draining(self) -> bool:
        """True if this drain ends (nothing queued); False if a job came in as it was about to."""
        with self._lock:
            if self._pending:
                return False
            self._running -= 1
            return True

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """The ``Executor`` way in, for code that wants a concurrent Future (the workflow path does not)."""
        from concurrent.futures import Future

        future: Future[Any] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.push(job)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new jobs. ``wait`` and ``cancel_futures`` are accepted for the interface and ignored:
        the workflow path shuts its lane without waiting, and drops what it no longer awaits itself."""
        self._closed = True

    def __enter__(self) -> ThreadLane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class _Hub:
    """One event loop's done-list: workers append finished jobs, the loop settles them in batches.

    Lock-free: whoever pops the single wake token sends the one wake-up; the loop puts the token back
    *before* it empties the list, so a job appended after that either is emptied with the rest or finds
    the token and wakes the loop again (at worst once too often, never too few).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._done: deque[_Hop] = deque()
        self._token = [True]
        #: stands in for the loop's default executor (``executor=None``), with asyncio's limit
        self.default_lane = ThreadLane(DEFAULT_LIMIT, "asyncio")

    def finished(self, hop: _Hop) -> None:
        """Called in a worker: hand a finished job to the loop, waking it only if no wake-up is pending."""
        self._done.append(hop)
        try:
            self._token.pop()
        except IndexError:
            return  # the wake-up already sent will settle this one too
        try:
            self.loop.call_soon_threadsafe(self._settle)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits the outcome any more

    def _settle(self) -> None:
        self._token.append(True)
        done = self._done
        while done:
            hop = done.popleft()
            if not hop.future.done():  # a cancelled awaiter skips only its own outcome
                _settle_one(hop.future, hop.value, hop.error)


def _settle_one(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if error is None:
        future.set_result(value)
    elif isinstance(error, StopIteration):
        # asyncio futures refuse StopIteration (it would end a coroutine silently); Python turns one that
        # leaves a generator into RuntimeError the same way, keeping the original as the cause.
        replaced = RuntimeError(f"the function raised StopIteration: {error!r}")
        replaced.__cause__ = error
        future.set_exception(replaced)
    else:
        future.set_exception(error)


class _Hop:
    """One job of :func:`run_in_thread`: run ``fn`` in ``context``, hand the outcome to ``hub``."""

    __slots__ = ("context", "error", "fn", "future", "hub", "value")

    def __init__(
        self, hub: _Hub, future: asyncio.Future[Any], context: contextvars.Context, fn: Callable[[], Any]
    ) -> None:
        self.hub, self.future, self.context, self.fn = hub, future, context, fn
        self.value: Any = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        if self.future.cancelled():  # its awaiter gave up before it started: like a queued pool job
            return
        try:
            self.value = self.context.run(self.fn)
        except BaseException as error:
            self.error = error
        self.hub.finished(self)


_local = threading.local()


def _hub(loop: asyncio.AbstractEventLoop) -> _Hub:
    """The hub of ``loop``, the loop running in this thread (one per thread is remembered)."""
    hub: _Hub | None = getattr(_local, "hub", None)
    if hub is None or hub.loop is not loop:
        hub = _local.hub = _Hub(loop)
    return hub


def run_in_thread(
    fn: Callable[[], Any], *, executor: Executor | ThreadLane | None, isolated: bool
) -> asyncio.Future[Any]:
    """Run ``fn`` off the running loop in a copy of this context; the future settles with its outcome.

    ``executor`` is a :class:`ThreadLane` (a workflow run's), ``None`` (the loop's default: a lane of
    asyncio's size, unless the loop already has a default executor of its own), or any other
    ``Executor`` (``loop.run_in_executor`` as before). ``isolated`` gives the call a daemon thread of its
    own, which an attempt's timeout can abandon.
    """
    import asyncio  # not at the top: ``import taskloom`` does not load asyncio (loop_free)

    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    if isolated:
        return _run_isolated(loop, context, fn)
    if executor is None:
        if getattr(loop, "_default_executor", None) is not None:  # set by the user, or already in use
            return loop.run_in_executor(None, context.run, fn)
        executor = _hub(loop).default_lane
    if not isinstance(executor, ThreadLane):
        return loop.run_in_executor(executor, context.run, fn)
    future = loop.create_future()
    executor.push(_Hop(_hub(loop), future, context, fn))
    return future


def _run_isolated(
    loop: asyncio.AbstractEventLoop, context: contextvars.Context, fn: Callable[[], Any]
) -> asyncio.Future[Any]:
    future = loop.create_future()
    hop = _Hop(_hub(loop), future, context, fn)
    threading.Thread(target=hop, name="taskloom-attempt", daemon=True).start()
    return future


def _after_fork_in_child() -> None:
    """The parent's threads are not in the child, and its locks may have been held at the fork."""
    global _threads, _local
    _threads = _Threads(_threads.idle_seconds)
    _local = threading.local()


os.register_at_fork(after_in_child=_after_fork_in_child)
