"""Secret values masked as ``***`` in everything written while the task that received them runs.

CI systems mask a job's secrets in its output whatever prints them; taskloom does the same for a task
run. Where a task's secrets are resolved (:meth:`taskloom.task.Task.prepare_arguments`), their values
are registered in the current *secret scope*, a contextvar opened around each task run (by the policy
for direct calls and instances, and by the workflow engine around each step). While a scope holds
secrets, everything taskloom writes is masked: results and arguments (:func:`taskloom.serde.dumps`),
errors with their messages, notes and causes (:func:`taskloom.serde.dumps_error`), TaskControl logs
and statuses, and the results and errors a task run hands back.

Decisions, written down:

- A value registered in a scope is also added to every enclosing scope, because what a nested task
  received can flow into its caller's result; nested scopes see their parents' values as well.
- Values shorter than :data:`MIN_SECRET_LENGTH` characters (and empty ones) are not masked: masking
  every ``"a"`` or ``"1"`` would destroy output without protecting anything.
- A longer secret is replaced before a shorter one it contains, so no fragment of it survives.
- A scope's set of values is one object shared by reference: a context copied into a worker thread
  (``contextvars.copy_context``, which the policy uses for sync bodies) registers into, and masks with,
  the same scope.
- With no scope open (the common path) every function here costs one contextvar lookup.
"""

from __future__ import annotations

import contextvars
import io
import pickle
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager

from taskloom.plain_values import dataclass_field_names
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: what a secret's value is replaced by
MASK = "***"
_MASK_BYTES = MASK.encode()
#: values shorter than this are never masked (see the module docstring)
MIN_SECRET_LENGTH = 4
#: the pickle protocol of masked copies (the store's, see taskloom.serde)
_PROTOCOL = 5


class UnmaskableValueError(ValueError):
    """A value holds a secret, and its type refuses to be rebuilt with the secret masked."""


class SecretScope:
    """The secret values of one task run (and of the runs nested in it)."""

    __slots__ = ("_encoded", "_values", "parent")

    def __init__(self, parent: SecretScope | None) -> None:
        self.parent = parent
        #: own and registered-below values, longest first (replaced whole under a lock, read lock-free)
        self._values: tuple[str, ...] = ()
        self._encoded: tuple[bytes, ...] = ()

    def _add(self, values: frozenset[str]) -> None:
        with _lock:
            merged = set(self._values) | values
            if len(merged) == len(self._values):
                return
            ordered = _ordered(merged)
            self._values, self._encoded = ordered, tuple(v.encode("utf-8", "surrogatepass") for v in ordered)

    @property
    def values(self) -> tuple[str, ...]:
        """Every value masked in this scope: its own, those registered in nested scopes and its parents'."""
        merged = self._values
        for scope in self._ancestors():
            theirs = scope._values
            if theirs and theirs != merged:  # equal sets are equal tuples: the order is fixed
                merged = _ordered(set(merged) | set(theirs))
        return merged

    def _ancestors(self) -> Iterator[SecretScope]:
        scope = self.parent
        while scope is not None:
            yield scope
            scope = scope.parent

    def __repr__(self) -> str:  # never show the values themselves
        return f"<SecretScope with {len(self.values)} value(s)>"


_lock = threading.Lock()
_current: contextvars.ContextVar[SecretScope | None] = contextvars.ContextVar("taskloom_secret_scope", default=None)


def _ordered(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(values, key=lambda v: (-len(v), v)))


class _OpenScope:
    """The context manager :func:`secret_scope` returns (a class: it runs around every step)."""

    __slots__ = ("_token",)

    def __enter__(self) -> SecretScope:
        scope = SecretScope(_current.get())
        self._token = _current.set(scope)
        return scope

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


def secret_scope() -> AbstractContextManager[SecretScope]:
    """Open a scope for one task run; values registered while it is open are masked until it closes."""
    return _OpenScope()


def register_secrets(values: Iterable[str]) -> None:
    """Mask ``values`` in the current scope and every enclosing one; a no-op when no scope is open.

    Empty values and values shorter than :data:`MIN_SECRET_LENGTH` are ignored.
    """
    scope = _current.get()
    if scope is None:
        return
    kept = frozenset(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH)
    if not kept:
        return
    scope._add(kept)
    for ancestor in scope._ancestors():
        ancestor._add(kept)


def active_secrets() -> tuple[str, ...]:
    """The values masked now, longest first; empty with no scope open (one contextvar lookup)."""
    scope = _current.get()
    if scope is None:
        return ()
    return scope.values


def mask_text(text: str) -> str:
    """``text`` with each active secret value replaced by ``***``."""
    scope = _current.get()
    if scope is None:
        return text
    return _mask_str(text, scope.values)


