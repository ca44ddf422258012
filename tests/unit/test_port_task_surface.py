"""The public surface of a task that code written for Flux or Numerous Tasks reads (issue 8).

Flux: ``t.func`` and every option as an attribute, ``isinstance(t, task)``. Numerous: ``t.config`` (a
``TaskConfig``), ``t.expects_task_control``, a warning for a direct call inside an active session, and
methods whose TaskControl follows ``self``/``cls``. This module uses ``from __future__ import
annotations``, so every ``TaskControl`` annotation here is a string, as in most user code.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from taskloom import Session, Task, TaskControl, TaskDefinitionError, WorkflowExecutionContext, task, workflow
from taskloom.outputs import LocalFileOutputStorage
from taskloom.task import TaskConfig


def fallback_handler(*args: Any, **kwargs: Any) -> str:
    return "fallback"


def rollback_handler(*args: Any, **kwargs: Any) -> None:
    return None


STORAGE = LocalFileOutputStorage("/tmp/taskloom-test-outputs-unused")

#: every option with a value other than its default, as ``t.<option>`` must show it
OPTIONS: dict[str, Any] = {
    "name": "custom_name",
    "retry_max_attempts": 3,
    "retry_delay": 0.5,
    "retry_backoff": 3,
    "timeout": 30,
    "fallback": fallback_handler,
    "rollback": rollback_handler,
    "secret_requests": ["API_KEY"],
    "output_storage": STORAGE,
    "max_parallel": 4,
    "size": "large",
    "cache": True,
    "cache_ttl": 60,
}


def configured(data: str, secrets: dict[str, str] | None = None) -> str:
    return data


# -- item 5: Flux's attributes ------------------------------------------------------------------------
def test_func_is_the_decorated_function() -> None:
    def double(x: int) -> int:
        return 2 * x

    made = task(double)

    assert made.func is double
    assert made.with_options(retry_max_attempts=1).func is double


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_option_given_is_readable_as_an_attribute(option: str) -> None:
    made = task.with_options(**OPTIONS)(configured)

    assert getattr(made, option) == OPTIONS[option]


def test_options_not_given_read_as_their_defaults() -> None:
    made = task(configured)

    assert (made.name, made.retry_max_attempts, made.retry_delay, made.retry_backoff) == ("configured", 0, 1, 2)
    assert (made.timeout, made.fallback, made.rollback, made.output_storage) == (None, None, None, None)
    assert (made.secret_requests, made.max_parallel, made.size) == ([], 1, "small")
    assert (made.cache, made.cache_ttl) == (False, None)


def test_secret_requests_reads_as_a_list_like_flux_and_cannot_change_the_task() -> None:
    made = task.with_options(secret_requests=("A", "B"))(configured)

    made.secret_requests.append("C")

    assert made.secret_requests == ["A", "B"]


def test_a_copy_made_with_options_shows_its_own_values_and_leaves_the_original() -> None:
    made = task.with_options(retry_max_attempts=2, timeout=5)(configured)

    copy = made.with_options(timeout=9)

    assert (copy.retry_max_attempts, copy.timeout) == (2, 9)
    assert made.timeout == 5


def test_option_attributes_are_read_only_so_a_shared_task_cannot_change_under_its_callers() -> None:
    made = task(configured)

    with pytest.raises(AttributeError):
        made.timeout = 5  # type: ignore[misc]
    assert made.timeout is None


@pytest.mark.parametrize(
    "make",
    [
        lambda fn: task(fn),
        lambda fn: task(name="n")(fn),
        lambda fn: task.with_options(retry_max_attempts=1)(fn),
        lambda fn: task(fn).with_options(timeout=3),
    ],
    ids=["bare", "with-kwargs", "with_options", "copy"],
)
def test_every_way_of_making_a_task_gives_an_instance_of_task_and_of_Task(make: Any) -> None:
    made = make(configured)

    assert isinstance(made, task)
    assert isinstance(made, Task)


def test_functions_and_other_objects_are_not_instances_of_task() -> None:
    assert not isinstance(configured, task)
    assert not isinstance(task, task)
    assert not isinstance("configured", task)
    assert issubclass(Task, task)
    assert not issubclass(int, task)


# -- item 5: the cache options are validated where they are written ------------------------------------
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"cache": "yes"}, "'cache'"),
        ({"cache": 1}, "'cache'"),
        ({"cache": True, "cache_ttl": 0}, "'cache_ttl'"),
        ({"cache": True, "cache_ttl": -5}, "'cache_ttl'"),
        ({"cache": True, "cache_ttl": "60"}, "'cache_ttl'"),
        ({"cache": True, "cache_ttl": float("inf")}, "'cache_ttl'"),
        ({"cache": True, "cache_ttl": True}, "'cache_ttl'"),
        ({"cache_ttl": 60}, "'cache_ttl' needs cache=True"),
    ],
)
def test_bad_cache_options_fail_at_decoration_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(TaskDefinitionError, match=named):
        task(**options)


def test_turning_the_cache_off_drops_its_ttl() -> None:
    made = task(cache=True, cache_ttl=60)(configured)

    off = made.with_options(cache=False)

    assert (off.cache, off.cache_ttl) == (False, None)


# -- item 8: a direct call inside an active session warns ----------------------------------------------
@task
def triple(x: int) -> int:
    return 3 * x


@task
async def atriple(x: int) -> int:
    return 3 * x


@task
def calls_triple(x: int) -> int:
    return triple(x) + 1


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        yield found


def test_a_direct_call_in_a_session_runs_and_warns_naming_the_task_and_the_session(
    caught: list[warnings.WarningMessage],
) -> None:
    with Session(name="nightly-batch"):
        result = triple(4)

    assert result == 12
    assert len(caught) == 1
    warning = caught[0]
    assert warning.category is UserWarning
    message = str(warning.message)
    assert "'triple' is executing directly despite active session 'nightly-batch'" in message
    assert "Use task.instance().start()" in message
    assert "triple.instance().start(" in message
    assert warning.filename == __file__  # it points at the call the user wrote


def test_an_async_task_called_directly_in_a_session_warns_too(caught: list[warnings.WarningMessage]) -> None:
    import asyncio

    with Session(name="s-async"):
        result = asyncio.run(atriple(2))

    assert result == 6
    assert ["atriple" in str(w.message) and "s-async" in str(w.message) for w in caught] == [True]


def test_a_direct_call_outside_any_session_does_not_warn(caught: list[warnings.WarningMessage]) -> None:
    assert triple(2) == 6

    assert caught == []


def test_a_task_called_by_a_task_warns_once_for_the_call_the_user_wrote(
    caught: list[warnings.WarningMessage],
) -> None:
    with Session(name="outer"):
        assert calls_triple(2) == 7

    assert [("calls_triple" in str(w.message), "'triple'" in str(w.message)) for w in caught] == [(True, False)]


def test_an_instance_whose_body_calls_a_task_does_not_warn(caught: list[warnings.WarningMessage]) -> None:
    with Session(name="instances"):
        assert calls_triple.instance().start(3).result(timeout=30) == 10

    assert caught == []


# -- item 10: methods receive the TaskControl after self / cls -----------------------------------------
class Worker:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    @task
    def scale(self, tc: TaskControl, value: int) -> tuple[Any, ...]:
        return (self, tc, value * self.factor)

    @task
    def report(self, tc: TaskControl, value: int) -> tuple[int, str, int]:
        return (self.factor, tc.task_definition_name, value * self.factor)

    @task
    def plain(self, value: int) -> int:
        return value * self.factor

    @classmethod
    @task
    def made_by_class_over_task(cls, tc: TaskControl, value: int) -> tuple[Any, ...]:
        return (cls, tc, value)

    @task
    @classmethod
    def made_by_task_over_class(cls, tc: TaskControl, value: int) -> tuple[Any, ...]:
        return (cls, tc, value)

    @task
    @staticmethod
    def static(value: int) -> int:
        return value + 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (Worker, (self.factor,))


def test_a_method_task_receives_its_object_and_a_control_after_self() -> None:
    worker = Worker(3)

    obj, tc, value = worker.scale(5)

    assert obj is worker
    assert isinstance(tc, TaskControl) and tc.task_definition_name == "scale"
    assert value == 15


def test_a_method_task_called_on_the_class_with_the_object_works_the_same() -> None:
    worker = Worker(2)

    obj, tc, value = Worker.scale(worker, 5)

    assert (obj, isinstance(tc, TaskControl), value) == (worker, True, 10)


def test_a_method_task_without_a_control_gets_only_its_arguments() -> None:
    assert Worker(4).plain(5) == 20
    assert Worker.plain.expects_task_control is False


@pytest.mark.parametrize("method", ["made_by_class_over_task", "made_by_task_over_class"])
def test_a_classmethod_task_receives_the_class_and_a_control_in_either_decorator_order(method: str) -> None:
    for owner in (Worker, Worker(1)):
        cls, tc, value = getattr(owner, method)(7)

        assert cls is Worker
        assert isinstance(tc, TaskControl)
        assert value == 7


def test_a_copy_with_options_binds_like_the_task_it_was_made_from() -> None:
    copy = Worker.__dict__["made_by_task_over_class"].with_options(retry_max_attempts=1)

    cls, tc, value = copy.__get__(Worker(1), Worker)(8)

    assert (cls, isinstance(tc, TaskControl), value) == (Worker, True, 8)


def test_a_staticmethod_task_binds_nothing() -> None:
    assert Worker.static(1) == 2
    assert Worker(9).static(1) == 2


def test_an_instance_of_a_bound_method_task_runs_with_its_object_and_the_instance_control() -> None:
    worker = Worker(10)

    with Session(name="methods"):
        instance = worker.scale.instance()
        obj, tc, value = instance.start(2).result(timeout=30)

    assert obj is worker
    assert tc.instance_id == instance.id
    assert value == 20
    assert instance.task.name == "scale"


@pytest.mark.parametrize("method", ["made_by_class_over_task", "made_by_task_over_class"])
def test_an_instance_of_a_classmethod_task_runs_with_the_class(method: str) -> None:
    with Session(name="classmethods"):
        cls, tc, value = getattr(Worker, method).instance().start(3).result(timeout=30)

    assert (cls, isinstance(tc, TaskControl), value) == (Worker, True, 3)


def test_a_bound_task_pickles_with_its_object_so_it_can_cross_into_a_worker_process() -> None:
    bound = Worker.scale.bind(Worker(6))

    copy = pickle.loads(pickle.dumps(bound))

    obj, _, value = copy(2)
    assert (type(obj), obj.factor, value) == (Worker, 6, 12)


@pytest.mark.parametrize("method", ["scale", "made_by_task_over_class"])
def test_a_task_defined_in_a_class_pickles_by_reference_and_keeps_its_binding(method: str) -> None:
    original = Worker.__dict__[method]

    copy = pickle.loads(pickle.dumps(original))

    assert isinstance(copy, Task) and copy.binding == original.binding and copy.fn is original.fn


@workflow
async def scaling(ctx: WorkflowExecutionContext[int]) -> tuple[int, str, int]:
    result: tuple[int, str, int] = await Worker(ctx.input).report(5)
    return result


@pytest.mark.store
def test_a_method_task_in_a_workflow_is_a_step_that_gets_its_control_and_warns_of_nothing(
    caught: list[warnings.WarningMessage],
) -> None:
    with Session(name="around-a-workflow"):
        ctx = scaling.run(3)

    assert ctx.output == (3, "report", 15)
    assert [e.name for e in ctx.events if e.type == "step_completed"] == ["report"]
    assert caught == []  # a step is not a direct call


# -- item 11: TaskConfig and expects_task_control ------------------------------------------------------
def test_config_is_a_task_config_with_the_name_max_parallel_and_size() -> None:
    made = task(max_parallel=5, size="medium", name="crunch")(configured)

    assert made.config == TaskConfig(max_parallel=5, size="medium", name="crunch")
    assert isinstance(made.config, TaskConfig)
    assert task(configured).config == TaskConfig(max_parallel=1, size="small", name="configured")


def test_config_is_a_snapshot_that_cannot_change_the_task() -> None:
    made = task(max_parallel=2)(configured)

    with pytest.raises(dataclasses.FrozenInstanceError):
        made.config.max_parallel = 9  # type: ignore[misc]
    assert made.max_parallel == 2


def test_expects_task_control_says_whether_a_control_is_passed() -> None:
    def with_control(tc: TaskControl, x: int) -> int:
        return x

    def without(x: int, tc: TaskControl | None = None) -> int:
        return x

    assert task(with_control).expects_task_control is True
    assert task(without).expects_task_control is False
    assert Worker.scale.expects_task_control is True
    assert Worker.__dict__["made_by_task_over_class"].expects_task_control is True


@pytest.mark.store
def test_a_task_a_workflow_steps_body_calls_directly_in_a_session_does_not_warn(
    caught: list[warnings.WarningMessage],
) -> None:
    @workflow
    async def adds_one_to_a_triple(ctx: WorkflowExecutionContext[int]) -> int:
        return await calls_triple(ctx.input)

    with Session(name="around-a-run"):
        ctx = adds_one_to_a_triple.run(2)  # the step's body calls triple() directly: part of the run

    assert ctx.output == 7
    assert [str(w.message) for w in caught] == []
