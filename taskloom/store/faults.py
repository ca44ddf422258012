"""Store faults: which driver errors are worth waiting out, and the one retry loop every store call shares.

A store error is never a task's error. Every public store method is wrapped by :func:`retrying`, so what
leaves a store is one of:

- the method's result (perhaps after waiting out an outage);
- a domain error, unchanged (:class:`~taskloom.errors.ExecutionNotFoundError`,
  :class:`~taskloom.errors.ExecutionStateError`, :class:`~taskloom.errors.LeaseLostError`, any other
  :class:`~taskloom.errors.TaskloomError` the store raised on purpose);
- :class:`~taskloom.errors.StoreUnavailableError` when a *transient* fault (SQLite's write lock held
  past the busy timeout, a PostgreSQL connection lost or server restarting, a serialization failure or
  deadlock) outlasted the retry budget (``TASKLOOM_STORE_RETRY_SECONDS``);
- :class:`~taskloom.errors.StoreError` at once for a *permanent* fault (disk full, read-only file,
  damaged database, anything else unexpected from the driver), naming the file or URL, the cause and
  what to do.

Never a raw ``sqlite3`` or ``psycopg`` exception.

Retrying a write is safe because every store method is one transaction: a failed attempt wrote nothing.
The one exception is a connection lost *during* COMMIT, after the server committed: the retry then runs
the write a second time. For ``append_events`` that appends the same step events twice, which replay
tolerates (the last outcome of a step wins, and both are the same); ``create_execution`` answers
:class:`~taskloom.errors.ExecutionStateError` ("already exists"), which callers treat as "continue it".

The success path costs one extra Python call: :func:`retrying` allocates nothing per call, and the whole
retry machinery runs only once an error was raised.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from taskloom.errors import StoreError, StoreUnavailableError
from taskloom.logs import lazy_logger
from taskloom.plain_values import FrozenValue
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
else:
    from taskloom.typing_free import ParamSpec, Protocol, TypeVar

logger = lazy_logger("taskloom.store")  # logging is imported when it first logs

#: First pause before retrying a transient fault, and the cap of the doubling pauses (seconds).
FIRST_DELAY = 0.05
MAX_DELAY = 2.0

P = ParamSpec("P")
R = TypeVar("R")


class TransientStoreError(StoreUnavailableError):
    """A transient fault already recognised below a store method (opening a connection, say).

    The retry loop waits it out like a driver error; a caller outside any retry loop sees a plain
    :class:`StoreUnavailableError`.
    """


class Fault(FrozenValue):
    """What a driver error means: ``transient`` (wait and retry) or not, and a sentence for the user.

    Not a frozen dataclass, which compiled its methods at import (see :mod:`taskloom.plain_values`)."""

    _fields = ("transient", "message")
    __slots__ = _fields

    transient: bool
    #: the cause and what to do, ready to follow "the SQLite store '...'"
    message: str

    def __init__(self, transient: bool, message: str) -> None:
        self._set("transient", transient)
        self._set("message", message)


class FaultPolicy(Protocol):
    """What one store tells the retry loop: its name, its budget, and how to read its driver's errors."""

    #: "the SQLite store '/path/taskloom.db'" or "the PostgreSQL store postgresql://u:***@host/db"
    where: str
    #: how long transient faults are retried, in seconds; 0 means not at all
    retry_seconds: float
    #: the exceptions that are faults of the store (the driver's, OSError, TransientStoreError); anything
    #: else (a TypeError from a caller's unserialisable data) is the caller's and passes through
    faults: tuple[type[Exception], ...]

    def classify(self, error: Exception) -> Fault:
        """What ``error`` (raised by the driver inside a store method) means."""

    def on_transient(self, error: Exception) -> None:
        """Called before each retry: drop connections the fault may have broken."""


class Outage:
    """One store's outage state, shared by its threads, so an outage is logged once, not per call.

    A call that gives up (its budget spent) ends the logged outage too: a call that later succeeds at
    once never reaches the retry loop to say so, and the next fault must be logged again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def began(self, where: str, fault: Fault, retry_seconds: float) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning(
            "%s is unavailable (%s); retrying for up to %g s (TASKLOOM_STORE_RETRY_SECONDS)",
            where,
            fault.message,
            retry_seconds,
        )

    def gave_up(self) -> None:
        with self._lock:
            self._since = None

    def ended(self, where: str) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.warning("%s is available again after %.1f s", where, time.monotonic() - since)


class RetryingStore(Protocol):
    """A store that :func:`retrying` can wrap: it carries its policy and outage state."""

    @property
    def _faults(self) -> FaultPolicy: ...

    @property
    def _outage(self) -> Outage: ...


S = TypeVar("S", bound=RetryingStore)


def retrying(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Wrap a store method so driver errors become store errors, transient ones after retrying.

    Only the store's faults (``policy.faults``) are handled: a
    :class:`~taskloom.errors.TaskloomError` raised on purpose (not found, state changed, limit), a
    caller's mistake (TypeError) and any ``BaseException`` that is not an ``Exception`` (LeaseLostError,
    KeyboardInterrupt) pass through unchanged.
    """

    @functools.wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            if not isinstance(error, self._faults.faults):
                raise
            return _recover(self, error, method, args, kwargs)

    return call


