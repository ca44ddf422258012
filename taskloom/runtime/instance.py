"""TaskInstance: one run of a task in a session, with its Future and TaskControl.

An instance goes ``created -> queued (waiting for a slot) -> launched -> finished``. Its backend (chosen
by ``TASKLOOM_BACKEND`` when the instance is created) runs it and reports back through an
:class:`InstanceRun`, the narrow view of the instance that backends get.
"""

from __future__ import annotations

import contextvars
import os
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from taskloom.errors import SessionNotFoundError, TaskError
from taskloom.logs import current_origin, origin
from taskloom.runtime.control import TaskControl
from taskloom.runtime.future import Future, FutureReporter, TaskStatus
from taskloom.runtime.session import Session, current_session, enter_session_context

if TYPE_CHECKING:
    from taskloom.backends.base import Backend
    from taskloom.task import Task

T = TypeVar("T")

# Instance ids are random UUIDs like uuid4(), drawn from a private generator: os.urandom per id costs
# more than starting the instance on some machines. Reseeded in forked children so ids never repeat.
_id_random = random.Random()
os.register_at_fork(after_in_child=_id_random.seed)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_instance_id() -> str:
    """A random (version 4) UUID in hex, unique across processes; ``uuid.UUID(id)`` parses it."""
    return f"{_id_random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"


