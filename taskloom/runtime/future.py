"""Future: the handle to one task instance's outcome, progress and logs.

A Future is thread-safe and can be waited on from any thread (``result(timeout)``) or awaited from any
event loop (``await future``) without blocking that loop. Its outcome is set once, by the backend that
runs the instance; everything else (progress, status text, logs) is updated live while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Generator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskCancelledError
from taskloom.runtime.control import LogRecord

if TYPE_CHECKING:
    from taskloom.runtime.control import TaskControl


class TaskStatus(StrEnum):
    """The values of ``Future.status`` (and ``TaskInstance.status``), as Numerous Tasks names them.

    A ``str`` enum: a status *is* its string, so ``future.status == "completed"`` and
    ``future.status == TaskStatus.COMPLETED`` both hold (also to a strict type checker), and it prints,
    formats and serialises (JSON) as the plain string.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: the type of ``Future.status`` (the name taskloom used before TaskStatus)
FutureStatus = TaskStatus
# Read on every instance's way through its future: a module global is several times faster to look up
# than an enum member on its class.
_PENDING, _RUNNING, _COMPLETED, _FAILED, _CANCELLED = TaskStatus
FINISHED: frozenset[TaskStatus] = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

_logger = logging.getLogger("taskloom.future")


class Future:
    """The outcome of one task instance: ``result()``, ``status``, ``progress``, ``cancel()``...

    Created by :class:`taskloom.TaskInstance`; users never build one. ``status`` moves
    ``pending -> running -> completed | failed``, or to ``cancelled`` from ``pending`` or ``running``.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_canceller",
        "_done",
        "_error",
        "_lock",
        "_logs",
        "_progress",
        "_status",
        "_status_message",
        "_value",
        "_waiters",
        "instance_id",
        "task_name",
    )

    def __init__(self, task_name: str, instance_id: str, canceller: Callable[[], bool] | None = None) -> None:
        self.task_name = task_name
        self.instance_id = instance_id
        self._canceller = canceller
        self._lock = threading.Lock()
        self._done = False
        # One pre-acquired lock per blocked result() call, released when the future finishes. (What a
        # threading.Condition does, made only when someone waits: most futures are never waited on
        # while running, and a Condition per future would cost more than starting the instance.)
        self._waiters: list[threading.Lock] = []
        self._status = _PENDING
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future], Any]] = []
        self._progress = 0.0
        self._status_message: str | None = None
        self._logs: list[LogRecord] = []

    # -- reading -----------------------------------------------------------------------------------
    @property
    def status(self) -> TaskStatus:
        """``"pending"``, ``"running"``, ``"completed"``, ``"failed"`` or ``"cancelled"``, as a :class:`TaskStatus`
        (a ``str`` enum, equal to those strings)."""
        return self._status

    @property
    def done(self) -> bool:
        """True once the future has an outcome: completed, failed or cancelled."""
        return self._done

    @property
    def error(self) -> BaseException | None:
        """The exception the task failed with (a TaskCancelledError if cancelled), else None."""
        return self._error

    @property
    def progress(self) -> float:
        """The last percentage the task reported with ``tc.update_progress`` (0 until it does)."""
        return self._progress

    @property
    def status_message(self) -> str | None:
        """The last status text the task reported (``update_status`` or ``update_progress``)."""
        return self._status_message

    @property
    def logs(self) -> list[LogRecord]:
        """A copy of the task's ``tc.log`` records so far, oldest first."""
        with self._lock:
            return list(self._logs)

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value, waiting up to ``timeout`` seconds (None: as long as it takes).

        Raises the task's own exception if it failed, :class:`TaskCancelledError` if it was cancelled,
        and ``TimeoutError`` if it is still running after ``timeout``; the future stays usable, so a later
        ``result()`` can wait again.
        """
        if not self._wait(timeout):
            raise TimeoutError(
                f"task {self.task_name!r} (instance {self.instance_id}) has not finished after {timeout:g}s; "
                "call result() again to keep waiting, or cancel() it"
            )
        if self._error is not None:
            raise self._error
        return self._value

    # -- acting ------------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Cancel the instance: a pending one never runs; a running one is asked to stop.

        Either way the future is ``cancelled`` at once and ``result()`` raises TaskCancelledError. A
        running function keeps its ``max_parallel`` slot until it has really returned. Returns False if
        the future had already finished.
        """
        if self._done:
            return False
        if self._canceller is not None:
            return self._canceller()
        return self._set_cancelled()

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(future)`` once when the future finishes (at once, in this thread, if it has).

        Callbacks run in the thread that finishes the future; an exception in one is logged and ignored.
        """
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        _run_callback(fn, self)

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future`` in async code: waits without blocking the event loop.

        Cancelling the awaiting coroutine does not cancel the instance; call :meth:`cancel` for that.
        """
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()

            def wake(_: Future) -> None:
                try:
                    loop.call_soon_threadsafe(_resolve, waiter)
                except RuntimeError:  # the loop was closed meanwhile; nobody is waiting any more
                    pass

            self.add_done_callback(wake)
            yield from waiter.__await__()
        return self.result()

    def _wait(self, timeout: float | None) -> bool:
        """Block until the future is done or ``timeout`` seconds pass; True if it is done."""
        if self._done:
            return True
        with self._lock:
            if self._done:
                return True
            if timeout is not None and timeout <= 0:
                return False
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=-1 if timeout is None else timeout):
            return True
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return self._done

    # -- set by the runtime (not for users) -------------------------------------------------------
    def _set_running(self) -> bool:
        """Move pending -> running; False if the future was cancelled first (then do not run)."""
        with self._lock:
            if self._status != _PENDING:
                return False
            self._status = _RUNNING
            return True

    def _set_result(self, value: Any) -> bool:
        return self._finish(_COMPLETED, value, None)

    def _set_error(self, error: BaseException) -> bool:
        return self._finish(_FAILED, None, error)

    def _set_cancelled(self) -> bool:
        error = TaskCancelledError(f"task {self.task_name!r} (instance {self.instance_id}) was cancelled")
        return self._finish(_CANCELLED, None, error)

    def _finish(self, status: TaskStatus, value: Any, error: BaseException | None) -> bool:
        with self._lock:
            if self._done:
                return False
            self._status, self._value, self._error = status, value, error
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()
        for fn in callbacks:
            _run_callback(fn, self)
        return True

    def __repr__(self) -> str:
        return (
            f"<Future task={self.task_name!r} instance={self.instance_id} status={self._status.value!r} "
            f"progress={self._progress:g}>"
        )


class FutureReporter:
    """A TaskControl reporter that mirrors the control's progress, status text and logs on a Future."""

    __slots__ = ("_future",)

    def __init__(self, future: Future) -> None:
        self._future = future

    def on_log(self, control: TaskControl, record: LogRecord) -> None:
        with self._future._lock:
            self._future._logs.append(record)

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None:
        self._future._progress = progress
        if status is not None:
            self._future._status_message = status

    def on_status(self, control: TaskControl, status: str) -> None:
        self._future._status_message = status


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _run_callback(fn: Callable[[Future], Any], future: Future) -> None:
    try:
        fn(future)
    except Exception:
        _logger.exception("done callback %r of %r raised", fn, future)
