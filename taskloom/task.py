"""Task, the object ``@task`` makes: direct call, ``.map``, ``.instance()``, ``.with_options()``.

One Task serves both worlds. Called while a workflow runs, it becomes a durable step (an awaitable whose
outcome is recorded and replayed); called anywhere else, it behaves like its function with the task's
policy (retry, timeout, fallback, rollback) applied.

Code written for Flux or Numerous Tasks reads a task's options as attributes (``t.func``, ``t.timeout``,
``t.config.max_parallel``, ...) and checks ``isinstance(t, task)``: both work, as read-only views of the
task's :class:`TaskOptions` (``with_options`` makes a changed copy).
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
from collections.abc import Callable, Iterable

from taskloom import masking
from taskloom.context import current_scope
from taskloom.errors import TaskDefinitionError
from taskloom.lazy import module_getattr
from taskloom.options import OutputStorage, TaskOptions
from taskloom.signatures import NO_ANNOTATION, is_coroutine_function, parameter_facts
from taskloom.task_running import inside_task
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import inspect
    from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, cast, overload

    from taskloom.runtime.config import TaskConfig as TaskConfig
    from taskloom.runtime.control import TaskControl
    from taskloom.runtime.instance import TaskInstance
else:
    from taskloom.typing_free import Generic, Literal, ParamSpec, Protocol, TypeVar, cast, overload

#: ``TaskConfig`` is defined in :mod:`taskloom.runtime.config`, loaded from here on first use
__getattr__ = module_getattr(globals(), {"TaskConfig": "taskloom.runtime.config"})

P = ParamSpec("P")
R = TypeVar("R")

_MAP_THREADS = 32


def _annotation_is_task_control(annotation: Any) -> bool:
    if annotation is NO_ANNOTATION:
        return False
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return annotation.strip("'\" ").rsplit(".", 1)[-1] == "TaskControl"
    # The class itself: then its module is loaded (a task taking none never loads it, see _new_control).
    control = sys.modules.get("taskloom.runtime.control")
    return control is not None and isinstance(annotation, type) and issubclass(annotation, control.TaskControl)


def _new_control(name: str) -> TaskControl:
    """A TaskControl for a task that takes one (taskloom.runtime.control, imported then)."""
    from taskloom.runtime.control import TaskControl

    return TaskControl(name)


def _control_index(leading: tuple[tuple[str, Any], ...]) -> int | None:
    """Where the TaskControl goes: the first parameter, or the one after ``self``/``cls`` of a method
    (as Numerous finds it: by the name, since a function in a class body is not yet a method).
    ``leading``: the first two parameters' names and annotations."""
    if leading and _annotation_is_task_control(leading[0][1]):
        return 0
    if len(leading) > 1 and leading[0][0] in ("self", "cls") and _annotation_is_task_control(leading[1][1]):
        return 1
    return None


#: How a task defined in a class binds: like a method (the default), a classmethod or a staticmethod.
Binding = Literal["method", "class", "static"]


