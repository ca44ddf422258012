"""TaskControl: what a running task uses to report progress, log, and learn that it should stop.

Every call first updates the control's own state (so ``future.progress`` and the store see it whatever
handler is installed), then tells taskloom's internal *reporter* for this run (the step recorder of a
workflow, an instance's future, a worker's link to the server), then the current user-facing
:class:`TaskControlHandler`. Handlers are global by design (the document sets one with
``set_task_control_handler``); reporters are per run.

Messages, statuses and extra data are masked (:mod:`taskloom.masking`) as the task calls the control,
so the secrets of the running task reach neither the reporter (event log, instance updates, CLI, SSE)
nor the handler (``logging``) nor the control's own ``logs`` and ``status``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from taskloom import masking
from taskloom.ids import uuid4_hex
from taskloom.logs import lazy_logger
from taskloom.plain_values import FrozenValue

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_logger = lazy_logger("taskloom.task")  # logging is imported when it first logs


class LogRecord(FrozenValue):
    """One ``tc.log`` call as kept by taskloom.

    Not a frozen dataclass, which compiled its methods at import (see :mod:`taskloom.plain_values`)."""

    _fields = ("timestamp", "level", "message", "extra")
    __slots__ = _fields

    timestamp: float
    level: str
    message: str
    extra: dict[str, Any]

    def __init__(self, timestamp: float, level: str, message: str, extra: dict[str, Any] | None = None) -> None:
        self._set("timestamp", timestamp)
        self._set("level", level)
        self._set("message", message)
        self._set("extra", {} if extra is None else extra)


class ControlReporter(Protocol):
    """Internal sink for a control's updates (store events, futures, remote links)."""

    def on_log(self, control: TaskControl, record: LogRecord) -> None: ...

    def on_progress(self, control: TaskControl, progress: float, status: str | None) -> None: ...

    def on_status(self, control: TaskControl, status: str) -> None: ...


class TaskControlHandler:
    """Base for user handlers. Every method has a default, so a subclass overrides only what it needs.

    The default behaviour sends logs to the standard ``logging`` logger ``taskloom.task``; progress and
    status are already kept by taskloom (store, futures, CLI), so the defaults do nothing more.
    """

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
        import logging

        _logger.log(
            logging.getLevelName(level.upper()),
            "%s: %s",
            task_control.task_definition_name,
            message,
            extra={"taskloom": {"instance_id": task_control.instance_id, **extra_data}},
        )

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
        return None

    def update_status(self, task_control: TaskControl, status: str) -> None:
        return None

    def request_stop(self, task_control: TaskControl) -> None:
        return None


class TaskControlHandlerLike(Protocol):
    """What ``set_task_control_handler`` accepts: any object with these methods (duck typing, as in Numerous
    Tasks), a :class:`TaskControlHandler` subclass or not. ``request_stop`` is optional: a handler without
    it is simply not told of stop requests (the stop itself happens either way)."""

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None: ...

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None: ...

    def update_status(self, task_control: TaskControl, status: str) -> None: ...


#: the methods a handler must have; ``request_stop`` is called only when the handler has it
HANDLER_METHODS = ("log", "update_progress", "update_status")


class _HandlerRegistry:
    """The one global: which handler receives TaskControl calls."""

    def __init__(self) -> None:
        self.handler: TaskControlHandlerLike = TaskControlHandler()


_registry = _HandlerRegistry()


def set_task_control_handler(handler: TaskControlHandlerLike | None) -> None:
    """Install ``handler`` for every TaskControl call from now on (all threads); ``None`` puts the default
    handler back (logs to the ``taskloom.task`` logger), as in Numerous Tasks.

    Any object with ``log``, ``update_progress`` and ``update_status`` methods will do (a
    :class:`TaskControlHandler` subclass, a plain class, a ``unittest.mock.Mock()``); anything else is a
    ``TypeError`` now rather than an ``AttributeError`` in the middle of some task later.
    """
    if handler is None:
        _registry.handler = TaskControlHandler()
        return
    if not isinstance(handler, TaskControlHandler):
        missing = [name for name in HANDLER_METHODS if not callable(getattr(handler, name, None))]
        if missing:
            raise TypeError(
                f"set_task_control_handler(handler): handler must be a TaskControlHandler, None, or an object "
                f"with the methods {', '.join(HANDLER_METHODS)}; {type(handler).__name__} has no "
                f"{', '.join(missing)} method"
            )
    _registry.handler = handler


