"""Task options: the three decorator forms, defaults, ``with_options`` merging, and validation errors."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from taskloom import Task, TaskDefinitionError, TaskOptions, task
from taskloom.outputs import InlineOutputStorage, LocalFileOutputStorage


def _double(x: int) -> int:
    return x * 2


async def _adouble(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def _call(t: Task[Any, Any], *args: Any) -> Any:
    """Call a task directly and return its value, whether it is sync or async."""
    result = t(*args)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


# -- the three decorator forms ---------------------------------------------------------------------
@pytest.mark.parametrize("fn", [_double, _adouble], ids=["sync", "async"])
def test_bare_decorator_makes_a_task_named_after_the_function(fn: Any) -> None:
    made = task(fn)
    assert isinstance(made, Task)
    assert made.name == fn.__name__
    assert made.is_async is inspect.iscoroutinefunction(fn)
    assert made.options == TaskOptions()
    assert _call(made, 21) == 42


@pytest.mark.parametrize("fn", [_double, _adouble], ids=["sync", "async"])
def test_decorator_called_with_options(fn: Any) -> None:
    made = task(name="doubler", retry_max_attempts=2, size="large")(fn)
    assert made.name == "doubler"
    assert made.options.retry_max_attempts == 2
    assert made.options.size == "large"
    assert _call(made, 5) == 10


@pytest.mark.parametrize("fn", [_double, _adouble], ids=["sync", "async"])
def test_decorator_called_without_options(fn: Any) -> None:
    made = task()(fn)
    assert made.name == fn.__name__
    assert made.options == TaskOptions()
    assert _call(made, 1) == 2


@pytest.mark.parametrize("fn", [_double, _adouble], ids=["sync", "async"])
def test_with_options_decorator(fn: Any) -> None:
    made = task.with_options(name="twice", timeout=5, retry_delay=0.5, retry_backoff=3)(fn)
    assert made.name == "twice"
    assert made.options.timeout == 5
    assert made.options.retry_delay == 0.5
    assert made.options.retry_backoff == 3
    assert _call(made, 4) == 8


def test_decorator_syntax_on_definitions() -> None:
    @task
    def plain(x: int) -> int:
        return x + 1

    @task(name="configured")
    async def configured(x: int) -> int:
        return x + 2

    @task.with_options(retry_max_attempts=1)
    def with_options(x: int) -> int:
        return x + 3

    assert plain(1) == 2
    assert asyncio.run(configured(1)) == 3
    assert configured.name == "configured"
    assert with_options(1) == 4
    assert with_options.options.retry_max_attempts == 1


def test_defaults_are_the_specs() -> None:
    options = task(_double).options
    assert options.name is None
    assert options.retry_max_attempts == 0
    assert options.retry_delay == 1
    assert options.retry_backoff == 2
    assert options.timeout is None
    assert options.fallback is None
    assert options.rollback is None
    assert options.secret_requests == ()
    assert options.output_storage is None
    assert options.max_parallel == 1
    assert options.size == "small"


def test_task_keeps_the_functions_identity() -> None:
    made = task(_double)
    assert made.function is _double
    assert made.__name__ == "_double"
    assert made.__wrapped__ is _double  # type: ignore[attr-defined]


# -- with_options on a task ------------------------------------------------------------------------
def test_with_options_returns_a_copy_with_merged_options() -> None:
    original = task(name="base", retry_max_attempts=2, retry_delay=0.01)(_double)
    copy = original.with_options(timeout=3, size="medium")
    assert copy is not original
    assert copy.name == "base"
    assert copy.options.retry_max_attempts == 2  # kept from the original
    assert copy.options.retry_delay == 0.01
    assert copy.options.timeout == 3  # added
    assert copy.options.size == "medium"
    assert original.options.timeout is None  # the original is untouched
    assert original.options.size == "small"
    assert copy(3) == 6


def test_with_options_overrides_and_renames() -> None:
    original = task(name="base", retry_max_attempts=2)(_double)
    copy = original.with_options(name="renamed", retry_max_attempts=0)
    assert copy.name == "renamed"
    assert copy.options.retry_max_attempts == 0
    assert original.name == "base"


def test_with_options_validates_the_merged_options() -> None:
    original = task(name="base")(_double)
    with pytest.raises(TaskDefinitionError, match="'retry_backoff'"):
        original.with_options(retry_backoff=-1)


def test_decorating_a_task_again_wraps_its_function() -> None:
    inner = task(name="inner")(_double)
    outer = task(name="outer")(inner)
    assert outer.function is _double
    assert outer.name == "outer"


def test_timeout_zero_means_no_timeout() -> None:
    assert task(timeout=0)(_double).options.effective_timeout is None
    assert task(timeout=None)(_double).options.effective_timeout is None
    assert task(timeout=1.5)(_double).options.effective_timeout == 1.5


def test_retry_delays_grow_by_the_backoff() -> None:
    options = TaskOptions.build(retry_max_attempts=4, retry_delay=0.5, retry_backoff=3)
    assert options.retry_delays() == [0.5, 1.5, 4.5, 13.5]
    assert TaskOptions.build().retry_delays() == []


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_every_size_is_accepted(size: str) -> None:
    assert task(size=size)(_double).options.size == size


def test_max_parallel_is_kept() -> None:
    assert task(max_parallel=4)(_double).options.max_parallel == 4


def test_secret_requests_become_a_tuple() -> None:
    def needs(secrets: dict[str, str] = {}) -> None:  # noqa: B006 - the documents' signature
        return None

    assert task(secret_requests=["A", "B"])(needs).options.secret_requests == ("A", "B")


def test_output_storage_accepts_builtin_and_custom_storages(tmp_path: Any) -> None:
    class Custom:
        def store(self, reference: str, value: Any) -> Any:
            return reference

        def retrieve(self, reference: Any) -> Any:
            return None

    for storage in (InlineOutputStorage(), LocalFileOutputStorage(tmp_path), Custom()):
        assert task(output_storage=storage)(_double).options.output_storage is storage


# -- invalid options -------------------------------------------------------------------------------
INVALID: list[tuple[str, Any]] = [
    ("name", ""),
    ("name", "   "),
    ("name", 42),
    ("retry_max_attempts", -1),
    ("retry_max_attempts", 1.5),
    ("retry_max_attempts", True),
    ("retry_max_attempts", "3"),
    ("retry_delay", -0.1),
    ("retry_delay", "1"),
    ("retry_delay", float("nan")),
    ("retry_backoff", -2),
    ("retry_backoff", float("inf")),
    ("timeout", -1),
    ("timeout", "30"),
    ("timeout", True),
    ("fallback", "not a function"),
    ("fallback", 3),
    ("rollback", "not a function"),
    ("secret_requests", "API_KEY"),
    ("secret_requests", [""]),
    ("secret_requests", [42]),
    ("secret_requests", 7),
    ("output_storage", object()),
    ("output_storage", "files"),
    ("max_parallel", 0),
    ("max_parallel", -3),
    ("max_parallel", 2.0),
    ("size", "huge"),
    ("size", None),
]


def _with_secrets(secrets: dict[str, str] = {}) -> None:  # noqa: B006 - accepts secrets for every option
    return None


@pytest.mark.parametrize(("option", "value"), INVALID, ids=[f"{o}={v!r}" for o, v in INVALID])
@pytest.mark.parametrize("form", ["call", "with_options", "task.with_options"])
def test_invalid_option_fails_at_decoration_naming_the_option(option: str, value: Any, form: str) -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        if form == "call":
            task(**{option: value})(_with_secrets)
        elif form == "with_options":
            task.with_options(**{option: value})(_with_secrets)
        else:
            task(_with_secrets).with_options(**{option: value})
    assert f"'{option}'" in str(caught.value)
    assert isinstance(caught.value, ValueError)  # a TaskDefinitionError is a ValueError too


def test_unknown_option_is_named_with_the_valid_ones() -> None:
    with pytest.raises(TaskDefinitionError, match="unknown option 'retries'") as caught:
        task(retries=3)(_double)
    assert "retry_max_attempts" in str(caught.value)


def test_secret_requests_need_a_secrets_parameter() -> None:
    with pytest.raises(TaskDefinitionError, match="'secret_requests'"):
        task(secret_requests=["API_KEY"])(_double)


def test_secret_requests_accept_a_function_with_kwargs() -> None:
    def flexible(**kwargs: Any) -> Any:
        return kwargs

    assert task(secret_requests=["X"])(flexible).options.secret_requests == ("X",)


def test_decorating_something_that_is_not_callable_fails() -> None:
    with pytest.raises(TaskDefinitionError, match="function"):
        task(42)  # type: ignore[call-overload]


def test_mixing_the_decorator_forms_fails() -> None:
    with pytest.raises(TaskDefinitionError, match="not both"):
        task(_double, name="x")  # type: ignore[call-overload]


def test_options_are_frozen() -> None:
    options = task(_double).options
    with pytest.raises(AttributeError):
        options.retry_max_attempts = 5  # type: ignore[misc]
