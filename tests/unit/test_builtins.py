"""Built-ins of ``taskloom.tasks``: recorded time, randomness and ids, durable sleep, and composition."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
import uuid
from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.events import EventType, NewEvent
from taskloom.store import default_store
from taskloom.tasks import choice, now, parallel, pause, pipeline, randint, randrange, sleep, uuid4

ran: list[str] = []


@pytest.fixture(autouse=True)
def reset_ran() -> None:
    ran.clear()


@task
def upper(text: str) -> str:
    ran.append(f"upper {text}")
    return text.upper()


@task
async def exclaim(text: str) -> str:
    ran.append(f"exclaim {text}")
    return text + "!"


def step_events(ctx: WorkflowExecutionContext[Any], kind: EventType) -> list[tuple[str | None, str | None]]:
    return [(e.step_id, e.name) for e in ctx.events if e.type is kind]


# -- now, random, uuid -----------------------------------------------------------------------------
def test_now_is_timezone_aware_utc() -> None:
    @workflow
    async def clock(ctx: WorkflowExecutionContext[None]) -> dt.datetime:
        return await now()

    before = dt.datetime.now(dt.UTC)
    value = clock.run().output
    assert value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)
    assert before <= value <= dt.datetime.now(dt.UTC)


def test_now_outside_a_workflow() -> None:
    value = asyncio.run(_await(now()))
    assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def test_recorded_values_are_replayed_identically() -> None:
    @workflow
    async def chance(ctx: WorkflowExecutionContext[None]) -> dict[str, Any]:
        values = {
            "now": await now(),
            "choice": await choice(["a", "b", "c", "d", "e", "f"]),
            "randint": await randint(1, 1_000_000),
            "randrange": await randrange(0, 1_000_000, 2),
            "randrange_stop": await randrange(1_000_000),
            "uuid4": await uuid4(),
        }
        values["resumed"] = await pause("again")
        return values

    random.seed(1)
    ctx = chance.run()
    recorded = {e.name: e.value for e in ctx.events if e.type is EventType.STEP_COMPLETED}
    random.seed(2)  # a replay that drew again would now draw different numbers
    out = chance.resume(ctx.execution_id, "yes").output
    assert out.pop("resumed") == "yes"
    assert out["now"] == recorded["now"]
    assert out["choice"] == recorded["choice"]
    assert out["randint"] == recorded["randint"]
    assert out["uuid4"] == recorded["uuid4"]
    assert [out["randrange"], out["randrange_stop"]] == [
        e.value for e in ctx.events if e.type is EventType.STEP_COMPLETED and e.name == "randrange"
    ]
    assert isinstance(out["uuid4"], uuid.UUID) and out["uuid4"].version == 4
    assert out["choice"] in "abcdef"
    assert 1 <= out["randint"] <= 1_000_000
    assert out["randrange"] % 2 == 0


def test_each_builtin_call_is_one_step_in_call_order() -> None:
    @workflow
    async def ids(ctx: WorkflowExecutionContext[None]) -> None:
        await now()
        await uuid4()
        await randint(1, 2)
        await choice([1])
        await randrange(3)

    ctx = ids.run()
    assert step_events(ctx, EventType.STEP_COMPLETED) == [
        ("1", "now"),
        ("2", "uuid4"),
        ("3", "randint"),
        ("4", "choice"),
        ("5", "randrange"),
    ]


def test_builtins_outside_a_workflow_just_do_the_thing() -> None:
    async def main() -> list[Any]:
        return [await choice(["only"]), await randint(4, 4), await randrange(7, 8), await uuid4()]

    picked, number, ranged, made = asyncio.run(main())
    assert (picked, number, ranged) == ("only", 4, 7)
    assert isinstance(made, uuid.UUID)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: choice([]), "options"),
        (lambda: choice(5), "options"),  # type: ignore[arg-type]
        (lambda: choice({1, 2}), "options"),  # type: ignore[arg-type]
        (lambda: randint(5, 1), "a <= b"),
        (lambda: randint(1.5, 2), "a=1.5"),  # type: ignore[arg-type]
        (lambda: randint(1, "2"), "b='2'"),  # type: ignore[arg-type]
        (lambda: randrange(0), "empty range"),
        (lambda: randrange(5, 1), "start=5, stop=1"),
        (lambda: randrange(0, 10, 0), "step"),
        (lambda: randrange(1.5), "start"),  # type: ignore[arg-type]
        (lambda: randrange(0, "9"), "stop"),  # type: ignore[arg-type]
        (lambda: randrange(0, 9, 1.0), "step"),  # type: ignore[arg-type]
        (lambda: sleep(-1), "duration"),
        (lambda: sleep(dt.timedelta(seconds=-1)), "duration"),
        (lambda: sleep("5"), "duration"),  # type: ignore[arg-type]
        (lambda: sleep(float("nan")), "duration"),
        (lambda: pause(""), "name"),
        (lambda: pause(3), "name"),  # type: ignore[arg-type]
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_argument(call: Any, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert named in str(caught.value)


def test_invalid_arguments_inside_a_workflow_fail_it_with_the_same_error() -> None:
    @workflow
    async def bad(ctx: WorkflowExecutionContext[None]) -> int:
        return await randint(3, 1)

    ctx = bad.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, ValueError)
    assert "randint" in str(ctx.output)


# -- durable sleep ---------------------------------------------------------------------------------
def test_sleep_records_its_wake_up_time_and_waits_for_it() -> None:
    @workflow
    async def napping(ctx: WorkflowExecutionContext[None]) -> str:
        await sleep(dt.timedelta(seconds=0.05))
        return "awake"

    started = time.time()
    ctx = napping.run()
    assert ctx.output == "awake"
    begun = next(e for e in ctx.events if e.type is EventType.STEP_STARTED and e.name == "sleep")
    assert begun.step_id == "1"
    assert begun.data["seconds"] == 0.05
    assert started + 0.05 <= begun.data["until"] + 1e-6
    ended = next(e for e in ctx.events if e.type is EventType.STEP_COMPLETED and e.name == "sleep")
    assert ended.timestamp.timestamp() >= begun.data["until"] - 0.002  # stored timestamps are rounded


def test_sleep_accepts_seconds_and_zero() -> None:
    @workflow
    async def napping(ctx: WorkflowExecutionContext[None]) -> str:
        await sleep(0)
        await sleep(0.01)
        return "awake"

    ctx = napping.run()
    assert ctx.output == "awake"
    assert step_events(ctx, EventType.STEP_COMPLETED) == [("1", "sleep"), ("2", "sleep")]


def test_interrupted_sleep_resumes_until_the_recorded_time_without_restarting() -> None:
    @workflow
    async def napping(ctx: WorkflowExecutionContext[None]) -> str:
        await sleep(0.4)
        return "awake"

    execution_id = napping.create()

    async def interrupted() -> None:
        running = asyncio.create_task(napping.arun(execution_id=execution_id))
        deadline = time.monotonic() + 10
        while not any(e.name == "sleep" for e in default_store().load_events(execution_id)):
            assert time.monotonic() < deadline, "the sleep never started"
            await asyncio.sleep(0.005)
        running.cancel()  # as if the process died mid-sleep
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(interrupted())
    assert napping.status(execution_id).status in ("running", "queued")  # interrupted: put back for the next owner
    ctx = napping.run(execution_id=execution_id)
    assert ctx.output == "awake"
    starts = [e for e in ctx.events if e.type is EventType.STEP_STARTED and e.name == "sleep"]
    assert len(starts) == 1  # the re-run kept the original wake-up time
    until = starts[0].data["until"]
    assert time.time() >= until
    completed = next(e for e in ctx.events if e.type is EventType.STEP_COMPLETED and e.name == "sleep")
    assert completed.timestamp.timestamp() >= until - 0.002


#: far below pytest-timeout's limit (pyproject.toml), far above what a re-run that does not sleep needs
RERUN_BOUND = 10.0


def test_rerun_of_a_sleep_that_started_long_ago_does_not_sleep_again() -> None:
    @workflow
    async def napping(ctx: WorkflowExecutionContext[None]) -> str:
        await sleep(dt.timedelta(hours=1))
        return "awake"

    execution_id = napping.create()
    an_hour_ago = time.time() - 3601
    # What a process that started the sleep an hour ago, then died, left in the store.
    default_store().append_events(
        execution_id,
        [NewEvent(EventType.STEP_STARTED, "1", "sleep", data={"until": an_hour_ago + 3600, "seconds": 3600})],
    )
    # Bounded here, well inside pytest-timeout's limit: were the re-run to sleep again, this fails with a
    # clear message after 10 s instead of the plugin killing the test after two minutes.
    try:
        ctx = asyncio.run(asyncio.wait_for(napping.arun(execution_id=execution_id), RERUN_BOUND))
    except TimeoutError:
        pytest.fail(f"the re-run of a sleep that ended long ago slept again (still asleep after {RERUN_BOUND}s)")
    assert ctx.output == "awake"


def test_sleep_outside_a_workflow_sleeps() -> None:
    started = time.monotonic()
    asyncio.run(_await(sleep(0.02)))
    assert time.monotonic() - started >= 0.019


# -- parallel --------------------------------------------------------------------------------------
def test_parallel_returns_results_in_the_order_given() -> None:
    second_done = asyncio.Event()

    @task
    async def slow_first() -> str:
        await asyncio.wait_for(second_done.wait(), 5)  # finishes after the second branch
        return "first"

    @task
    async def fast_second() -> str:
        second_done.set()
        return "second"

    @workflow
    async def ordered(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await parallel(slow_first(), fast_second(), upper("third"))

    ctx = ordered.run()
    assert ctx.output == ["first", "second", "THIRD"]
    assert sorted(step_events(ctx, EventType.STEP_COMPLETED)) == [
        ("1", "slow_first"),
        ("2", "fast_second"),
        ("3", "upper"),
    ]
    completed_order = [e.step_id for e in ctx.events if e.type is EventType.STEP_COMPLETED]
    assert completed_order.index("2") < completed_order.index("1")


def test_parallel_without_raise_on_error_lets_every_branch_finish_and_keeps_the_failure_in_place() -> None:
    @task
    def fails() -> None:
        raise ValueError("branch failed")

    @workflow
    async def mixed(ctx: WorkflowExecutionContext[None]) -> str:
        results = await parallel(fails(), upper("ok"), exclaim("ok"), raise_on_error=False)
        return repr(results)

    ctx = mixed.run()
    assert ctx.output == "[ValueError('branch failed'), 'OK', 'ok!']"
    assert sorted(ran) == ["exclaim ok", "upper ok"]
    assert [e.step_id for e in ctx.events if e.type is EventType.STEP_FAILED] == ["1"]
    assert sorted(e.step_id or "" for e in ctx.events if e.type is EventType.STEP_COMPLETED) == ["2", "3"]


def test_parallel_outside_a_workflow() -> None:
    assert asyncio.run(parallel(exclaim("a"), exclaim("b"))) == ["a!", "b!"]


def test_parallel_of_nothing_is_an_empty_list() -> None:
    @workflow
    async def empty(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        return await parallel()

    assert empty.run().output == []


# -- pipeline --------------------------------------------------------------------------------------
def test_pipeline_feeds_each_result_to_the_next_task() -> None:
    @workflow
    async def piped(ctx: WorkflowExecutionContext[str]) -> str:
        return await pipeline(upper, exclaim, lambda text: text * 2, input=ctx.input)

    ctx = piped.run("hi")
    assert ctx.output == "HI!HI!"
    assert ran == ["upper hi", "exclaim HI"]
    assert step_events(ctx, EventType.STEP_COMPLETED) == [("1", "upper"), ("2", "exclaim")]


def test_pipeline_outside_a_workflow() -> None:
    assert asyncio.run(pipeline(upper, exclaim, input="go")) == "GO!"


def test_pipeline_needs_tasks() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        asyncio.run(pipeline(input=1))
    with pytest.raises(TypeError, match="argument 2"):
        asyncio.run(pipeline(upper, "not a task", input="x"))  # type: ignore[arg-type]


# -- map -------------------------------------------------------------------------------------------
def test_map_in_a_workflow_returns_results_in_order_with_one_step_per_item() -> None:
    @workflow
    async def mapped(ctx: WorkflowExecutionContext[list[str]]) -> Any:
        first = await upper("before")
        return first, await exclaim.map(ctx.input), await upper.map(ctx.input)

    ctx = mapped.run(["a", "b", "c"])
    assert ctx.output == ("BEFORE", ["a!", "b!", "c!"], ["A", "B", "C"])
    assert sorted(step_events(ctx, EventType.STEP_COMPLETED), key=lambda s: int(s[0] or 0)) == [
        ("1", "upper"),
        ("2", "exclaim"),
        ("3", "exclaim"),
        ("4", "exclaim"),
        ("5", "upper"),
        ("6", "upper"),
        ("7", "upper"),
    ]
    started = {e.step_id: e.value for e in ctx.events if e.type is EventType.STEP_STARTED}
    assert [started[i] for i in ("2", "3", "4")] == [(("a",), {}), (("b",), {}), (("c",), {})]


def test_map_step_ids_are_the_same_on_every_run() -> None:
    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await upper.map(["x", "y"])

    one, two = mapped.run(), mapped.run()

    def ids(ctx: WorkflowExecutionContext[Any]) -> list[tuple[str | None, Any]]:
        return sorted((e.step_id, e.value) for e in ctx.events if e.type is EventType.STEP_COMPLETED)

    assert ids(one) == ids(two) == [("1", "X"), ("2", "Y")]


def test_map_of_nothing_is_an_empty_list() -> None:
    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await upper.map([])

    assert mapped.run().output == []


def test_map_inside_an_async_step_gets_ids_under_it() -> None:
    @task
    async def fan_out(items: list[str]) -> list[str]:
        return await upper.map(items)  # type: ignore[no-any-return]

    @workflow
    async def nested(ctx: WorkflowExecutionContext[None]) -> list[str]:
        return await fan_out(["p", "q"])

    ctx = nested.run()
    assert ctx.output == ["P", "Q"]
    assert sorted(e.step_id or "" for e in ctx.events if e.type is EventType.STEP_COMPLETED) == [
        "1",
        "1.1",
        "1.2",
    ]


def test_map_with_a_failing_item_raises_its_error_after_the_others_finish() -> None:
    @task
    def picky(x: int) -> int:
        if x == 2:
            raise ArithmeticError("two")
        ran.append(str(x))
        return x

    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await picky.map([1, 2, 3])
        except ArithmeticError as error:
            return str(error)
        return "no error"

    assert mapped.run().output == "two"
    assert sorted(ran) == ["1", "3"]