class StopSignal:
    """The stop flag of one instance's TaskControl, telling listeners when it is raised.

    A backend that runs the function elsewhere (another process, a remote worker) listens, so a stop
    request crosses over as soon as it is made.
    """

    __slots__ = ("_listeners", "_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` once when the flag is raised (at once if it already is)."""
        with self._lock:
            if not self._set:
                self._listeners.append(listener)
                return
        listener()


class TaskInstance:
    """One run of a task inside a :class:`taskloom.Session`; make it with ``my_task.instance()``.

    ``start(*args, **kwargs)`` returns the :class:`Future` at once; ``stop()`` asks the running function
    to wind down (``tc.should_stop`` becomes True), and whatever it then returns is its result.
    """

    __slots__ = (
        "_args",
        "_backend",
        "_kwargs",
        "_lock",
        "_state",
        "control",
        "future",
        "id",
        "session",
        "task",
    )

    def __init__(self, task: Task[Any, Any], session: Session, backend: Backend) -> None:
        self.id = new_instance_id()
        self.task = task
        self.session = session
        self._backend = backend
        self._lock = threading.Lock()
        self._state = "created"
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = {}
        self.future = Future(task.name, self.id, canceller=self._cancel)
        reporter = FutureReporter(self.future)
        self.control = TaskControl(task.name, self.id, reporter=reporter, stop_event=StopSignal())
        session._register(self)

    @property
    def status(self) -> TaskStatus:
        """The future's status: ``pending`` (not started yet, or waiting for a slot), ``running``, ..."""
        return self.future.status

    # -- Numerous Tasks' names for the same things ---------------------------------------------------
    @property
    def task_definition(self) -> Task[Any, Any]:
        """The task this is an instance of (:attr:`task`), by its name in Numerous Tasks."""
        return self.task

    @property
    def task_control(self) -> TaskControl:
        """The instance's TaskControl (:attr:`control`), by its name in Numerous Tasks."""
        return self.control

    @property
    def is_running(self) -> bool:
        """True from the moment the instance has a ``max_parallel`` slot and is handed to its backend until
        its future is done: not before ``start()``, nor while it waits for a slot. Once ``future.done`` is
        True, this is False (so ``result()`` returning means ``is_running`` is over), also for a cancelled
        instance whose function is still winding down (it keeps its slot until it returns).
        """
        return self._state == "launched" and not self.future.done

    @property
    def backend_name(self) -> str:
        return self._backend.name

    def start(self, *args: Any, **kwargs: Any) -> Future:
        """Run the task with these arguments; returns its Future at once. An instance starts only once.

        Over the task's ``max_parallel`` in this session the instance waits as ``pending`` until a slot
        frees, or, in a ``Session(on_limit="raise")``, this raises :class:`MaxInstancesReachedError`.
        """
        with self._lock:
            if self._state != "created":
                what = "was cancelled" if self.future.status == "cancelled" else "was already started"
                raise TaskError(
                    f"task {self.task.name!r}: instance {self.id} {what}; create a new one with "
                    f"{self.task.name}.instance()"
                )
            self._state = "queued"
        self._args, self._kwargs = args, kwargs
        try:
            check_start = getattr(self._backend, "check_start", None)
            if check_start is not None:  # e.g. the remote backend refuses arguments that are not JSON
                check_start(self.task, args, kwargs)
            admitted = self.session._admit(self)
        except BaseException:
            with self._lock:
                self._state = "created"
            raise
        if admitted:
            self._launch()
        return self.future

    def stop(self) -> None:
        """Ask the task to stop: ``tc.should_stop`` becomes True; a normal return is still its result."""
        self.control.request_stop()

    # -- lifecycle (runtime and backends) ----------------------------------------------------------
    def _launch(self) -> None:
        with self._lock:
            self._state = "launched"
        try:
            self._backend.submit(InstanceRun(self))
        except BaseException as error:  # the backend could not take it: the future carries the error
            self._complete(None, error)

    def _cancel(self) -> bool:
        with self._lock:
            state = self._state
            if state == "created":
                self._state = "finished"
        if state == "created":
            return self.future._set_cancelled()
        if state == "queued" and self.session._withdraw(self):
            with self._lock:
                self._state = "finished"
            cancelled = self.future._set_cancelled()
            self.session._finished(self)
            return cancelled
        if not self.future._set_cancelled():
            return False
        self.control.request_stop()
        return True

    def _complete(self, value: Any, error: BaseException | None) -> None:
        """The function has returned (or will never run): free the slot, settle the future, finish."""
        successor = self.session._release_slot(self)
        if successor is not None:
            successor._launch()
        if error is None:
            self.future._set_result(value)
        else:
            self.future._set_error(error)
        with self._lock:
            self._state = "finished"
        self.session._finished(self)

    def __repr__(self) -> str:
        return f"<TaskInstance task={self.task.name!r} id={self.id} status={self.status.value!r}>"


class InstanceRun:
    """What a backend sees of one instance it runs: the call to make and where to report.

    The backend calls :meth:`begin` first (False: the instance was cancelled before it ran; drop it),
    then exactly one of :meth:`succeed` or :meth:`fail` once the function has really returned. Progress,
    logs and status go through :attr:`control` (a backend running the function elsewhere replays the
    remote calls on it); :meth:`on_stop` tells it when to forward a stop request.
    """

    __slots__ = ("_instance", "_reported")

    def __init__(self, instance: TaskInstance) -> None:
        self._instance = instance
        self._reported = False

    @property
    def task(self) -> Task[Any, Any]:
        return self._instance.task

    @property
    def args(self) -> tuple[Any, ...]:
        return self._instance._args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self._instance._kwargs

    @property
    def control(self) -> TaskControl:
        return self._instance.control

    @property
    def instance_id(self) -> str:
        return self._instance.id

    @property
    def session(self) -> Session:
        return self._instance.session

    @property
    def cancelled(self) -> bool:
        """True once the future was cancelled: the function should be ended, its result is unwanted."""
        return self._instance.future.status == "cancelled"

    def begin(self) -> bool:
        """Mark the instance running; False (and the run is closed) if it was cancelled while pending."""
        if self._instance.future._set_running():
            return True
        self._report(None, None)
        return False

    def succeed(self, value: Any) -> None:
        self._report(value, None)

    def fail(self, error: BaseException) -> None:
        self._report(None, error)

    def on_stop(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` once when a stop is requested (at once if it already was)."""
        signal = self._instance.control._stop
        assert isinstance(signal, StopSignal)
        signal.add_listener(listener)

    def call_in_session(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` in a fresh context where the instance's session is current.

        So a task may start instances of its own, and nothing else of the starter's context leaks in (a
        workflow's step scope, for one, must not).
        """
        return contextvars.Context().run(self._enter_and_call, fn)

    def _enter_and_call(self, fn: Callable[[], T]) -> T:
        enter_session_context(self._instance.session)
        current_origin.set(origin(task=self.task.name, instance_id=self.instance_id))  # on its log records
        return fn()

    def _report(self, value: Any, error: BaseException | None) -> None:
        if self._reported:
            raise RuntimeError(f"backend reported the outcome of instance {self.instance_id} twice")
        self._reported = True
        self._instance._complete(value, error)


def create_instance(task: Task[Any, Any]) -> TaskInstance:
    """``task.instance()``: a new instance in the current session, run by the configured backend.

    The backend is resolved first, so a bad ``TASKLOOM_BACKEND`` fails here with nothing registered.
    """
    session = current_session()
    if session is None:
        raise SessionNotFoundError(
            f"{task.name}.instance() needs a session: call it inside `with Session():` (or `async with "
            f"Session():`); to simply run the task, call it directly: {task.name}(...)"
        )
    global _backend_from_settings
    if _backend_from_settings is None:  # backends sit above the runtime: import on first use
        from taskloom.backends import backend_from_settings

        _backend_from_settings = backend_from_settings
    return TaskInstance(task, session, _backend_from_settings())


_backend_from_settings: Callable[[], Backend] | None = None