class Task(Generic[P, R]):
    """A function made into a task. Call it, ``map`` it, or run it as an ``instance()`` in a session.

    Every option is readable as an attribute, as in Flux (``t.retry_max_attempts``, ``t.timeout``,
    ``t.fallback``, ``t.cache``, ...), and ``t.func`` is the decorated function.
    """

    def __init__(self, fn: Callable[..., Any], options: TaskOptions) -> None:
        binding: Binding = "method"
        if isinstance(fn, Task):
            binding = fn.binding
            fn = fn.function
        elif isinstance(fn, classmethod | staticmethod):
            # `@task` over `@classmethod`/`@staticmethod`: the task binds as that decorator would.
            binding = "class" if isinstance(fn, classmethod) else "static"
            fn = fn.__func__
        if not callable(fn):
            raise TaskDefinitionError(f"@task must decorate a function, got {fn!r}")
        # First, so that attributes of the function (a `name`, `options`, ...) cannot overwrite the task's.
        functools.update_wrapper(self, fn)
        self.fn: Callable[..., Any] = fn
        self.options = options
        self.binding: Binding = binding
        self.name: str = options.name or str(getattr(fn, "__name__", type(fn).__name__))
        self.is_async = is_coroutine_function(fn)
        facts = parameter_facts(fn)  # what inspect.signature says, without inspect for a plain function
        self._signature: inspect.Signature | None = None
        #: the position of the TaskControl parameter among the function's (0, or 1 after self/cls), or None
        self.control_index = _control_index(facts.leading)
        self.wants_control = self.control_index is not None
        #: how many positional arguments always bind (no defaults, no *args/**kwargs, none keyword-only);
        #: a call passing exactly that many and no keywords needs no ``signature.bind`` (a step's hot path)
        self._exact_arity = facts.exact_arity
        #: a task with none of the options a step's general path exists for, nor a TaskControl: in a workflow,
        #: a step of it awaited by the workflow's own task takes the fast path (ExecutionRun.plain_start)
        self.plain = not self.wants_control and options.is_plain
        #: for a task bound to an object (``obj.method.instance()``): the unbound task and the object
        self._bound: tuple[Task[Any, Any], Any] | None = None
        if options.secret_requests and "secrets" not in facts.names and not facts.accepts_kwargs:
            raise TaskDefinitionError(
                f"task {self.name!r}: option 'secret_requests' needs the function to accept a 'secrets' "
                "parameter (for example `secrets: dict = {}`)"
            )

    @property
    def function(self) -> Callable[..., Any]:
        """The decorated function itself."""
        return self.fn

    @property
    def signature(self) -> inspect.Signature:
        """The function's ``inspect.signature``, read on first use: a call whose arguments do not fit the
        common case binds through it, and a cache key is made from it (``import inspect`` then)."""
        if self._signature is None:
            import inspect

            self._signature = inspect.signature(self.fn)
        return self._signature

    # -- Flux's and Numerous's attributes: read-only views of the options ---------------------------
    @property
    def func(self) -> Callable[..., Any]:
        """The decorated function (Flux's name for it)."""
        return self.fn

    @property
    def retry_max_attempts(self) -> int:
        return self.options.retry_max_attempts

    @property
    def retry_delay(self) -> float:
        return self.options.retry_delay

    @property
    def retry_backoff(self) -> float:
        return self.options.retry_backoff

    @property
    def retry_on(self) -> tuple[type[Exception], ...]:
        """The exception types that are retried; any other error fails the task without retries."""
        return self.options.retry_on

    @property
    def retry_jitter(self) -> float:
        return self.options.retry_jitter

    @property
    def retry_max_delay(self) -> float | None:
        return self.options.retry_max_delay

    @property
    def timeout(self) -> float | None:
        """Seconds per attempt; None (or 0) for none."""
        return self.options.timeout

    @property
    def fallback(self) -> Callable[..., Any] | None:
        return self.options.fallback

    @property
    def rollback(self) -> Callable[..., Any] | None:
        return self.options.rollback

    @property
    def secret_requests(self) -> list[str]:
        """The secret names, as a new list (Flux's type; the task keeps its own tuple)."""
        return list(self.options.secret_requests)

    @property
    def output_storage(self) -> OutputStorage | None:
        """The custom output storage, or None for the default (inline, in the event store)."""
        return self.options.output_storage

    @property
    def max_parallel(self) -> int:
        return self.options.max_parallel

    @property
    def size(self) -> str:
        return self.options.size

    @property
    def cache(self) -> bool:
        """Whether results are cached by argument (Flux's ``cache=True``; see :mod:`taskloom.cache`)."""
        return self.options.cache

    @property
    def cache_ttl(self) -> float | None:
        return self.options.cache_ttl

    @property
    def config(self) -> TaskConfig:
        """Numerous's ``TaskConfig`` of this task: ``name``, ``max_parallel``, ``size``."""
        from taskloom.runtime.config import TaskConfig  # only Numerous-style code asks: loaded then

        return TaskConfig(max_parallel=self.options.max_parallel, size=self.options.size, name=self.name)

    @property
    def expects_task_control(self) -> bool:
        """Whether the function takes a TaskControl (first, or right after ``self``/``cls``)."""
        return self.wants_control

    @property
    def definition_name(self) -> str:
        """The task's name (Numerous's name for it)."""
        return self.name

    def clear_cache(self) -> int:
        """Forget this task's cached results (``cache=True``) in the default store; returns how many.

        The cache is keyed by the task's name and arguments, not its code: clear it when a change to the
        function makes earlier results wrong. ``taskloom cache clear NAME`` does the same from a shell.
        """
        from taskloom import cache

        return cache.clear(self.name)

    # -- calling -----------------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._call(args, kwargs)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], stacklevel: int = 4) -> Any:
        scope = current_scope.get()
        if scope is not None:
            return scope.call(self, args, kwargs)
        if not inside_task():
            # Imported here, not at the top: sessions (and so this check) are only met in a direct call,
            # and a workflow run should not load them (tests/perf/test_import.py).
            from taskloom.runtime.session import current_session

            session = current_session()
            if session is not None:
                self._warn_direct_in_session(session.name, stacklevel)
        from taskloom import policy  # a direct call's: a workflow's plain steps never load the policy

        if self.is_async:
            return policy.call_async(self, args, kwargs, control=self._direct_control())
        return policy.call_sync(self, args, kwargs, control=self._direct_control())

    def _warn_direct_in_session(self, session: str, stacklevel: int) -> None:
        """A direct call inside ``with Session():`` runs here and now, outside the session's tracking and
        its ``max_parallel``, as Numerous does; it warns because that is rarely what was meant there. A
        task called from inside a running task is part of that run and does not warn."""
        warnings.warn(
            f"Task {self.name!r} is executing directly despite active session {session!r}: a direct call "
            "bypasses the session's tracking and max_parallel. Use task.instance().start() for "
            f"session-managed execution: {self.name}.instance().start(...)",
            UserWarning,
            stacklevel=stacklevel,
        )

    def _direct_control(self) -> TaskControl | None:
        return _new_control(self.name) if self.wants_control else None

    def prepare_arguments(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], control: TaskControl | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments the function really receives: TaskControl first, secrets resolved.

        Bad arguments fail here, before any attempt, with a TypeError naming the task (not retried).
        A missing secret fails here too, naming the secret, before the body runs. Resolved secret values
        are registered in the current secret scope (:mod:`taskloom.masking`), so everything written
        while this run lasts shows them as ``***``.
        """
        index = self.control_index
        if index is not None:
            control = control if control is not None else _new_control(self.name)
            args = (*args[:index], control, *args[index:]) if index else (control, *args)
        if self.options.secret_requests:
            from taskloom.secret_store import default_secret_store

            secrets = default_secret_store().resolve(self.options.secret_requests, owner=f"task {self.name!r}")
            masking.register_secrets(secrets.values())
            kwargs = {**kwargs, "secrets": secrets}
        if kwargs or len(args) != self._exact_arity:
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
        from concurrent.futures import ThreadPoolExecutor  # only a map outside a workflow needs it

        with ThreadPoolExecutor(min(_MAP_THREADS, len(items)), thread_name_prefix=f"taskloom-map-{self.name}") as pool:
            return list(pool.map(self, items))

    async def _amap(self, items: list[Any]) -> list[Any]:
        import asyncio  # not at the top: ``import taskloom`` does not load asyncio (loop_free)

        return list(await asyncio.gather(*(self(item) for item in items)))  # type: ignore[call-arg]

    # -- instances and options ---------------------------------------------------------------------
    def instance(self) -> TaskInstance:
        """A new instance of this task in the current session (see :class:`taskloom.Session`)."""
        from taskloom.runtime.instance import create_instance

        return create_instance(self)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with ``options`` merged over its own."""
        return Task(self, self.options.merged(f"task {self.name!r}", **options))  # keeps how it binds

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # A task in a class binds like the method it decorates: `self` for a plain one (the TaskControl,
        # if any, then goes right after it), the class for `@task @classmethod`, nothing for a static one.
        if self.binding == "static":
            return self
        if self.binding == "class":
            return BoundTask(self, objtype if objtype is not None else type(obj))
        if obj is None:
            return self
        return BoundTask(self, obj)

    def bind(self, obj: Any) -> Task[Any, Any]:
        """This task with ``obj`` as its first argument: a task of its own, so it can be an ``instance()``.

        Its name and options are this task's (``max_parallel`` counts both together).
        """
        bound: Task[Any, Any] = Task(types.MethodType(self.fn, obj), self.options)
        bound._bound = (self, obj)
        return bound

    def __reduce__(self) -> tuple[Any, ...]:
        if self._bound is not None:  # a bound task travels as its unbound task and the object
            return (_bind_task, self._bound)
        # Pickle by reference to the module-level task, so instances can cross into worker processes.
        return (_load_task, (self.fn.__module__, self.fn.__qualname__, self.options))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"


