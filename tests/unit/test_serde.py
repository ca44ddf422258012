"""Values keep their Python types through the store; unstorable values fail early and clearly."""

from __future__ import annotations

import datetime as dt
import enum
import io
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from taskloom import SerializationError, TaskError, WorkflowExecutionContext, serde, task, workflow
from taskloom.errors import TaskTimeoutError, WorkflowPaused
from taskloom.events import EventType
from taskloom.tasks import pause


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Address:
    street: str
    city: str


@dataclass
class Customer:
    name: str
    since: dt.date
    address: Address
    tags: list[str] = field(default_factory=list)


class Item(BaseModel):
    sku: str
    price: Decimal


class Order(BaseModel):
    id: uuid.UUID
    placed: dt.datetime
    items: list[Item]
    colour: Colour


class OrderRejected(Exception):
    """An exception with a custom constructor and extra state."""

    def __init__(self, order: str, reason: str) -> None:
        super().__init__(f"order {order} rejected: {reason}")
        self.order = order
        self.reason = reason


class NotRebuildable(Exception):
    """Pickles, but cannot be rebuilt from its args (its constructor needs two)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)


AWARE = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
ORDER = Order(
    id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    placed=AWARE,
    items=[Item(sku="A-1", price=Decimal("9.99"))],
    colour=Colour.BLUE,
)
CUSTOMER = Customer("Ada", dt.date(2020, 1, 2), Address("1 Loop St", "Turing"), ["vip"])

VALUES: list[Any] = [
    AWARE,
    dt.datetime(2024, 5, 1, 12, 30),
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2024, 2, 29),
    dt.time(23, 59, 59),
    dt.timedelta(days=2, seconds=3),
    Decimal("1234.5678"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Colour.RED,
    CUSTOMER,
    ORDER,
    {"nested": [1, 2.5, None, True, ("t", b"bytes")], "set": {1, 2}, "frozen": frozenset({"x"})},
    (1, "two", 3.0),
    "text with ünïcode",
    12345678901234567890,
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_with_their_types(value: Any) -> None:
    back = serde.loads(serde.dumps(value, what="test value"))
    assert back == value
    assert type(back) is type(value)


def test_datetime_keeps_its_timezone() -> None:
    back = serde.loads(serde.dumps(AWARE, what="time"))
    assert back.tzinfo is not None
    assert back.utcoffset() == dt.timedelta(0)


def test_nested_types_inside_a_pydantic_model_survive() -> None:
    back = serde.loads(serde.dumps(ORDER, what="order"))
    assert isinstance(back.items[0], Item)
    assert isinstance(back.items[0].price, Decimal)
    assert isinstance(back.placed, dt.datetime)
    assert back.colour is Colour.BLUE


def test_exception_keeps_its_type_attributes_and_cause() -> None:
    try:
        try:
            raise ConnectionError("card network down")
        except ConnectionError as cause:
            raise OrderRejected("O-1", "no payment") from cause
    except OrderRejected as error:
        blob = serde.dumps_error(error, what="task 'charge'")
    back = serde.loads(blob)
    assert type(back) is OrderRejected
    assert str(back) == "order O-1 rejected: no payment"
    assert (back.order, back.reason) == ("O-1", "no payment")
    assert type(back.__cause__) is ConnectionError
    assert str(back.__cause__) == "card network down"


def test_stored_exception_carries_its_original_traceback_as_a_note() -> None:
    def failing_function() -> None:
        raise ValueError("deep")

    try:
        failing_function()
    except ValueError as error:
        blob = serde.dumps_error(error, what="task 't'")
    notes = "\n".join(serde.loads(blob).__notes__)
    assert "(original traceback)" in notes
    assert "failing_function" in notes


def test_taskloom_exceptions_round_trip() -> None:
    for error in (TaskTimeoutError("task 'x': attempt 1 timed out"), SerializationError("no")):
        back = serde.loads(serde.dumps_error(error, what="t"))
        assert type(back) is type(error)
        assert str(back) == str(error)
    paused = serde.loads(serde.dumps(WorkflowPaused("gate", "3"), what="t"))
    assert (paused.name, paused.step_id) == ("gate", "3")


def test_exception_with_a_custom_constructor_comes_back_as_itself() -> None:
    back = serde.loads(serde.dumps(NotRebuildable("first", "second"), what="value"))
    assert type(back) is NotRebuildable
    assert back.args == ("first",)
    chained = serde.loads(serde.dumps_error(NotRebuildable("a", "b"), what="task 'odd'"))
    assert type(chained) is NotRebuildable


def test_exception_that_cannot_be_stored_becomes_a_task_error_with_its_text() -> None:
    error = OrderRejected("O-3", "locked")
    error.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(SerializationError, match="OrderRejected"):
        serde.dumps(error, what="value")
    back = serde.loads(serde.dumps_error(error, what="task 'odd'"))
    assert type(back) is TaskError
    assert str(back) == "task 'odd': OrderRejected: order O-3 rejected: locked"


def test_the_causes_below_an_error_that_cannot_be_stored_are_kept() -> None:
    middle = OrderRejected("O-4", "locked")
    middle.lock = threading.Lock()  # type: ignore[attr-defined]
    middle.__cause__ = KeyError("the root cause")
    top = RuntimeError("checkout failed")
    top.__cause__ = middle
    back = serde.loads(serde.dumps_error(top, what="task 't'"))
    assert type(back) is RuntimeError
    assert type(back.__cause__) is TaskError and "OrderRejected" in str(back.__cause__)
    assert type(back.__cause__.__cause__) is KeyError
    assert back.__cause__.__cause__.args == ("the root cause",)


@pytest.mark.parametrize(
    "value",
    [threading.Lock(), lambda: 1, (x for x in range(3)), {"deep": [threading.Event()]}],
    ids=["lock", "lambda", "generator", "nested"],
)
def test_unstorable_values_fail_naming_the_owner(value: Any) -> None:
    with pytest.raises(SerializationError) as caught:
        serde.dumps(value, what="task 'export' result")
    message = str(caught.value)
    assert message.startswith("task 'export' result: cannot store a value of type")
    assert isinstance(caught.value, TaskError)


def test_loads_of_none_is_none() -> None:
    assert serde.loads(None) is None


# -- JSON views ------------------------------------------------------------------------------------
def test_json_view_of_rich_values() -> None:
    view = serde.json_view(
        {
            "when": AWARE,
            "day": dt.date(2024, 1, 2),
            "span": dt.timedelta(minutes=1),
            "id": uuid.UUID(int=1),
            "amount": Decimal("1.10"),
            "colour": Colour.RED,
            "bytes": b"\x00\x01",
            "error": OrderRejected("O-2", "late"),
            "customer": CUSTOMER,
            "order": ORDER,
            "items": (1, {2}),
            "nan": float("nan"),
            7: "int key",
        }
    )
    assert view == {
        "when": "2024-05-01T12:30:15.123456+00:00",
        "day": "2024-01-02",
        "span": 60.0,
        "id": "00000000-0000-0000-0000-000000000001",
        "amount": "1.10",
        "colour": "red",
        "bytes": "AAE=",
        "error": {"type": "OrderRejected", "message": "order O-2 rejected: late"},
        "customer": {
            "name": "Ada",
            "since": "2020-01-02",
            "address": {"street": "1 Loop St", "city": "Turing"},
            "tags": ["vip"],
        },
        "order": {
            "id": "12345678-1234-5678-1234-567812345678",
            "placed": "2024-05-01T12:30:15.123456Z",
            "items": [{"sku": "A-1", "price": "9.99"}],
            "colour": "blue",
        },
        "items": [1, [2]],
        "nan": "nan",
        "7": "int key",
    }


def test_json_view_of_an_unknown_object_is_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    assert serde.json_view(Opaque()) == "<opaque>"


# -- through a workflow ----------------------------------------------------------------------------
@task
def make_values() -> dict[str, Any]:
    return {"customer": CUSTOMER, "order": ORDER, "when": AWARE, "amount": Decimal("3.30"), "id": ORDER.id}


@task
def reject(order: Order) -> None:
    try:
        raise TimeoutError("warehouse")
    except TimeoutError as cause:
        raise OrderRejected(str(order.id), "no stock") from cause


@workflow
async def typed(ctx: WorkflowExecutionContext[Order]) -> dict[str, Any]:
    values = await make_values()
    try:
        await reject(ctx.input)
    except OrderRejected as error:
        values["error"] = error
    values["input"] = ctx.input
    values["resumed"] = await pause("types")
    return values


def test_types_survive_the_event_log_and_replay() -> None:
    ctx = typed.run(ORDER)
    assert ctx.input == ORDER
    done = typed.resume(ctx.execution_id, CUSTOMER)
    stored = typed.status(ctx.execution_id)
    for out in (done.output, stored.output):
        assert out["customer"] == CUSTOMER and type(out["customer"]) is Customer
        assert out["order"] == ORDER and type(out["order"]) is Order
        assert out["when"] == AWARE and out["when"].tzinfo is not None
        assert out["amount"] == Decimal("3.30") and type(out["amount"]) is Decimal
        assert out["id"] == ORDER.id and type(out["id"]) is uuid.UUID
        assert out["input"] == ORDER
        assert type(out["error"]) is OrderRejected and out["error"].reason == "no stock"
        assert out["resumed"] == CUSTOMER
    failed = next(e for e in done.events if e.type is EventType.STEP_FAILED)
    assert type(failed.value) is OrderRejected
    assert type(failed.value.__cause__) is TimeoutError
    assert failed.to_json()["value"] == {"type": "OrderRejected", "message": str(failed.value)}


def _fresh_pickle(value: Any) -> bytes:
    buffer = io.BytesIO()
    serde._Pickler(buffer, serde.PROTOCOL).dump(value)
    return buffer.getvalue()


class _PicklesAnotherValue:
    """A value whose reduction encodes another value while the thread's pickler is busy with it."""

    def __reduce__(self) -> tuple[Any, ...]:
        serde.dumps({"nested": [1, 2]}, what="the inner value")
        return (dict, ())


class _Unpicklable:
    def __reduce__(self) -> tuple[Any, ...]:
        raise RuntimeError("cannot pickle this")


def test_the_reused_pickler_writes_what_a_fresh_one_writes_value_after_value() -> None:
    shared = [1, 2]
    values = [((1,), {}), {"a": shared, "b": shared}, ValueError("x"), ((shared, shared), {"k": "v"}), [1.5, None]]
    # Each value alone: nothing of the one before (bytes, or memo entries that would become back-references).
    assert [serde._pickle(v) for v in values] == [_fresh_pickle(v) for v in values]
    assert serde._pickle([_PicklesAnotherValue(), 5]) == _fresh_pickle([_PicklesAnotherValue(), 5])


def test_a_value_that_fails_to_pickle_leaves_the_reused_pickler_clean() -> None:
    with pytest.raises(SerializationError, match="the broken value"):
        serde.dumps([1, _Unpicklable()], what="the broken value")
    assert serde._pickle(((1,), {})) == _fresh_pickle(((1,), {}))
    assert serde.loads(serde.dumps({"after": "failure"}, what="x")) == {"after": "failure"}
