"""Tasks called outside a workflow behave like their functions, with the task's policy applied.

Also TaskControl injection: a first parameter annotated ``TaskControl`` (here as a string, since this
module uses ``from __future__ import annotations``) receives a control whose calls go to the current
handler; callers never pass it.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from taskloom import Task, TaskControl, TaskDefinitionError, task
from taskloom.runtime.control import TaskControlHandler, get_task_control_handler, set_task_control_handler


@task
def shout(text: str) -> str:
    return text.upper()


@task
async def ashout(text: str) -> str:
    await asyncio.sleep(0)
    return text.upper()


class RecordingHandler(TaskControlHandler):
    """Keeps every call it receives; log/progress/status only (the base supplies the rest)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
        self.calls.append(("log", task_control.task_definition_name, (level, message)))

    def update_progress(self, task_control: TaskControl, progress: float, status: str | None) -> None:
        self.calls.append(("progress", task_control.task_definition_name, (progress, status)))

    def update_status(self, task_control: TaskControl, status: str) -> None:
        self.calls.append(("status", task_control.task_definition_name, status))


@pytest.fixture
def handler() -> Iterator[RecordingHandler]:
    previous = get_task_control_handler()
    recording = RecordingHandler()
    set_task_control_handler(recording)
    yield recording
    set_task_control_handler(previous)


# -- sync and async --------------------------------------------------------------------------------
def test_sync_task_returns_its_value() -> None:
    assert shout("hi") == "HI"


def test_async_task_returns_a_coroutine() -> None:
    pending = ashout("hi")
    assert inspect.iscoroutine(pending)
    assert asyncio.run(pending) == "HI"


def test_async_task_can_be_awaited_in_the_callers_loop() -> None:
    async def caller() -> list[str]:
        return [await ashout("a"), await ashout("b")]

    assert asyncio.run(caller()) == ["A", "B"]


def test_keyword_arguments_and_defaults_reach_the_function() -> None:
    @task
    def greet(name: str, greeting: str = "hello") -> str:
        return f"{greeting} {name}"

    assert greet("ada") == "hello ada"
    assert greet("ada", greeting="hi") == "hi ada"


def test_bad_arguments_fail_naming_the_task_without_retrying() -> None:
    calls: list[int] = []

    @task(name="strict", retry_max_attempts=3, retry_delay=0.01)
    def strict(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(TypeError, match="'strict'"):
        strict(1, 2)  # type: ignore[call-arg]
    assert calls == []


def test_exceptions_propagate_unchanged() -> None:
    error = LookupError("missing")

    @task
    def fails() -> None:
        raise error

    with pytest.raises(LookupError) as caught:
        fails()
    assert caught.value is error


def test_policy_applies_to_direct_calls() -> None:
    attempts: list[int] = []

    @task(retry_max_attempts=2, retry_delay=0.01, fallback=lambda: "fallback")
    def flaky() -> str:
        attempts.append(1)
        raise RuntimeError("down")

    assert flaky() == "fallback"
    assert len(attempts) == 3


def test_a_task_can_call_another_task_directly() -> None:
    @task
    def outer(text: str) -> str:
        return shout(text) + "!"

    assert outer("go") == "GO!"


def test_with_options_copy_is_callable_directly() -> None:
    renamed = shout.with_options(name="loud")
    assert renamed("x") == "X"
    assert renamed.name == "loud"


def test_task_on_a_method_binds_self() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        @task
        def add(self, n: int) -> int:
            self.total += n
            return self.total

    counter = Counter()
    assert counter.add(2) == 2
    assert counter.add(3) == 5


def test_module_level_task_pickles_by_reference() -> None:
    copy = pickle.loads(pickle.dumps(shout.with_options(retry_max_attempts=1)))
    assert isinstance(copy, Task)
    assert copy.function is shout.function
    assert copy.options.retry_max_attempts == 1
    assert copy("p") == "P"


def test_attributes_of_the_function_do_not_overwrite_the_tasks() -> None:
    class Job:
        """A callable object whose attributes share names with the task's."""

        def __init__(self) -> None:
            self.name = "the job's own name"
            self.options = "the job's own options"

        def __call__(self, x: int) -> int:
            return x

    made = task(name="job", retry_max_attempts=1)(Job())
    assert made.name == "job"
    assert made.options.retry_max_attempts == 1
    assert made(3) == 3


def test_repr_says_sync_or_async() -> None:
    assert repr(shout) == "<Task 'shout' (sync)>"
    assert repr(ashout) == "<Task 'ashout' (async)>"


# -- map outside a workflow ------------------------------------------------------------------------
def test_map_of_a_sync_task_returns_a_list_in_order() -> None:
    assert shout.map(["a", "b", "c"]) == ["A", "B", "C"]
    assert shout.map([]) == []
    assert shout.map(iter(["z"])) == ["Z"]


def test_map_of_a_sync_task_runs_items_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=5)

    @task
    def meet(n: int) -> int:
        barrier.wait()  # raises BrokenBarrierError after 5 s if the items ran one after the other
        return n * 10

    assert meet.map([1, 2]) == [10, 20]


