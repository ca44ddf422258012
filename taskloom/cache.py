"""Flux's ``cache=True``: a task's successful result, reused across calls and executions.

A task declared ``@task(cache=True)`` (optionally ``cache_ttl=SECONDS``) looks in the store before it
runs: a result cached for the same task name and equal arguments is returned without running the
function (nor its retries, secrets or handlers). After an attempt succeeds, its result is cached. A
result given by the fallback is *not* cached: it stands in for a failure, and the next call should try
the real thing again.

The cache lives in the store (table ``task_cache``), so it outlives the process and is shared by every
worker on the same database. Inside a workflow, a cached hit is still the step's recorded outcome: the
event log is the same as if the function had run, and replay returns the recorded value as always.

Why a hash of a canonical form, not ``hash()`` or the pickle bytes: ``hash()`` of a str changes with every
process (hash randomisation), and so does the order of a set of strings inside a pickle. The key is
sha256 over a type-tagged walk of the arguments in which dict keys and set members are sorted by their
own digests, so equal arguments give the same key in every process and on every machine.

The arguments are bound to the function's signature first (defaults applied), so ``f(1)``, ``f(x=1)``
and, with ``def f(x=1)``, ``f()`` share one entry. The TaskControl is not part of the key (a fixed
stand-in takes its place), nor are the secrets a task resolves: they are added after the key is made.

Clearing: ``my_task.clear_cache()`` (this task) or ``taskloom cache clear [TASK]`` (one task or all;
``--expired`` keeps the entries still in use). The cache is not invalidated when the function's code
changes: clear it when a change makes old results wrong. Two processes that miss at the same moment
both run the function; the cache saves work, it is not a lock.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskloom import serde
from taskloom.context import current_scope
from taskloom.errors import SerializationError
from taskloom.plain_values import dataclass_field_names

if TYPE_CHECKING:
    import hashlib
    import inspect

    from taskloom.store.base import Store
    from taskloom.task import Task

#: how deep the key walk follows nested values before it calls the value cyclic
MAX_DEPTH = 64


def _now() -> float:
    """The clock that decides expiry (a function, so a test can move it instead of sleeping)."""
    return time.time()


def cache_store() -> Store:
    """The store a cached result is read from and written to: the running execution's, else the default.

    Inside a workflow that is the store the execution is recorded in (a test or an app may run workflows
    on a store other than ``TASKLOOM_DATABASE_URL``); a direct call or an instance uses the default store.
    """
    scope = current_scope.get()
    if scope is not None:
        store: Store = scope.run.store
        return store
    from taskloom.store import default_store  # opening a store is the first use's cost, not import's

    return default_store()


# -- the key -----------------------------------------------------------------------------------------
def argument_key(task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The cache key of a call: sha256 (hex) of its bound arguments in canonical form.

    None when the arguments do not fit the function's signature: the call then fails, as without a cache,
    with the TypeError naming the task. An argument the walk cannot read raises SerializationError naming
    the task and the argument.
    """
    # A stand-in for a task (the process backend's) may lack the signature: key the arguments as given.
    signature: inspect.Signature | None = getattr(task, "signature", None)
    control_index: int | None = getattr(task, "control_index", None)
    if signature is None:
        arguments: dict[str, Any] = {"*args": args, **{f"={k}": v for k, v in kwargs.items()}}
    else:
        if control_index is not None:  # a fixed stand-in where taskloom passes the TaskControl
            args = (*args[:control_index], None, *args[control_index:])
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        arguments = bound.arguments
    digest = _sha256(b"taskloom-cache-1")
    for name, value in arguments.items():
        digest.update(_text(name))
        try:
            digest.update(value_digest(value))
        except SerializationError as error:
            raise SerializationError(f"task {task.name!r} (cache=True) argument {name!r}: {error}") from None
    return digest.hexdigest()


def value_digest(value: Any) -> bytes:
    """sha256 of ``value`` in canonical form: equal values (in the sense of their contents) give equal
    digests in every process. Raises SerializationError for a value that cannot be read."""
    digest = _sha256()
    _feed(digest.update, value, 0)
    return digest.digest()


def _sha256(data: bytes = b"") -> hashlib._Hash:
    """A sha256 hash object. hashlib is imported here, on the first cached call, not with taskloom: it
    loads OpenSSL, which a run without ``cache=True`` never needs (tests/perf/test_import.py)."""
    import hashlib

    return hashlib.sha256(data)


def _value_types() -> tuple[type, ...]:
    """The types digested by their ``str``: timedelta, Decimal, UUID. decimal and uuid are imported
    here, on the first such argument, not with taskloom (tests/perf/test_import.py)."""
    import datetime as dt
    from decimal import Decimal
    from uuid import UUID

    return (dt.timedelta, Decimal, UUID)


def _is_date_or_time(value: Any) -> bool:
    """A datetime, date or time. datetime is not imported for it: a value can be one only where it is."""
    dt = sys.modules.get("datetime")
    return dt is not None and isinstance(value, dt.datetime | dt.date | dt.time)


