"""Session: the scope that owns task instances and counts their ``max_parallel`` slots.

The current session is carried in a ``contextvars`` variable, so it is per thread and per asyncio task:
``with Session():`` in one thread (or task) is invisible to the others. Slots are counted per
(session, task name) under one lock, so the limit holds however many threads start instances. An instance
over the limit waits in a FIFO queue (status ``"pending"``) and takes the slot of the next instance of the
same task that finishes; with ``Session(on_limit="raise")`` its ``start`` raises instead.

A session is active from ``__enter__`` to the end of ``__exit__``, once at a time: entering it again while
it is active (nested, or from another thread or task) is a :class:`SessionError`, as in Numerous Tasks.
Threads and tasks started inside the block see it without entering it (see :class:`Session`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from taskloom.errors import MaxInstancesReachedError, SessionError
from taskloom.ids import uuid4_hex

if TYPE_CHECKING:
    from taskloom.runtime.instance import TaskInstance

OnLimit = Literal["queue", "raise"]
ON_LIMIT_CHOICES: tuple[str, ...] = ("queue", "raise")

_current_session: contextvars.ContextVar[Session | None]
_current_session = contextvars.ContextVar("taskloom_session", default=None)


def current_session() -> Session | None:
    """The session of this thread or asyncio task, or None outside ``with Session():``."""
    return _current_session.get()


def enter_session_context(session: Session) -> None:
    """Make ``session`` current in the running context (a backend does this in an instance's thread).

    Only for a fresh ``contextvars.Context`` that the caller owns, so nothing needs resetting.
    """
    _current_session.set(session)


@dataclass(slots=True)
class _Slots:
    """One task's slots in one session: how many run, and who waits for a slot (oldest first)."""

    running: int = 0
    waiting: deque[TaskInstance] = field(default_factory=deque)


class Session:
    """Groups related task instances and enforces each task's ``max_parallel`` among them.

    ``with Session(name="batch") as session:`` (or ``async with``) makes it current; ``task.instance()``
    then creates instances in it. Leaving the block waits until every started instance has finished
    (its function has returned); leaving it by an exception first asks them all to stop and cancels
    those still waiting for a slot.

    A thread you start sees the session if it runs in a copy of your context
    (``threading.Thread(target=contextvars.copy_context().run, args=(fn,))``), as ``asyncio`` tasks and
    ``asyncio.to_thread`` do by themselves; a task run as an instance sees the session it runs in.
    """

    def __init__(self, name: str | None = None, session_id: str | None = None, *, on_limit: OnLimit = "queue") -> None:
        if on_limit not in ON_LIMIT_CHOICES:
            raise ValueError(f"Session: option 'on_limit' must be 'queue' or 'raise', got {on_limit!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"Session: option 'name' must be a string or None, got {name!r}")
        if session_id is not None and not (isinstance(session_id, str) and session_id.strip()):
            raise ValueError(f"Session: option 'session_id' must be a non-empty string or None, got {session_id!r}")
        random = uuid4_hex()
        #: your own id (``Session(session_id=...)``: the same id on the remote backend counts ``max_parallel``
        #: across every process using it), else ``session_`` and 32 random hex digits
        self.id = session_id if session_id is not None else f"session_{random}"
        #: as Numerous names a session: ``session_`` and 8 hex digits (the id's first), unless given; a
        #: session given only an id is named by it, so messages name what the caller knows
        self.name = name or (session_id if session_id is not None else f"session_{random[:8]}")
        self.on_limit: OnLimit = on_limit
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._slots: dict[str, _Slots] = {}
        self._active: dict[str, TaskInstance] = {}
        self._created: dict[str, TaskInstance] = {}  # instance id -> instance, every one made in this session
        self._idle_callbacks: list[Callable[[], None]] = []
        self._entered = False
        self._token: contextvars.Token[Session | None] | None = None

    @classmethod
    def current(cls) -> Session | None:
        """The active session of this thread or asyncio task, or None (Numerous's ``Session.current()``)."""
        return _current_session.get()

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Session:
        with self._lock:
            if self._entered:
                raise SessionError(
                    f"session {self.name!r} is already active: a session is entered once at a time; code inside "
                    "its block (and threads and tasks started there) already sees it, so use it as it is, or "
                    "enter a new Session()"
                )
            self._entered = True
            self._token = _current_session.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None:
                self._stop_all()
            self._wait_idle()
        except BaseException:  # interrupted while waiting (Ctrl-C): ask the instances to stop, then go
            self._stop_all()
            raise
        finally:
            self._leave()

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None:
                self._stop_all()
            while not await self._idle_soon():
                pass
        except BaseException:  # the waiting task was cancelled: ask the instances to stop, then go
            self._stop_all()
            raise
        finally:
            self._leave()

    def _leave(self) -> None:
        with self._lock:
            self._entered = False
            token, self._token = self._token, None
        if token is None:
            return
        try:
            _current_session.reset(token)
        except ValueError:
            # Left in another context than the one that entered it, as an async generator's teardown may
            # run in another asyncio task: make sure this one does not keep the session as current.
            if _current_session.get() is self:
                previous = token.old_value
                _current_session.set(None if previous is contextvars.Token.MISSING else previous)

    # -- reading -----------------------------------------------------------------------------------
    @property
    def instances(self) -> list[TaskInstance]:
        """The instances started in this session that have not finished yet (running or pending)."""
        with self._lock:
            return list(self._active.values())

    def running_count(self, task_name: str) -> int:
        """How many instances of the task named ``task_name`` hold a slot in this session right now."""
        with self._lock:
            slots = self._slots.get(task_name)
            return slots.running if slots else 0

    @property
    def tasks(self) -> dict[str, dict[str, TaskInstance]]:
        """Every instance created in this session, by task name and then instance id (Numerous's
        ``Session.tasks``), finished ones included, for as long as the session object lives.

        A copy: changing it changes nothing in the session, and it can be read while instances start.
        """
        grouped: dict[str, dict[str, TaskInstance]] = {}
        for instance in self._created_now():
            grouped.setdefault(instance.task.name, {})[instance.id] = instance
        return grouped

    def get_running_instances_count(self, task_name: str) -> int:
        """How many instances of the task named ``task_name`` are running in this session right now: those
        whose :attr:`TaskInstance.is_running` is True (launched, future not yet done). Instances waiting for
        a ``max_parallel`` slot are not running."""
        if not isinstance(task_name, str):
            raise TypeError(
                f"Session.get_running_instances_count(task_name): task_name must be a task's name (a string), "
                f"got {task_name!r}"
            )
        return sum(1 for instance in self._created_now() if instance.task.name == task_name and instance.is_running)

    def _created_now(self) -> list[TaskInstance]:
        # list() of a dict's values runs in C without calling back into Python, so it is one atomic step
        # against _register's insert in another thread: no lock needed on either side.
        return list(self._created.values())

    # -- waiting and stopping ----------------------------------------------------------------------
    def _stop_all(self) -> None:
        """Cancel instances still waiting for a slot and ask running ones to stop."""
        for instance in self.instances:
            if instance.future.status == "pending":
                instance.future.cancel()
            else:
                instance.stop()

    def _wait_idle(self) -> None:
        with self._idle:
            while self._active:
                self._idle.wait()

    async def _idle_soon(self) -> bool:
        """Wait on the event loop (never blocking it) until no instance is active; True if idle."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # loop closed: nobody waits any more
                pass

        with self._lock:
            if not self._active:
                return True
            self._idle_callbacks.append(wake)
        await waiter
        with self._lock:
            return not self._active

    # -- slot accounting (used by TaskInstance) ----------------------------------------------------
    def _register(self, instance: TaskInstance) -> None:
        """Record a new instance in :attr:`tasks` (it need not ever start).

        One dict store, atomic by itself: taking the session's lock here as well, once more per instance,
        made the worker threads that finish instances (they take it too) wait measurably.
        """
        self._created[instance.id] = instance

    def _admit(self, instance: TaskInstance) -> bool:
        """Register a starting instance; True if it has a slot now, False if it waits in the queue."""
        name = instance.task.name
        limit = instance.task.options.max_parallel
        with self._lock:
            if not self._entered:
                raise SessionError(
                    f"task {name!r}: session {self.name!r} has ended; start instances inside its "
                    "`with Session():` block"
                )
            slots = self._slots.get(name)
            if slots is None:
                slots = self._slots[name] = _Slots()
            if slots.running < limit and not slots.waiting:
                slots.running += 1
                admitted = True
            elif self.on_limit == "raise":
                raise MaxInstancesReachedError(
                    f"task {name!r} already runs {slots.running} instance(s) in session {self.name!r}, its "
                    f"max_parallel limit is {limit}; wait for one to finish, raise max_parallel, or use "
                    "Session(on_limit='queue') to queue instead"
                )
            else:
                slots.waiting.append(instance)
                admitted = False
            self._active[instance.id] = instance
        return admitted

    def _withdraw(self, instance: TaskInstance) -> bool:
        """Take a waiting instance out of its queue (it will never run); False if it is not waiting."""
        with self._lock:
            slots = self._slots.get(instance.task.name)
            if slots is None:
                return False
            try:
                slots.waiting.remove(instance)
            except ValueError:
                return False
            return True

    def _release_slot(self, instance: TaskInstance) -> TaskInstance | None:
        """Free the slot of an instance whose function has returned, or hand it to the next in line.

        Returns the waiting instance that now owns the slot; the caller launches it.
        """
        with self._lock:
            slots = self._slots[instance.task.name]
            if slots.waiting:
                return slots.waiting.popleft()
            slots.running -= 1
            return None

    def _finished(self, instance: TaskInstance) -> None:
        """The instance is over (outcome set, slot released): stop counting it as active."""
        with self._lock:
            self._active.pop(instance.id, None)
            if self._active:
                return
            self._idle.notify_all()
            callbacks, self._idle_callbacks = self._idle_callbacks, []
        for callback in callbacks:
            callback()

    def __repr__(self) -> str:
        return f"<Session {self.name!r} active={len(self._active)} on_limit={self.on_limit!r}>"


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
