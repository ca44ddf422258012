"""TaskOptions: every task option, its default and its validation, in one place.

Validation happens at decoration time so a typo fails where it was written, not hours later in a
worker. Each message names the option at fault and the value that was given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from taskloom.errors import TaskDefinitionError
from taskloom.plain_values import FrozenValue
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from typing import Any, Literal, Protocol, runtime_checkable
else:
    from taskloom.typing_free import Literal, Protocol, runtime_checkable

Size = Literal["small", "medium", "large"]
SIZES: tuple[str, ...] = ("small", "medium", "large")


@runtime_checkable
class OutputStorage(Protocol):
    """Where a step's result lives: ``store`` returns a reference that ``retrieve`` turns back."""

    def store(self, reference: str, value: Any) -> Any: ...

    def retrieve(self, reference: Any) -> Any: ...


class TaskOptions(FrozenValue):
    """The options of one task. Read-only: ``with_options`` makes a new one with :meth:`merged`.

    Not a frozen dataclass, which compiled its methods at import, about 2 ms of every process's start
    (issue 12's one-step process): see :mod:`taskloom.plain_values`.
    """

    _fields = (
        "name",
        "retry_max_attempts",
        "retry_delay",
        "retry_backoff",
        "timeout",
        "fallback",
        "rollback",
        "secret_requests",
        "output_storage",
        "max_parallel",
        "size",
        "cache",
        "cache_ttl",
        "retry_on",
        "retry_jitter",
        "retry_max_delay",
    )
    __slots__ = _fields

    name: str | None
    retry_max_attempts: int
    retry_delay: float
    retry_backoff: float
    timeout: float | None
    fallback: Callable[..., Any] | None
    rollback: Callable[..., Any] | None
    secret_requests: tuple[str, ...]
    output_storage: OutputStorage | None
    max_parallel: int
    size: Size
    #: Flux's ``cache=True``: a successful result is kept in the store under the task's name and a stable
    #: hash of its arguments, and reused by later calls with equal arguments (see :mod:`taskloom.cache`)
    cache: bool
    #: seconds a cached result stays usable; None keeps it until the cache is cleared
    cache_ttl: float | None
    #: the exception types that are retried (dramatiq's ``throws`` inverted, DBOS's ``should_retry``); any
    #: other error skips the remaining retries and goes straight to the fallback/rollback
    retry_on: tuple[type[Exception], ...]
    #: fraction (0..1) of each delay taken off at random, so retries of many failed calls spread out
    retry_jitter: float
    #: cap in seconds on each delay after backoff (before jitter); None for no cap
    retry_max_delay: float | None

    def __init__(
        self,
        name: str | None = None,
        retry_max_attempts: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        timeout: float | None = None,
        fallback: Callable[..., Any] | None = None,
        rollback: Callable[..., Any] | None = None,
        secret_requests: tuple[str, ...] = (),
        output_storage: OutputStorage | None = None,
        max_parallel: int = 1,
        size: Size = "small",
        cache: bool = False,
        cache_ttl: float | None = None,
        retry_on: tuple[type[Exception], ...] = (Exception,),
        retry_jitter: float = 0.0,
        retry_max_delay: float | None = None,
    ) -> None:
        self._set_fields(locals())

    @classmethod
    def build(cls, owner: str = "task", **options: Any) -> TaskOptions:
        """Validate user-given options and return them; ``owner`` names the task in messages."""
        return cls().merged(owner, **options)

    def merged(self, owner: str = "task", **options: Any) -> TaskOptions:
        known = set(self._fields)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TaskDefinitionError(
                f"{owner}: unknown option {unknown[0]!r}; valid options are {', '.join(sorted(known))}"
            )
        values = dict(zip(self._fields, self._values(), strict=True))
        if options.get("cache") is False and "cache_ttl" not in options:
            # Turning the cache off drops the TTL that went with it, so `with_options(cache=False)` is
            # enough and does not fail on the TTL it inherited.
            values["cache_ttl"] = None
        values.update(options)
        return _validated(owner, values)

    def retry_delays(self, rng: random.Random | None = None) -> list[float]:
        """The delay before each retry, k = 0, 1, ...: ``d = min(retry_delay * retry_backoff**k,
        retry_max_delay)``, then with jitter ``j`` a random ``d * (1 - j * U(0, 1))``.

        This is dramatiq's ``compute_backoff`` (cap, then jitter downwards; dramatiq's fixed half is
        ``j = 0.5``) with the fraction as an option: the jitter only shortens a delay, so the cap and
        ``retry_delay * retry_backoff**k`` stay upper bounds, and a delay never drops below ``(1 - j) * d``.
        ``rng`` is for tests (a seeded ``random.Random``); by default the module's generator is used.
        """
        if not self.retry_max_attempts:
            return []  # no draw: a task without retries never creates the generator (nor imports random)
        draw = (rng or _jitter_rng()).random
        delays = []
        for k in range(self.retry_max_attempts):
            try:
                delay = self.retry_delay * self.retry_backoff**k
            except OverflowError:  # a large backoff to a large power: the cap (if any) decides
                delay = math.inf
            if self.retry_max_delay is not None:
                delay = min(delay, self.retry_max_delay)
            if self.retry_jitter:
                delay -= delay * self.retry_jitter * draw()
            delays.append(delay)
        return delays

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is one the task retries (``retry_on``)."""
        return isinstance(error, self.retry_on)

    @property
    def is_plain(self) -> bool:
        """No timeout, retry, fallback, rollback, cache, secret nor output storage: a call of such a task is
        its function's call and nothing more (what a workflow's fast path for steps relies on)."""
        return not (
            self.timeout
            or self.retry_max_attempts
            or self.fallback is not None
            or self.rollback is not None
            or self.cache
            or self.secret_requests
            or self.output_storage is not None
        )

    @property
    def effective_timeout(self) -> float | None:
        return self.timeout if self.timeout else None


_jitter: random.Random | None = None


def _jitter_rng() -> random.Random:
    """Jitter's source of randomness: not the ``random`` module's global one, which user code may seed.
    Made on first use, with ``random`` imported here: a run without retries needs neither
    (tests/perf/test_import.py). Two threads racing here make two generators, both as good."""
    global _jitter
    if _jitter is None:
        import random

        _jitter = random.Random()
    return _jitter


def _fail(owner: str, option: str, value: Any, expected: str) -> TaskDefinitionError:
    return TaskDefinitionError(f"{owner}: option {option!r} must be {expected}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validated(owner: str, v: dict[str, Any]) -> TaskOptions:
    name = v["name"]
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _fail(owner, "name", name, "a non-empty string")
    retries = v["retry_max_attempts"]
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise _fail(owner, "retry_max_attempts", retries, "an integer >= 0")
    for option in ("retry_delay", "retry_backoff"):
        if not _is_number(v[option]) or v[option] < 0:
            raise _fail(owner, option, v[option], "a number >= 0")
    timeout = v["timeout"]
    if timeout is not None and (not _is_number(timeout) or timeout < 0):
        raise _fail(owner, "timeout", timeout, "a number of seconds > 0, or None/0 for no timeout")
    for option in ("fallback", "rollback"):
        if v[option] is not None and not callable(v[option]):
            raise _fail(owner, option, v[option], "a callable or None")
    secrets = v["secret_requests"]
    if isinstance(secrets, str) or not isinstance(secrets, Sequence | set | frozenset):
        raise _fail(owner, "secret_requests", secrets, "a list of secret names")
    secrets = tuple(secrets)
    for secret in secrets:
        if not isinstance(secret, str) or not secret:
            raise _fail(owner, "secret_requests", secret, "a list of non-empty strings")
    v["secret_requests"] = secrets
    storage = v["output_storage"]
    if storage is not None and not isinstance(storage, OutputStorage):
        raise _fail(owner, "output_storage", storage, "an object with store(reference, value) and retrieve(reference)")
    max_parallel = v["max_parallel"]
    if not isinstance(max_parallel, int) or isinstance(max_parallel, bool) or max_parallel < 1:
        raise _fail(owner, "max_parallel", max_parallel, "an integer >= 1")
    if v["size"] not in SIZES:
        raise _fail(owner, "size", v["size"], f"one of {', '.join(map(repr, SIZES))}")
    if not isinstance(v["cache"], bool):
        raise _fail(owner, "cache", v["cache"], "True or False")
    ttl = v["cache_ttl"]
    if ttl is not None:
        if not _is_number(ttl) or ttl <= 0:
            raise _fail(owner, "cache_ttl", ttl, "a number of seconds > 0, or None to keep results until cleared")
        if not v["cache"]:
            # A TTL without the cache would be silently ignored: almost surely a forgotten cache=True.
            raise TaskDefinitionError(f"{owner}: option 'cache_ttl' needs cache=True, got cache_ttl={ttl!r}")
    _validate_retry_control(owner, v)
    return TaskOptions(**v)


def _validate_retry_control(owner: str, v: dict[str, Any]) -> None:
    """``retry_on``, ``retry_jitter`` and ``retry_max_delay``; ``retry_on`` is normalised to a tuple."""
    retry_on = v["retry_on"]
    types = tuple(retry_on) if isinstance(retry_on, list | tuple) else (retry_on,)
    if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
        raise _fail(
            owner, "retry_on", retry_on, "an exception class or a non-empty tuple of them (subclasses of Exception)"
        )
    v["retry_on"] = types
    jitter = v["retry_jitter"]
    if not _is_number(jitter) or not 0 <= jitter <= 1:
        raise _fail(owner, "retry_jitter", jitter, "a fraction of each delay from 0 to 1")
    cap = v["retry_max_delay"]
    if cap is not None and (not _is_number(cap) or cap < 0):
        raise _fail(owner, "retry_max_delay", cap, "a number of seconds >= 0, or None for no cap")
