"""Value classes without ``dataclasses`` (issue 12's one-step process).

``@dataclass`` compiles each class's ``__init__``, ``__eq__``, ``__repr__`` and more with ``exec`` when
its module is imported: 1 to 2 ms a class on a small machine, paid by every process, and a run imports
half a dozen of them. A class here writes its ``__init__`` by hand (in its module, so it is compiled once
into the bytecode cache) and gets the rest from :class:`PlainValue`, which reads its fields from
``_fields`` (its ``__slots__`` too): equality, hashing and ``repr`` over the fields in order, pickling
through ``__init__``, and :meth:`PlainValue.replace` for a changed copy (what ``dataclasses.replace``
did). :class:`FrozenValue` also refuses assignment after ``__init__``, as a frozen dataclass did.
"""

from __future__ import annotations

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, ClassVar, Self


class PlainValue:
    """Base of a value class: ``_fields`` lists its fields in order (``__slots__ = _fields``), and its
    ``__init__`` takes them by those names."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown())
        return f"{type(self).__name__}({shown})"

    def _shown(self) -> tuple[str, ...]:
        """The fields ``repr`` shows: all of them, unless a class leaves some out."""
        return self._fields

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # through __init__, which a FrozenValue needs (its __setattr__ refuses what pickle would do)
        return (_rebuild, (type(self), {name: getattr(self, name) for name in self._fields}))

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (field names as keywords); an unknown name is a TypeError naming it."""
        fields = self._fields
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(fields)}"
            )
        return type(self)(**{name: changes.get(name, getattr(self, name)) for name in fields})


class FrozenValue(PlainValue):
    """A :class:`PlainValue` that cannot change: its ``__init__`` sets fields with :meth:`_set`."""

    __slots__ = ()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _set_fields(self, values: dict[str, Any]) -> None:
        """Set every field from ``values`` (an ``__init__``'s ``locals()``)."""
        for name in self._fields:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"{type(self).__name__} is read-only: cannot set {name!r}; .replace({name}=...) makes a changed copy"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot delete {name!r}")


def _rebuild(cls: type[PlainValue], values: dict[str, Any]) -> PlainValue:
    """An unpickled value: made again by its ``__init__``."""
    return cls(**values)


def dataclass_field_names(value: Any) -> tuple[str, ...] | None:
    """The field names of a dataclass instance (a user's value); None for anything else, classes included.

    ``dataclasses`` is imported only for a value that is one, which means its program imported it already:
    a run whose values are no dataclasses does not load it.
    """
    if isinstance(value, type) or not hasattr(type(value), "__dataclass_fields__"):
        return None
    import dataclasses

    return tuple(field.name for field in dataclasses.fields(value))
