"""What taskloom's modules take from :mod:`typing` at run time, without importing typing (issue 12).

Importing ``typing`` costs a process about 3 ms on a small machine (its 3,700 lines run at import): a
tenth of a one-step workflow's whole process, whose target is 4x ``python -c pass``. Annotations are
strings in taskloom (``from __future__ import annotations``), so they need nothing from typing at run
time; a module imports its typing names under ``if TYPE_CHECKING:`` and, for the few it uses at run time
(class bases, decorators, type variables), the stand-ins here in the ``else:`` branch::

    from taskloom.typing_free import TYPE_CHECKING

    if TYPE_CHECKING:
        from typing import Any, Generic, TypeVar
    else:
        from taskloom.typing_free import Generic, TypeVar

Type checkers read ``TYPE_CHECKING`` as true under any import, so they see typing's own names; the
program sees these. A program that imports typing itself (most do) loses nothing by it.
"""

from __future__ import annotations

import abc
import types

#: False when the program runs; type checkers take any ``TYPE_CHECKING`` as true (mypy's reachability)
TYPE_CHECKING = False


def TypeVar(name: str, *constraints: object, **options: object) -> str:
    """A type variable, at run time only its name: nothing reads it but ``Generic[...]``."""
    return name


ParamSpec = TypeVar


class Generic:
    """``Generic[T]`` as a base: the class gets ``Class[X]`` (``types.GenericAlias``), as with typing's, so
    an annotation that subscripts it still evaluates (``WorkflowExecutionContext[int]`` without
    ``from __future__ import annotations``)."""

    __slots__ = ()

    def __class_getitem__(cls, parameters: object) -> object:
        if cls is Generic:
            return Generic  # in a class's bases
        return types.GenericAlias(cls, parameters)


class _ProtocolMeta(abc.ABCMeta):
    """An ABC's metaclass, as typing's protocols have (so a class may name a protocol and an ABC as bases)."""

    def __instancecheck__(cls, instance: object) -> bool:
        if super().__instancecheck__(instance):
            return True
        members: tuple[str, ...] | None = cls.__dict__.get("_runtime_members")
        return members is not None and all(hasattr(instance, name) for name in members)


class Protocol(metaclass=_ProtocolMeta):
    """A protocol's base. Classes that name it as a base work as with typing's; ``isinstance`` checks the
    members only of a class marked :func:`runtime_checkable`."""

    __slots__ = ()


def runtime_checkable(cls: type) -> type:
    """``isinstance(x, cls)`` holds when ``x`` has every public attribute ``cls`` declares, as for typing's
    runtime-checkable protocols."""
    cls._runtime_members = tuple(  # type: ignore[attr-defined]
        name for name in vars(cls) if not name.startswith("_")
    )
    return cls


def overload(fn: object) -> object:
    """An ``@overload`` signature: at run time the last definition of the name is the one that counts."""
    return fn


def cast(kind: object, value: object) -> object:
    """``typing.cast``: the value, unchanged."""
    return value


class _Literal:
    def __getitem__(self, values: object) -> object:
        return object  # a Literal alias is read by type checkers only


Literal = _Literal()

#: ``Any`` inside a type alias built at run time (``Callable[..., Any]``): read by type checkers only
Any = object
