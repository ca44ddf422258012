"""Task, the object ``@task`` makes: direct call, ``.map``, ``.instance()``, ``.with_options()``.

One Task serves both worlds. Called while a workflow runs, it becomes a durable step (an awaitable whose
outcome is recorded and replayed); called anywhere else, it behaves like its function with the task's
policy (retry, timeout, fallback, rollback) applied.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from taskloom import masking, policy
from taskloom.context import current_scope
from taskloom.errors import TaskDefinitionError
from taskloom.options import TaskOptions
from taskloom.runtime.control import TaskControl

if TYPE_CHECKING:
    from taskloom.runtime.instance import TaskInstance

P = ParamSpec("P")
R = TypeVar("R")

_MAP_THREADS = 32


def _annotation_is_task_control(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return annotation.strip("'\" ").rsplit(".", 1)[-1] == "TaskControl"
    return isinstance(annotation, type) and issubclass(annotation, TaskControl)


class Task(Generic[P, R]):
    """A function made into a task. Call it, ``map`` it, or run it as an ``instance()`` in a session."""

    def __init__(self, fn: Callable[..., Any], options: TaskOptions) -> None:
        if isinstance(fn, Task):
            fn = fn.function
        if not callable(fn):
            raise TaskDefinitionError(f"@task must decorate a function, got {fn!r}")
        # First, so that attributes of the function (a `name`, `options`, ...) cannot overwrite the task's.
        functools.update_wrapper(self, fn)
        self.fn: Callable[..., Any] = fn
        self.options = options
        self.name: str = options.name or str(getattr(fn, "__name__", type(fn).__name__))
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        parameters = list(self.signature.parameters.values())
        self.wants_control = bool(parameters) and _annotation_is_task_control(parameters[0].annotation)
        accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        if options.secret_requests and "secrets" not in self.signature.parameters and not accepts_kwargs:
            raise TaskDefinitionError(
                f"task {self.name!r}: option 'secret_requests' needs the function to accept a 'secrets' "
                "parameter (for example `secrets: dict = {}`)"
            )

    @property
    def function(self) -> Callable[..., Any]:
        """The decorated function itself."""
        return self.fn

    # -- calling -----------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        scope = current_scope.get()
        if scope is not None:
            return scope.call(self, args, kwargs)
        if self.is_async:
            return policy.call_async(self, args, kwargs, control=self._direct_control())
        return policy.call_sync(self, args, kwargs, control=self._direct_control())

    def _direct_control(self) -> TaskControl | None:
        return TaskControl(self.name) if self.wants_control else None

    def prepare_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments the function really receives: TaskControl first, secrets resolved.

        Bad arguments fail here, before any attempt, with a TypeError naming the task (not retried).
        A missing secret fails here too, naming the secret, before the body runs. Resolved secret values
        are registered in the current secret scope (:mod:`taskloom.masking`), so everything written
        while this run lasts shows them as ``***``.
        """
        if self.wants_control:
            args = (control if control is not None else TaskControl(self.name), *args)
        if self.options.secret_requests:
            from taskloom.secret_store import default_secret_store

            secrets = default_secret_store().resolve(self.options.secret_requests, owner=f"task {self.name!r}")
            masking.register_secrets(secrets.values())
            kwargs = {**kwargs, "secrets": secrets}
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"task {self.name!r} called with bad arguments: {error}") from None
        return args, kwargs

    def map(self, items: Iterable[Any]) -> Any:
        """One call per item, run concurrently, results in order.

        In a workflow: an awaitable of the list (one durable step per item). Outside: a list for a sync
        task (run on threads), a coroutine of the list for an async one.
        """
        items = list(items)
        scope = current_scope.get()
        if scope is not None:
            return scope.map(self, items)
        if self.is_async:
            return self._amap(items)
        if len(items) <= 1:
            return [self(item) for item in items]  # type: ignore[call-arg]
        with ThreadPoolExecutor(min(_MAP_THREADS, len(items)), thread_name_prefix=f"taskloom-map-{self.name}") as pool:
            return list(pool.map(self, items))

    async def _amap(self, items: list[Any]) -> list[Any]:
        return list(await asyncio.gather(*(self(item) for item in items)))  # type: ignore[call-arg]

    # -- instances and options ---------------------------------------------------------------------
    def instance(self) -> TaskInstance:
        """A new instance of this task in the current session (see :class:`taskloom.Session`)."""
        from taskloom.runtime.instance import create_instance

        return create_instance(self)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with ``options`` merged over its own."""
        return Task(self.fn, self.options.merged(f"task {self.name!r}", **options))

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Methods decorated with @task still bind `self`.
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle by reference to the module-level task, so instances can cross into worker processes.
        return (_load_task, (self.fn.__module__, self.fn.__qualname__, self.options))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"


def _load_task(module: str, qualname: str, options: TaskOptions) -> Task[Any, Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn = target.fn if isinstance(target, Task) else target
    return Task(fn, options)


class _Decorate(Protocol):
    """What ``@task(**options)`` returns. A leading ``TaskControl`` parameter is dropped from the task's
    type, because taskloom passes it and callers never do (so a user's type checker accepts ``t(3)``)."""

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskControl, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _TaskDecorator:
    """``@task``, ``@task(**options)`` and ``@task.with_options(**options)``, on sync and async functions."""

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskControl, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: None = None, /, **options: Any) -> _Decorate: ...

    def __call__(self, fn: Any = None, /, **options: Any) -> Any:
        if fn is None:
            return self.with_options(**options)
        if options:
            raise TaskDefinitionError("use @task(**options) or @task.with_options(**options), not both forms")
        return self._make(fn, {})

    def with_options(self, **options: Any) -> _Decorate:
        owner = f"task {options.get('name')!r}" if options.get("name") else "task"
        validated = TaskOptions.build(owner, **options)

        def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
            return Task(fn, validated)

        return cast(_Decorate, decorate)

    @staticmethod
    def _make(fn: Any, options: dict[str, Any]) -> Task[Any, Any]:
        if not callable(fn):
            raise TaskDefinitionError(
                f"@task got {fn!r} where a function was expected; pass options by keyword: @task(name=...)"
            )
        return Task(fn, TaskOptions.build(f"task {getattr(fn, '__name__', fn)!r}", **options))


task = _TaskDecorator()