def test_map_of_an_async_task_returns_a_coroutine_of_the_list() -> None:
    pending = ashout.map(["x", "y"])
    assert inspect.iscoroutine(pending)
    assert asyncio.run(pending) == ["X", "Y"]


# -- TaskControl -----------------------------------------------------------------------------------
def test_task_control_is_injected_and_not_passed_by_the_caller(handler: RecordingHandler) -> None:
    seen: list[TaskControl] = []

    @task(name="reporting")
    def reporting(tc: TaskControl, n: int) -> int:
        seen.append(tc)
        tc.log("working", level="warning")
        tc.update_progress(50, "half")
        tc.update_status("almost")
        return n + 1

    assert reporting.wants_control
    assert reporting(1) == 2  # type: ignore[call-arg]
    assert isinstance(seen[0], TaskControl)
    assert seen[0].task_definition_name == "reporting"
    assert seen[0].progress == 50
    assert seen[0].status == "almost"
    assert handler.calls == [
        ("log", "reporting", ("warning", "working")),
        ("progress", "reporting", (50.0, "half")),
        ("status", "reporting", "almost"),
    ]


def test_task_control_in_an_async_task(handler: RecordingHandler) -> None:
    @task(name="areporting")
    async def areporting(tc: TaskControl) -> str:
        tc.update_progress(100)
        return tc.task_definition_name

    assert asyncio.run(areporting()) == "areporting"  # type: ignore[call-arg]
    assert handler.calls == [("progress", "areporting", (100.0, None))]


def test_task_control_annotated_with_the_class_itself(handler: RecordingHandler) -> None:
    def body(tc, text):  # type: ignore[no-untyped-def]
        tc.log(text)
        return text

    body.__annotations__ = {"tc": TaskControl}  # a real class, not the string this module would make
    made = task(body)
    assert made.wants_control
    assert made("hello") == "hello"
    assert handler.calls == [("log", "body", ("info", "hello"))]


def test_each_direct_call_gets_its_own_control() -> None:
    ids: list[str] = []

    @task
    def ident(tc: TaskControl) -> None:
        ids.append(tc.instance_id)

    ident()  # type: ignore[call-arg]
    ident()  # type: ignore[call-arg]
    assert len(set(ids)) == 2


def test_a_parameter_not_annotated_task_control_is_left_to_the_caller() -> None:
    @task
    def takes(tc: int, other: str = "") -> int:
        return tc

    assert not takes.wants_control
    assert takes(5) == 5


def test_only_the_first_parameter_is_injected() -> None:
    @task
    def second(n: int, tc: TaskControl | None = None) -> bool:
        return tc is None

    assert not second.wants_control
    assert second(1) is True


def test_progress_outside_zero_to_hundred_is_a_value_error() -> None:
    @task
    def overshoots(tc: TaskControl) -> None:
        tc.update_progress(120)

    with pytest.raises(ValueError, match="between 0 and 100"):
        overshoots()  # type: ignore[call-arg]


def test_workflow_decorator_refuses_a_sync_function() -> None:
    from taskloom import workflow

    def not_async(ctx: Any) -> None:
        return None

    with pytest.raises(TaskDefinitionError, match="async def"):
        workflow(not_async)
