"""What a task reads of its function without ``inspect`` (taskloom.signatures) agrees with ``inspect``,
and typing's run-time stand-ins (taskloom.typing_free) behave as typing's where taskloom uses them."""

from __future__ import annotations

import abc
import functools
import inspect
from typing import Any

import pytest

from taskloom import TaskControl, Workflow, WorkflowExecutionContext, task
from taskloom.options import OutputStorage
from taskloom.signatures import _facts_from_inspect, is_awaitable, is_coroutine_function, parameter_facts
from taskloom.typing_free import Protocol, runtime_checkable


def positional(a, b):  # type: ignore[no-untyped-def]
    return a


def defaults(a, b=1):  # type: ignore[no-untyped-def]
    return a


def everything(tc: TaskControl, a, /, b, *args, c, d=2, **kwargs):  # type: ignore[no-untyped-def]
    return a


def method_like(self, tc: "TaskControl", x):  # type: ignore[no-untyped-def]  # noqa: UP037
    return x


async def coroutine(*items):  # type: ignore[no-untyped-def]
    return items


def nothing() -> None:
    return None


@functools.wraps(positional)
def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
    return positional(*args, **kwargs)


class Callable_:
    def __call__(self, x: int, y: int = 0) -> int:
        return x


CASES = [positional, defaults, everything, method_like, coroutine, nothing, wrapped, Callable_(), lambda x, *, k: x]


@pytest.mark.parametrize("fn", CASES, ids=lambda fn: getattr(fn, "__name__", type(fn).__name__))
def test_the_facts_read_from_the_code_object_are_inspects(fn: Any) -> None:
    read, expected = parameter_facts(fn), _facts_from_inspect(fn)

    assert (read.names, read.leading, read.exact_arity, read.accepts_kwargs) == (
        expected.names,
        expected.leading,
        expected.exact_arity,
        expected.accepts_kwargs,
    )
    assert is_coroutine_function(fn) == inspect.iscoroutinefunction(fn)


def test_the_facts_a_task_takes_from_them() -> None:
    assert parameter_facts(positional).exact_arity == 2
    assert parameter_facts(defaults).exact_arity is None
    assert parameter_facts(everything).names == ("tc", "a", "b", "args", "c", "d", "kwargs")
    assert parameter_facts(everything).accepts_kwargs
    assert task(everything).control_index == 0 and task(method_like).control_index == 1
    assert parameter_facts(wrapped).names == ("a", "b")  # inspect follows __wrapped__, and so do we


def test_is_awaitable_is_inspects() -> None:
    import types

    @types.coroutine
    def generator_coroutine() -> Any:
        yield

    def plain_generator() -> Any:
        yield

    running = coroutine()
    values = [running, generator_coroutine(), plain_generator(), 3, None]
    try:
        assert (
            [is_awaitable(v) for v in values]
            == [inspect.isawaitable(v) for v in values]
            == [
                True,
                True,
                False,
                False,
                False,
            ]
        )
    finally:
        running.close()


def test_generic_classes_subscript_as_with_typing() -> None:
    alias = WorkflowExecutionContext[int]
    assert alias.__origin__ is WorkflowExecutionContext and alias.__args__ == (int,)  # type: ignore[attr-defined]
    assert Workflow[str].__origin__ is Workflow  # type: ignore[attr-defined]

    class Mine(WorkflowExecutionContext[int]):  # a subclass of the subscripted class is a subclass of the class
        pass

    assert issubclass(Mine, WorkflowExecutionContext)


def test_a_runtime_checkable_protocol_checks_members_and_mixes_with_an_abc() -> None:
    class Storage:
        def store(self, reference: str, value: Any) -> Any:
            return reference

        def retrieve(self, reference: Any) -> Any:
            return reference

    class HalfStorage:
        def store(self, reference: str, value: Any) -> Any:
            return reference

    assert isinstance(Storage(), OutputStorage)
    assert not isinstance(HalfStorage(), OutputStorage)

    @runtime_checkable
    class Named(Protocol):
        name: str

        def greet(self) -> str: ...

    class Abstract(abc.ABC):  # noqa: B024
        pass

    class Both(Named, Abstract):  # a metaclass conflict, were the stand-in's not an ABCMeta
        def greet(self) -> str:
            return "hi"

    assert isinstance(Both(), Named) and isinstance(Both(), Abstract)


def test_a_plain_function_is_read_without_inspect_and_a_declared_signature_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def declared(a, b):  # type: ignore[no-untyped-def]
        return a

    declared.__signature__ = inspect.Signature([inspect.Parameter("x", inspect.Parameter.POSITIONAL_ONLY)])  # type: ignore[attr-defined]
    assert parameter_facts(declared).names == ("x",)  # inspect honours __signature__, and so do we

    def refuse(*args: Any) -> Any:
        raise AssertionError("inspect was asked about a plain function")

    monkeypatch.setattr("taskloom.signatures._facts_from_inspect", refuse)
    monkeypatch.setattr(inspect, "iscoroutinefunction", refuse)
    assert parameter_facts(positional).names == ("a", "b")
    assert is_coroutine_function(coroutine) and not is_coroutine_function(positional)


def test_is_coroutine_function_sees_through_a_partial_as_inspect_does() -> None:
    assert is_coroutine_function(functools.partial(coroutine, 1))
    assert not is_coroutine_function(functools.partial(positional, 1))


def test_a_runtime_checkable_protocol_asks_for_its_public_members_only() -> None:
    @runtime_checkable
    class Greeter(Protocol):
        def greet(self) -> str: ...

        def _helper(self) -> None: ...

    class Structural:  # no base: it has the public member, not the private one
        def greet(self) -> str:
            return "hi"

    class Other:
        def wave(self) -> str:
            return "o/"

    assert isinstance(Structural(), Greeter) and not isinstance(Other(), Greeter)

    class Unchecked(Protocol):  # not runtime-checkable: only its subclasses are its instances
        def greet(self) -> str: ...

    class Named(Unchecked):
        pass

    assert isinstance(Named(), Unchecked) and not isinstance(Structural(), Unchecked)