def _text(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"%d:" % len(data) + data


def _type_name(kind: type) -> bytes:
    return _text(f"{kind.__module__}.{kind.__qualname__}")


def _feed(write: Callable[[bytes], Any], value: Any, depth: int) -> None:
    """Write ``value``'s canonical form: a tag, then its contents, each part length-prefixed."""
    if depth > MAX_DEPTH:
        raise SerializationError(f"nested more than {MAX_DEPTH} levels deep (or it contains itself)")
    kind = type(value)
    if value is None or kind is bool:
        write(b"N" if value is None else b"T" if value else b"F")
    elif kind is int:
        write(b"i" + _text(str(value)))
    elif kind is float:
        write(b"f" + _text(value.hex()))
    elif kind is str:
        write(b"s" + _text(value))
    elif kind is bytes or kind is bytearray:
        write(b"b" + b"%d:" % len(value) + bytes(value))
    elif kind is list or kind is tuple:
        write((b"l" if kind is list else b"t") + b"%d:" % len(value))
        for item in value:
            _feed(write, item, depth + 1)
    elif kind is dict:
        pairs = sorted((_digest(k, depth), _digest(v, depth)) for k, v in value.items())
        write(b"d" + b"%d:" % len(pairs) + b"".join(k + v for k, v in pairs))
    elif kind is set or kind is frozenset:
        members = sorted(_digest(item, depth) for item in value)
        write(b"S" + b"%d:" % len(members) + b"".join(members))
    elif isinstance(value, enum.Enum):
        write(b"e" + _type_name(kind) + _text(value.name))
    elif _is_date_or_time(value):
        write(b"D" + _type_name(kind) + _text(value.isoformat()))
    elif isinstance(value, _value_types()):
        write(b"v" + _type_name(kind) + _text(str(value)))
    elif isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        # Classes and functions by name: the same code in another process is the same argument.
        module = getattr(value, "__module__", None) or ""
        write(b"y" + _text(f"{module}.{value.__qualname__}"))
    elif (fields := dataclass_field_names(value)) is not None:
        write(b"c" + _type_name(kind))
        for name in fields:
            write(_text(name))
            _feed(write, getattr(value, name), depth + 1)
    elif callable(getattr(value, "model_dump", None)):  # a pydantic model
        write(b"p" + _type_name(kind))
        _feed(write, value.model_dump(), depth + 1)
    else:
        _feed_reduced(write, value, depth)


def _digest(value: Any, depth: int) -> bytes:
    digest = _sha256()
    _feed(digest.update, value, depth + 1)
    return digest.digest()


def _feed_reduced(write: Callable[[bytes], Any], value: Any, depth: int) -> None:
    """Any other object by what pickling would keep of it (its class, constructor arguments and state),
    walked canonically rather than pickled: a pickle's bytes follow set and dict order, which differ
    between processes. Subclasses of builtins (a NamedTuple, a str subclass) arrive here too; a dict or
    set subclass is keyed in its iteration order, which at worst costs a miss, never a wrong hit."""
    try:
        reduced = value.__reduce_ex__(serde.PROTOCOL)
    except Exception as error:
        raise SerializationError(f"a value of type {type(value).__qualname__} cannot be hashed ({error})") from None
    if isinstance(reduced, str):  # a module-level singleton, pickled by name
        write(b"g" + _type_name(type(value)) + _text(reduced))
        return
    write(b"o" + _type_name(type(value)) + b"%d:" % len(reduced))
    for part in reduced:
        if hasattr(part, "__next__"):  # list and dict items of containers are iterators: read them out
            part = list(part)
        _feed(write, part, depth + 1)


# -- reading and writing -----------------------------------------------------------------------------
#: what :meth:`CachedCall.lookup` returns when nothing usable is cached (None is a result like any other)
MISS: Any = object()


class CachedCall:
    """One call of a ``cache=True`` task: its key, the cached value if any, and how to cache a new one."""

    __slots__ = ("expires_in", "key", "store", "task")

    #: what :meth:`lookup` answers for no usable entry (:data:`MISS`, here for callers that import this
    #: module lazily)
    MISS: Any = MISS

    def __init__(self, task: Task[Any, Any], key: str) -> None:
        self.task = task
        self.key = key
        self.store = cache_store()
        self.expires_in = task.options.cache_ttl

    @classmethod
    def open(cls, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> CachedCall | None:
        """The cache entry of this call, or None when the arguments do not bind (the call will fail)."""
        key = argument_key(task, args, kwargs)
        return None if key is None else cls(task, key)

    def lookup(self) -> Any:
        """The cached value, or :data:`MISS`. An entry this code cannot read back (a class renamed since,
        a result file deleted) counts as a miss and is replaced by the next success, never an error."""
        blob = self.store.get_cached_result(self.task.name, self.key, _now())
        if blob is None:
            return MISS
        try:
            value = serde.loads(blob)
            storage = self.task.options.output_storage
            return storage.retrieve(value) if storage is not None else value
        except Exception:
            return MISS

    def put(self, value: Any) -> None:
        """Cache ``value`` (a successful attempt's result). With an ``output_storage`` the storage keeps the
        value and the cache only its reference, as the event log does for steps."""
        storage = self.task.options.output_storage
        if storage is not None:
            value = storage.store(f"cache/{self.task.name}/{self.key}", value)
        blob = serde.dumps(value, what=f"task {self.task.name!r} result (cache=True)")
        expires_at = None if self.expires_in is None else _now() + self.expires_in
        self.store.put_cached_result(self.task.name, self.key, blob, expires_at)


def clear(task: str | None = None, *, store: Store | None = None, expired_only: bool = False) -> int:
    """Delete cached results of the task named ``task`` (every task's when None) from ``store`` (default:
    the default store) and return how many went; ``expired_only`` keeps those still in use."""
    if store is None:
        from taskloom.store import default_store

        store = default_store()
    return store.clear_cached_results(task, expired_at=_now() if expired_only else None)
