"""Values in and out of the store with their Python types, and JSON views for humans and HTTP.

The store keeps pickled bytes: pickle is the one standard-library format under which datetimes,
dataclasses, exceptions and pydantic models come back as themselves in another process. Pickles are
only ever read from our own store, never from a request body (the HTTP API takes JSON only).
A value that cannot make the round trip fails *before* it is written, with a
:class:`~taskloom.errors.SerializationError` that names the task.

While a task run's secrets are registered (:mod:`taskloom.masking`), :func:`dumps` and
:func:`dumps_error` store a copy in which every str holding a secret is masked as ``***``. Finding out
costs one scan of the pickled bytes per secret; with no secret scope open, one contextvar lookup.
"""

from __future__ import annotations

import enum
import io
import itertools
import pickle
import threading

from taskloom import masking
from taskloom.errors import SerializationError, _rebuild
from taskloom.plain_values import dataclass_field_names
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 5
_SCALARS = (str, int, float, bool, type(None))


#: argument types a step's start stores as they are, with no check (see dumps_arguments)
_ATOMS = frozenset({*_SCALARS, bytes})


def dumps_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], *, what: str) -> bytes:
    """Encode a call's arguments as a step's start stores them: ``(args, kwargs)``, as :func:`dumps` does.

    Most steps take a few plain values (an id, a number, a name): with no secret active those pickle as
    they are, with nothing to mask and no exception to rebuild, so they skip the general path's checks
    (on every step's path).
    """
    if not kwargs and all(type(arg) in _ATOMS for arg in args) and not masking.active_secrets():
        return pickle.dumps((args, kwargs), PROTOCOL)
    return dumps((args, kwargs), what=what)


def dumps(value: Any, *, what: str) -> bytes:
    """Encode ``value``; ``what`` names its owner (``"task 'charge' result"``) for error messages.

    Active secrets are masked in the stored copy (the caller's ``value`` is left as it is).
    """
    secrets = masking.active_secrets()
    if type(value) in _SCALARS:
        if secrets and type(value) is str:
            value = masking.mask_text(value)
        return pickle.dumps(value, PROTOCOL)
    try:
        blob = _pickle(value)
        if secrets and masking.contains_secret(blob, secrets):
            blob = _pickle(masking.masked_copy(value, secrets, _Pickler))
        if isinstance(value, BaseException):
            # Exceptions pickle happily but may fail to rebuild (custom __init__); prove it now.
            pickle.loads(blob)
    except Exception as error:
        raise SerializationError(
            masking.mask_text(
                f"{what}: cannot store a value of type {type(value).__qualname__} ({error}). "
                "Use values that pickle: builtins, dataclasses, pydantic models, module-level classes."
            )
        ) from None
    return blob