class BoundTask:
    """A task read from an object or class (``obj.method``): calls pass the object first, as a bound
    method's would, and ``instance()`` makes an instance of the bound task (:meth:`Task.bind`)."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, task: Task[Any, Any], obj: Any) -> None:
        self.__func__ = task
        self.__self__ = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__._call((self.__self__, *args), kwargs)

    def instance(self) -> TaskInstance:
        """A new instance of the bound task in the current session."""
        return self.__func__.bind(self.__self__).instance()

    def map(self, items: Iterable[Any]) -> Any:
        return self.__func__.bind(self.__self__).map(items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle probe dunders before __func__ is set
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundTask) and other.__func__ is self.__func__ and other.__self__ is self.__self__

    def __hash__(self) -> int:
        return hash((id(self.__func__), id(self.__self__)))

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


def _bind_task(task: Task[Any, Any], obj: Any) -> Task[Any, Any]:
    return task.bind(obj)


def _load_task(module: str, qualname: str, options: TaskOptions) -> Task[Any, Any]:
    import importlib
    from inspect import getattr_static

    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        # Statically, so a task in a class is found as itself, not bound to the class by __get__.
        target = getattr_static(target, part)
        if isinstance(target, classmethod | staticmethod):
            target = target.__func__
    return Task(target, options)


class _Decorate(Protocol):
    """What ``@task(**options)`` returns. A leading ``TaskControl`` parameter is dropped from the task's
    type, because taskloom passes it and callers never do (so a user's type checker accepts ``t(3)``)."""

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskControl, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class _TaskType(type):
    """The metaclass of :class:`task`: ``isinstance(t, task)`` holds for every Task, as in Flux, where the
    decorator is the class of the tasks it makes."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, Task)

    def __subclasscheck__(cls, subclass: Any) -> bool:
        return isinstance(subclass, type) and issubclass(subclass, Task)


class task(metaclass=_TaskType):
    """``@task``, ``@task(**options)`` and ``@task.with_options(**options)``, on sync and async functions.

    A class (whose calls return a :class:`Task`, never a ``task``) so that ``isinstance(t, task)`` works
    and type checkers accept it. Options are validated here, when the decorator is written.
    """

    # mypy wants __new__ to return the class's own instances; these return Tasks on purpose (and user code
    # is typed by them all the same).
    @overload
    def __new__(cls, fn: Callable[Concatenate[TaskControl, P], R], /) -> Task[P, R]: ...  # type: ignore[misc]
    @overload
    def __new__(cls, fn: Callable[P, R], /) -> Task[P, R]: ...  # type: ignore[misc]
    @overload
    def __new__(cls, fn: None = None, /, **options: Any) -> _Decorate: ...  # type: ignore[misc]

    def __new__(cls, fn: Any = None, /, **options: Any) -> Any:
        if fn is None:
            return cls.with_options(**options)
        if options:
            raise TaskDefinitionError("use @task(**options) or @task.with_options(**options), not both forms")
        return _make(fn)

    @staticmethod
    def with_options(**options: Any) -> _Decorate:
        owner = f"task {options.get('name')!r}" if options.get("name") else "task"
        validated = TaskOptions.build(owner, **options)

        def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
            return Task(fn, validated)

        return cast(_Decorate, decorate)


def _make(fn: Any) -> Task[Any, Any]:
    if not callable(fn) and not isinstance(fn, classmethod | staticmethod):
        raise TaskDefinitionError(
            f"@task got {fn!r} where a function was expected; pass options by keyword: @task(name=...)"
        )
    return Task(fn, TaskOptions.build(f"task {getattr(fn, '__name__', fn)!r}"))
