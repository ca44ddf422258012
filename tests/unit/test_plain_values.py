"""taskloom.plain_values: the value classes that replaced dataclasses behave as those did (equality,
hashing, repr, pickling, copies with changes, read-only where they were frozen)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from taskloom.events import EventType, NewEvent
from taskloom.options import TaskOptions
from taskloom.plain_values import FrozenValue, PlainValue, dataclass_field_names
from taskloom.settings import Settings
from taskloom.store.base import ExecutionRecord


class Point(FrozenValue):
    _fields = ("x", "y")
    __slots__ = _fields

    def __init__(self, x: int, y: int = 0) -> None:
        self._set("x", x)
        self._set("y", y)


class Hidden(PlainValue):
    _fields = ("shown", "secret")
    __slots__ = _fields

    def __init__(self, shown: str, secret: str) -> None:
        self.shown = shown
        self.secret = secret

    def _shown(self) -> tuple[str, ...]:
        return ("shown",)


def test_equality_hashing_and_repr_go_by_the_fields_in_order() -> None:
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2) and (Point(1, 2) == object()) is False
    assert hash(Point(1, 2)) == hash((1, 2)) and len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert repr(Hidden("a", "b")) == "Hidden(shown='a')"  # a class may leave fields out of its repr
    assert NewEvent(EventType.STEP_STARTED, "1") == NewEvent(EventType.STEP_STARTED, "1", None, None, {})
    with pytest.raises(TypeError):
        hash(NewEvent(EventType.STEP_STARTED))  # it can change, so, as the dataclass, it is unhashable


def test_a_copy_with_changes_keeps_the_rest_and_names_an_unknown_field() -> None:
    point = Point(1, 2)
    moved = point.replace(y=5)
    assert (moved, point) == (Point(1, 5), Point(1, 2)) and type(moved) is Point
    assert point.replace() == point and point.replace() is not point
    with pytest.raises(TypeError, match=r"^Point has no field 'z'; its fields: x, y$"):
        point.replace(z=1, x=2)
    with pytest.raises(TypeError, match=r"^Point has no field 'w', 'z'; its fields: x, y$"):
        point.replace(z=1, w=2)
    record = ExecutionRecord("e", "wf", "running", None, None, 1.0, 2.0)
    assert record.replace(status="completed", crashes=2) == ExecutionRecord(
        "e", "wf", "completed", None, None, 1.0, 2.0, crashes=2
    )


def test_a_frozen_value_refuses_changes_and_a_plain_one_takes_them() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match=r"^Point is read-only: cannot set 'x'; \.replace\(x=\.\.\.\) makes"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match=r"^Point is read-only: cannot delete 'y'$"):
        del point.y  # type: ignore[misc]
    assert point == Point(1, 0)
    hidden = Hidden("a", "b")
    hidden.secret = "c"
    assert hidden.secret == "c"


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        Hidden("a", "b"),
        TaskOptions.build(name="t", retry_max_attempts=2),
        Settings.from_env(),
        ExecutionRecord("e", "wf", "queued", b"in", None, 1.0, 2.0, queue="q"),
        NewEvent(EventType.STEP_COMPLETED, "2", "t", b"v", {"k": 1}),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_pickle_and_copy_through_their_init(value: Any) -> None:
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.copy(value) == value and copy.deepcopy(value) == value


@dataclasses.dataclass
class UsersOwn:
    a: int
    b: str = "x"


def test_dataclass_field_names_are_a_users_dataclass_instances_only() -> None:
    assert dataclass_field_names(UsersOwn(1)) == ("a", "b")
    assert dataclass_field_names(UsersOwn) is None  # the class itself is no value of it
    assert dataclass_field_names(Point(1)) is None and dataclass_field_names({"a": 1}) is None