class _Pickler(pickle.Pickler):
    """Pickles an exception that its class cannot rebuild from ``args`` (a custom ``__init__``) by state.

    Such an exception pickles happily but fails to load; it is stored as class, args and ``__dict__``
    instead, so it comes back as itself and ``except ThatError`` still works on replay.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            if not _rebuilds(obj):
                return (_rebuild, (type(obj), obj.args, obj.__dict__))
            return _own_reduction(obj)
        return NotImplemented


class _OwnReductionPickler(pickle.Pickler):
    """Pickles exceptions by their own ``__reduce_ex__``, as :class:`_Pickler` does, to test that one loads."""

    def reducer_override(self, obj: Any) -> Any:
        return _own_reduction(obj) if isinstance(obj, BaseException) else NotImplemented


def _own_reduction(error: BaseException) -> Any:
    """An exception's own reduction, never one a library registered for it with ``copyreg``.

    ``distributed`` (the Dask executor) installs tblib's reducers for every exception class when it is
    imported: with them an exception pickles with its whole ``__cause__``/``__context__`` chain and its
    traceback, so what a process that has imported Dask stores would differ from what any other stores
    (no cut at :data:`STORED_CHAIN_LINKS`, tblib needed to load it). The stored form must not depend on
    what else the process imported.
    """
    return error.__reduce_ex__(PROTOCOL)


def _rebuilds(error: BaseException) -> bool:
    try:
        buffer = io.BytesIO()
        _OwnReductionPickler(buffer, PROTOCOL).dump(error)
        pickle.loads(buffer.getvalue())
    except Exception:
        return False
    return True


class _Reused(threading.local):
    """This thread's pickler and its buffer, reused from one value to the next: making a pickler costs
    more than pickling most values (a step's arguments: about 2 µs against 0.5), and every step encodes
    two. ``busy`` while it pickles, so that a value whose reduction pickles another (user code may) gets
    a fresh one instead of writing into this one's buffer."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.pickler = _Pickler(self.buffer, PROTOCOL)
        self.busy = False


_reused = _Reused()


def _pickle(value: Any) -> bytes:
    reused = _reused
    if reused.busy:
        buffer = io.BytesIO()
        _Pickler(buffer, PROTOCOL).dump(value)
        return buffer.getvalue()
    reused.busy = True
    buffer, pickler = reused.buffer, reused.pickler
    try:
        pickler.dump(value)
        return buffer.getvalue()
    finally:
        # Emptied whatever happened: no bytes of this value in the next one, and no reference kept to
        # the objects it held (the memo maps them).
        buffer.seek(0)
        buffer.truncate()
        pickler.clear_memo()
        reused.busy = False


#: how many links of an error's ``__cause__`` chain are stored (the error and up to 7 causes)
STORED_CHAIN_LINKS = 8


class ErrorChain(list[BaseException]):
    """A stored exception with its ``__cause__`` chain, which pickle alone would drop."""


def loads(blob: bytes | None) -> Any:
    if blob is None:
        return None
    value = pickle.loads(blob)
    if type(value) is ErrorChain:
        for error, cause in itertools.pairwise(value):
            error.__cause__ = cause
        return value[0]
    return value


def dumps_error(error: BaseException, *, what: str) -> bytes:
    """Encode a task's exception; one that cannot be stored is replaced by a TaskError with its text.

    Active secrets are masked in everything stored: the messages and args of the exception and of its
    causes, its notes (the traceback note included) and its attributes.
    """
    notes = getattr(error, "__notes__", None) or []
    if error.__traceback__ is not None and not any(str(n).startswith("(original traceback)") for n in notes):
        import traceback  # only a failure needs it (with linecache and tokenize)

        tb = "".join(traceback.format_exception(error)).rstrip()
        try:
            error.add_note(f"(original traceback)\n{tb}")
        except Exception:  # pragma: no cover - exotic exceptions without __notes__ support
            pass
    chain = ErrorChain()
    current: BaseException | None = error
    while current is not None and len(chain) < STORED_CHAIN_LINKS:
        stored = current
        try:
            dumps(current, what=what)
        except SerializationError:
            from taskloom.errors import TaskError

            # The stand-in takes the unstorable error's place; the chain goes on below the original.
            stored = TaskError(masking.mask_text(f"{what}: {type(current).__qualname__}: {current}"))
        chain.append(stored)
        current = current.__cause__
    secrets = masking.active_secrets()
    if secrets:
        blob = _pickle(chain)
        return (
            _pickle(masking.masked_copy(chain, secrets, _Pickler)) if masking.contains_secret(blob, secrets) else blob
        )
    return _pickle(chain)


def json_view(value: Any, _depth: int = 0) -> Any:
    """A JSON-compatible rendering of ``value`` for CLI, HTTP and the dashboard (lossy by design)."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and value != value:  # NaN
            return str(value)
        return value
    if _depth > 20:
        return repr(value)
    # Imported here, not at the top: only views (CLI, HTTP, dashboard) need them, and a workflow run
    # should not pay for decimal, uuid (platform) and base64 at import (tests/perf/test_import.py).
    import base64
    import datetime as dt
    import uuid
    from decimal import Decimal

    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return json_view(value.value, _depth + 1)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, BaseException):
        return {"type": type(value).__qualname__, "message": str(value)}
    if isinstance(value, dict):
        return {str(k): json_view(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_view(v, _depth + 1) for v in value]
    if (fields := dataclass_field_names(value)) is not None:
        return {name: json_view(getattr(value, name), _depth + 1) for name in fields}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        try:
            return json_view(model_dump(mode="json"), _depth + 1)
        except Exception:
            pass
    return repr(value)