def _mask_str(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_bytes(data: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        encoded = secret.encode("utf-8", "surrogatepass")
        if encoded in data:
            data = data.replace(encoded, _MASK_BYTES)
    return data


def contains_secret(blob: bytes, secrets: tuple[str, ...]) -> bool:
    """Whether a pickle (or any bytes) holds one of ``secrets``: pickle keeps every str as UTF-8 in one piece."""
    return any(secret.encode("utf-8", "surrogatepass") in blob for secret in secrets)


def mask_value(value: Any) -> Any:
    """``value`` with each active secret replaced by ``***`` in every str (and bytes) it holds.

    Strings, bytes and common containers come back as masked copies; an exception is masked *in place*
    (its args, notes, attributes, and its ``__cause__``/``__context__`` chain), so that ``raise`` keeps
    its identity and traceback. Any other value is copied through pickle when, and only when, it holds a
    secret; a value that does not pickle, or cannot be rebuilt masked, is returned as it is (taskloom
    cannot look inside it; storing it then fails with a SerializationError that says so).
    """
    secrets = active_secrets()
    if not secrets:
        return value
    try:
        return _mask_any(value, secrets, set())
    except UnmaskableValueError:
        return value


def _mask_any(value: Any, secrets: tuple[str, ...], seen: set[int]) -> Any:
    kind = type(value)
    if kind is str:
        return _mask_str(value, secrets)
    if kind is bytes:
        return _mask_bytes(value, secrets)
    if value is None or kind in (int, float, bool, complex):
        return value
    if isinstance(value, BaseException):
        _mask_exception(value, secrets, seen)
        return value
    if kind is list:
        return [_mask_any(v, secrets, seen) for v in value]
    if kind is tuple:
        return tuple(_mask_any(v, secrets, seen) for v in value)
    if kind is dict:
        return {_mask_any(k, secrets, seen): _mask_any(v, secrets, seen) for k, v in value.items()}
    if kind in (set, frozenset):
        return kind(_mask_any(v, secrets, seen) for v in value)
    return masked_copy(value, secrets)


def _mask_exception(error: BaseException, secrets: tuple[str, ...], seen: set[int]) -> None:
    if id(error) in seen:
        return
    seen.add(id(error))
    try:
        error.args = tuple(_mask_any(arg, secrets, seen) for arg in error.args)
    except Exception:  # pragma: no cover - an exception type that refuses new args
        pass
    state = getattr(error, "__dict__", None)
    if isinstance(state, dict):
        for name, attribute in list(state.items()):
            if isinstance(attribute, BaseException):
                _mask_exception(attribute, secrets, seen)
                continue
            masked = _mask_any(attribute, secrets, seen)
            if masked is not attribute:
                try:
                    object.__setattr__(error, name, masked)
                except Exception:  # pragma: no cover - a read-only attribute
                    pass
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            _mask_exception(linked, secrets, seen)
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            _mask_exception(inner, secrets, seen)


# -- masked copies through pickle -----------------------------------------------------------------------
def masked_copy(value: Any, secrets: tuple[str, ...], pickler: type[pickle.Pickler] = pickle.Pickler) -> Any:
    """A copy of ``value`` whose every str and bytes has ``secrets`` masked; ``value`` itself if none held.

    The copy is made by pickling with a ``persistent_id`` that swaps each str holding a secret for its
    masked text, then loading that pickle back: so it reaches inside any picklable value (dataclasses,
    pydantic models, exceptions and their state) without knowing its type. ``pickler`` lets the caller
    (:mod:`taskloom.serde`) use its own reductions. A value that does not pickle is returned as it is.
    """
    try:
        plain = _dump(value, pickler)
    except Exception:
        return _mask_dataclass(value, secrets)
    if not contains_secret(plain, secrets):
        return value
    buffer = io.BytesIO()
    masking_pickler = _masking_pickler(pickler)(buffer, _PROTOCOL)
    masking_pickler.secrets = secrets  # type: ignore[attr-defined]
    masking_pickler.dump(value)
    buffer.seek(0)
    try:
        return _MaskedUnpickler(buffer).load()
    except Exception as error:  # a type that refuses its masked state (a validator rejecting "***")
        raise UnmaskableValueError(
            f"a value of type {type(value).__qualname__} holds a secret and cannot be rebuilt with it masked "
            f"({type(error).__name__}); return or raise the parts you need instead"
        ) from None


def _dump(value: Any, pickler: type[pickle.Pickler]) -> bytes:
    buffer = io.BytesIO()
    pickler(buffer, _PROTOCOL).dump(value)
    return buffer.getvalue()


def _mask_dataclass(value: Any, secrets: tuple[str, ...]) -> Any:
    # An unpicklable dataclass (holding a lock, say) still gets its str fields masked in place.
    fields = dataclass_field_names(value)
    if fields is not None:
        for name in fields:
            attribute = getattr(value, name, None)
            if type(attribute) is str and (masked := _mask_str(attribute, secrets)) != attribute:
                try:
                    object.__setattr__(value, name, masked)
                except Exception:  # pragma: no cover - slots without the attribute
                    pass
    return value


_PICKLERS: dict[type[pickle.Pickler], type[pickle.Pickler]] = {}


def _masking_pickler(base: type[pickle.Pickler]) -> type[pickle.Pickler]:
    """``base`` with a ``persistent_id`` that masks (a subclass made once per base)."""
    made = _PICKLERS.get(base)
    if made is not None:
        return made

    class MaskingPickler(base):  # type: ignore[valid-type,misc]
        secrets: tuple[str, ...] = ()

        def persistent_id(self, obj: Any) -> Any:
            kind = type(obj)
            if kind is str:
                masked: Any = _mask_str(obj, self.secrets)
            elif kind is bytes:
                masked = _mask_bytes(obj, self.secrets)
            else:
                return None
            return None if masked == obj else ("taskloom-masked", masked)

    _PICKLERS[base] = MaskingPickler
    return MaskingPickler


class _MaskedUnpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "taskloom-masked":
            return pid[1]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
