"""Where the attempts of step bodies and task instances run: in this process (the default), or on Dask.

By default a workflow's sync step bodies run on threads of the process that drives the workflow, and a
task instance on a thread of the ``local`` backend. With a Dask executor, each *attempt* of those bodies
runs on a Dask cluster instead, while everything else stays here: the driver, the policy (retries,
timeouts, fallback, rollback, which run in this process), secrets resolution and every write to the
store. Choose it with ``TASKLOOM_EXECUTOR=dask://HOST:PORT`` or in code::

    from distributed import Client
    import taskloom.executors

    taskloom.executors.use_dask(Client("tcp://scheduler:8786"))   # for the rest of the process
    with taskloom.executors.use_dask(client):                     # or only inside the block
        my_workflow.run(data)

What goes to Dask: the attempts of sync task bodies that are workflow steps (sequential awaits, ``map``,
``parallel``, graph nodes alike) and of task instances of the ``local`` backend (sync or async). What
stays here: async step bodies (their task calls are steps of the workflow, so they must run where the
workflow is), fallbacks and rollbacks, direct calls outside a workflow, and the ``local-process`` and
``remote`` backends, which have their own processes. See :mod:`taskloom.executors.dask` for how an
attempt crosses to a Dask worker and back.

This module never imports Dask: ``taskloom.executors.dask`` is imported when a Dask executor is chosen.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from taskloom.settings import Settings

if TYPE_CHECKING:
    from taskloom.runtime.control import TaskControl
    from taskloom.task import Task

EXECUTOR_VARIABLE = "TASKLOOM_EXECUTOR"


class AttemptExecutor(Protocol):
    """Runs one attempt of a task's function somewhere else; the caller's policy decides what follows."""

    @property
    def name(self) -> str: ...

    async def run_attempt(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> Any:
        """Call ``task.fn(*args, **kwargs)`` once (``control`` goes in the task's TaskControl parameter)
        and return its value or raise its exception; cancelling the call abandons the attempt."""
        ...

    def close(self) -> None: ...


class RemoteAttempts:
    """Stands in for a task in ``policy.call_async``: the same name, options and arguments, but each attempt
    is an async call that runs on ``executor``. (The policy reads only ``name``, ``options``, ``is_async``,
    ``fn`` and ``prepare_arguments``.) The TaskControl the policy puts in the arguments stays here; the
    executor wires a control on the other side to it."""

    is_async = True

    def __init__(self, task: Task[Any, Any], executor: AttemptExecutor) -> None:
        self.name = task.name
        self.options = task.options
        self.wants_control = task.wants_control
        # read by the cache key (taskloom.cache.argument_key), so a cached call keys as the task's own
        self.signature = task.signature
        self.control_index = task.control_index
        self._task = task
        self._executor = executor

    def prepare_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return self._task.prepare_arguments(args, kwargs, control)

    async def fn(self, *args: Any, **kwargs: Any) -> Any:
        index = self.control_index
        control = None
        if index is not None:
            control, args = args[index], (*args[:index], *args[index + 1 :])
        return await self._executor.run_attempt(self._task, args, kwargs, control)


class _Registry:
    """The one global: the executor chosen in code (``use_dask``), or the one TASKLOOM_EXECUTOR made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chosen: AttemptExecutor | None = None
        #: (the variable's raw value, the executor made from it), so a change of the variable is seen
        self.from_env: tuple[str | None, AttemptExecutor | None] = (None, None)
        self.owned: list[AttemptExecutor] = []


_registry = _Registry()


def current_executor() -> AttemptExecutor | None:
    """The executor attempts go to now, or None to run them in this process.

    Read when a workflow run or an instance starts, so it must be cheap: the variable is parsed (through
    :class:`Settings`) and its executor made only when its raw value changes.
    """
    chosen = _registry.chosen
    if chosen is not None:
        return None if chosen is _LOCAL else chosen
    raw = os.environ.get(EXECUTOR_VARIABLE) or None
    seen, executor = _registry.from_env
    if seen == raw:
        return executor
    with _registry.lock:
        seen, executor = _registry.from_env
        if seen != raw:
            address = Settings.from_env().executor
            executor = None if address is None else _connect(address)
            if executor is not None:
                _registry.owned.append(executor)
            _registry.from_env = (raw, executor)
    return executor


def _connect(address: str) -> AttemptExecutor:
    from taskloom.executors.dask import connect_dask  # only now: Dask is an optional extra

    return connect_dask(address)


def use_dask(client: Any = None) -> _Chosen:
    """Run step bodies and instance attempts on Dask through ``client`` (a ``distributed.Client``, or a
    scheduler address such as ``"tcp://host:8786"`` for a client taskloom makes and closes; ``None`` for
    the client of the current Dask context, ``distributed.get_client()``).

    Takes effect at once, for the whole process and over ``TASKLOOM_EXECUTOR``; used as a context manager
    (``with use_dask(client):``), the executor that was in use before comes back at the end of the block.
    """
    from taskloom.executors.dask import DaskExecutor, connect_dask

    executor = connect_dask(client) if isinstance(client, str) else DaskExecutor.for_client(client)
    return _choose(executor, owned=isinstance(client, str))


def use_local() -> _Chosen:
    """Run attempts in this process again (as with no ``TASKLOOM_EXECUTOR``), also over the variable."""
    return _choose(_LOCAL, owned=False)


class _Local:
    """Chosen by ``use_local()``: :func:`current_executor` answers None for it."""

    name = "local"


_LOCAL: Any = _Local()


class _Chosen:
    """What ``use_dask``/``use_local`` return: the executor now in use; as a context manager, it puts the
    one before it back at the end of the block."""

    def __init__(self, executor: Any, restore: Callable[[], None]) -> None:
        self.executor = executor
        self._restore = restore

    def __enter__(self) -> Any:
        return self.executor

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
        close = getattr(self.executor, "close", None)
        if close is not None:  # its thread and subscription; a client passed in stays open
            close()


def _choose(executor: Any, *, owned: bool) -> _Chosen:
    with _registry.lock:
        before = _registry.chosen
        _registry.chosen = executor
        if owned:
            _registry.owned.append(executor)

    def restore() -> None:
        with _registry.lock:
            _registry.chosen = before

    return _Chosen(executor, restore)


@atexit.register
def close_executors() -> None:
    """Close the executors taskloom made (clients to addresses it was given); a client passed in by the
    program is the program's to close."""
    with _registry.lock:
        owned, _registry.owned = _registry.owned, []
        _registry.chosen = None
        _registry.from_env = (None, None)
    for executor in owned:
        try:
            executor.close()
        except BaseException:  # at exit: a cluster already gone must not spoil the exit
            pass