def first_contact(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Wrap the call that opens a store: a fault is a :class:`StoreError` at once, without retrying.

    A store that was never reached is far more often misconfigured (a wrong host, port or password)
    than restarting, and whoever opens it (``taskloom run``, a worker starting under a supervisor) is
    better told at once. Once a store has answered, its calls wait out outages (:func:`retrying`).
    """

    @functools.wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            if not isinstance(error, self._faults.faults):
                raise
            fault = _classify(self._faults, error)
            raise StoreError(f"{self._faults.where}: {fault.message}") from error

    return call


def _recover(
    store: RetryingStore,
    error: Exception,
    method: Callable[..., R],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> R:
    """After ``method`` raised ``error``: retry while the fault is transient and the budget lasts."""
    policy = store._faults
    fault = _classify(policy, error)
    if not fault.transient:
        raise StoreError(f"{policy.where}: {fault.message}") from error
    deadline = time.monotonic() + policy.retry_seconds
    delay = FIRST_DELAY
    attempt = 1
    while True:
        _quietly(policy.on_transient, error)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            store._outage.gave_up()
            raise StoreUnavailableError(
                f"{policy.where} stayed unavailable for {policy.retry_seconds:g} s "
                f"(TASKLOOM_STORE_RETRY_SECONDS): {fault.message}"
            ) from error
        store._outage.began(policy.where, fault, policy.retry_seconds)
        logger.debug(
            "%s: attempt %d of %s failed (%s); retrying", policy.where, attempt, method.__name__, fault.message
        )
        attempt += 1
        # Half the delay plus a random half: processes hit by the same outage do not retry in step.
        import random  # here, not at the top: only a store outage draws, and a run should not load it

        time.sleep(min(remaining, delay / 2 + random.uniform(0, delay / 2)))
        delay = min(delay * 2, MAX_DELAY)
        try:
            result = method(store, *args, **kwargs)
        except Exception as again:
            if not isinstance(again, policy.faults):
                raise
            error, fault = again, _classify(policy, again)
            if not fault.transient:
                raise StoreError(f"{policy.where}: {fault.message}") from again
            continue
        store._outage.ended(policy.where)
        return result


def _classify(policy: FaultPolicy, error: Exception) -> Fault:
    if isinstance(error, TransientStoreError):
        return Fault(True, str(error))
    try:
        return policy.classify(error)
    except Exception:  # a classifier bug must not hide the real error
        return Fault(False, f"unexpected {type(error).__name__}: {error}; {_UNEXPECTED_ADVICE}")


def _quietly(action: Callable[[Exception], None], error: Exception) -> None:
    try:
        action(error)
    except Exception:
        logger.debug("cleaning up after a store fault failed", exc_info=True)


#: What to do about an error no rule above recognises.
_UNEXPECTED_ADVICE = (
    "if the database was edited by hand or restored from a damaged copy, restore a good backup; "
    "otherwise report this message as a taskloom bug"
)


# -- SQLite ----------------------------------------------------------------------------------------------

# Primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def classify_sqlite(error: Exception, path: str) -> Fault:
    """What a ``sqlite3`` error means for the store file at ``path``."""
    text = str(error)
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    lowered = text.lower()
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or "database is locked" in lowered or "is busy" in lowered:
        return Fault(True, f"{text}: another process holds its write lock past the busy timeout")
    if primary == SQLITE_FULL or "disk is full" in lowered:
        return Fault(False, f"the disk is full ({text}): free space on its filesystem, then run again")
    if primary == SQLITE_READONLY or "readonly database" in lowered:
        return Fault(
            False,
            f"it cannot be written ({text}): give this process write permission on the file and its folder "
            "(SQLite writes -wal and -shm files beside it), or mount the filesystem read-write",
        )
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in lowered or "not a database" in lowered:
        return Fault(
            False,
            f"the database is damaged ({text}): restore it from a backup; "
            f"`sqlite3 {path} 'PRAGMA integrity_check'` shows what is wrong",
        )
    if primary == SQLITE_CANTOPEN:
        return Fault(False, f"it cannot be opened ({text}): check that its folder exists and is writable")
    if primary == SQLITE_IOERR:
        return Fault(False, f"a disk I/O error ({text}): check the disk and the filesystem's free space")
    return Fault(False, f"unexpected {type(error).__name__}: {text}; {_UNEXPECTED_ADVICE}")


# -- PostgreSQL ------------------------------------------------------------------------------------------

#: SQLSTATEs worth waiting out: connection exceptions (class 08), shutdown and startup (57P01-57P03),
#: too many connections, serialization failures and deadlocks (class 40).
#: 25P03: the server ended a session left idle inside a transaction (our process was paused); the
#: transaction was rolled back, so the call is retried whole on a new connection.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01", "40003", "25P03"})
#: Connection failures that waiting does not cure: wrong password, unknown database or role.
_PERMANENT_CONNECT_WORDS = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")


def classify_postgres(error: Exception) -> Fault:
    """What a ``psycopg`` error means (looked up by class and SQLSTATE, so psycopg is not imported here)."""
    text = str(error).strip()
    sqlstate = getattr(error, "sqlstate", None)
    name = type(error).__name__
    if sqlstate == "53100":
        return Fault(False, f"the database server's disk is full ({text}): free space on it, then run again")
    if sqlstate == "25006":
        return Fault(False, f"the database is read-only ({text}): point TASKLOOM_DATABASE_URL at the primary")
    if sqlstate in _TRANSIENT_SQLSTATES or (sqlstate or "").startswith("08"):
        return Fault(True, f"{name}: {text}")
    kinds = {cls.__name__ for cls in type(error).__mro__}
    if sqlstate is None and kinds & {"OperationalError", "InterfaceError"}:
        # No SQLSTATE: the connection itself failed (refused, reset, closed under us).
        if any(word in text.lower() for word in _PERMANENT_CONNECT_WORDS):
            return Fault(False, f"cannot connect ({text}): check TASKLOOM_DATABASE_URL")
        return Fault(True, f"connection lost or refused: {text}")
    return Fault(False, f"unexpected {name}: {text}; {_UNEXPECTED_ADVICE}")