def get_task_control_handler() -> TaskControlHandlerLike:
    """The handler TaskControl calls go to now (the default one unless another was installed)."""
    return _registry.handler


class TaskControl:
    """Handed to a task whose first parameter is annotated ``TaskControl``; never passed by callers."""

    def __init__(
        self,
        task_definition_name: str,
        instance_id: str | None = None,
        *,
        reporter: ControlReporter | None = None,
        stop_event: threading.Event | Any | None = None,
    ) -> None:
        self.task_definition_name = task_definition_name
        self.instance_id = instance_id or uuid4_hex()
        self.reporter = reporter
        # Any object with set()/is_set() works: a threading.Event, or a multiprocessing one.
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._progress = 0.0
        self._status = ""  # as in Numerous Tasks: a status is always a string, empty until one is set
        self.logs: list[LogRecord] = []

    # -- reading ---------------------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        """True once a stop was requested; a task should then wind down and return."""
        return bool(self._stop.is_set())

    @property
    def progress(self) -> float:
        return self._progress

    @property
    def status(self) -> str:
        """The last status text the task set (``update_status``, or ``update_progress``'s ``status``); ``""``
        until it sets one."""
        return self._status

    # -- writing ---------------------------------------------------------------------------------
    def log(self, message: str, level: str = "info", **extra_data: Any) -> None:
        level = str(level).lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"TaskControl.log: level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        if "task_control" in extra_data:  # the handler's own first argument
            raise ValueError("TaskControl.log: 'task_control' is reserved; give the extra data another name")
        extra_data = masking.mask_value(extra_data)
        record = LogRecord(time.time(), level, masking.mask_text(str(message)), extra_data)
        self.logs.append(record)
        if self.reporter is not None:
            self.reporter.on_log(self, record)
        _registry.handler.log(self, record.message, level, **extra_data)

    def update_progress(self, percentage: float, status: str | None = None) -> None:
        try:
            value = float(percentage)
        except (TypeError, ValueError):
            raise ValueError(f"TaskControl.update_progress: percentage must be a number, got {percentage!r}") from None
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"TaskControl.update_progress: percentage must be between 0 and 100, got {percentage!r}")
        self._progress = value
        if status is not None:
            status = masking.mask_text(str(status))
            self._status = status
        if self.reporter is not None:
            self.reporter.on_progress(self, value, self._status if status is not None else None)
        _registry.handler.update_progress(self, value, status)

    def update_status(self, status: str) -> None:
        self._status = masking.mask_text(str(status))
        if self.reporter is not None:
            self.reporter.on_status(self, self._status)
        _registry.handler.update_status(self, self._status)

    def request_stop(self) -> None:
        """Ask the task to stop; it sees ``should_stop`` become True at its next check."""
        self._stop.set()
        tell = getattr(_registry.handler, "request_stop", None)  # optional for a duck-typed handler
        if tell is not None:
            tell(self)

    def __repr__(self) -> str:
        return (
            f"TaskControl(task={self.task_definition_name!r}, instance={self.instance_id!r}, "
            f"progress={self._progress:g}, status={self._status!r}, should_stop={self.should_stop})"
        )


def replay_call(control: TaskControl, message: tuple[Any, ...]) -> None:
    """Apply on ``control`` one TaskControl call that a task made in another process (a ``local-process``
    worker, a Dask worker), sent as ``("log", message, level, extra)``, ``("progress", percentage,
    status)``, ``("status", status)`` or ``("stop",)``: futures, reporters and handlers here see it."""
    kind = message[0]
    if kind == "log":
        control.log(message[1], message[2], **message[3])
    elif kind == "progress":
        control.update_progress(message[1], message[2])
    elif kind == "status":
        control.update_status(message[1])
    elif kind == "stop":
        control.request_stop()
