"""Graphs, built-ins and map: behaviours the older tests left open (issue 14).

- An unconditional edge is taken whatever its source returned, falsy results (0, "", None, ...) too.
- An edge out of a node the start cannot reach is valid: validate() accepts it and the run ignores it.
- ``randrange`` honours its step, ``randint`` reaches its upper end, over many draws.
- A replay returns the recorded values whatever the random seed is now (checked under many seeds, so
  a replay that drew again could not pass by luck).
- Running a ``map`` again (after a pause, or after being interrupted mid-map) writes no second start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import random
import time
import warnings
from collections import Counter
from typing import Any

import pytest
from processes import wait_for

from taskloom import GraphError, WorkflowError, WorkflowExecutionContext, task, workflow
from taskloom.events import EventType
from taskloom.recovery import interrupted
from taskloom.store import default_store
from taskloom.tasks import Graph, choice, now, parallel, pause, pipeline, randint, randrange, sleep, uuid4

DEADLINE = 10.0
ran: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def reset_ran() -> None:
    ran.clear()


def _run(awaitable: Any) -> Any:
    async def main() -> Any:
        return await awaitable

    return asyncio.run(main())


# -- graphs: falsy results still take unconditional edges -------------------------------------------
FALSY = [0, 0.0, "", None, False, [], {}]


@pytest.mark.parametrize("falsy", FALSY, ids=[repr(v) for v in FALSY])
def test_an_unconditional_edge_is_taken_after_a_falsy_result(falsy: Any) -> None:
    def produce() -> Any:
        ran["produce"] += 1
        return falsy

    def consume(value: Any) -> str:
        ran["consume"] += 1
        return f"got {value!r}"

    graph = (
        Graph("falsy")
        .add_node("produce", produce)
        .add_node("consume", consume)
        .add_edge("produce", "consume")
        .start_with("produce")
        .end_with("consume")
    )
    assert _run(graph()) == f"got {falsy!r}"
    assert ran == {"produce": 1, "consume": 1}


def test_an_unconditional_edge_after_a_falsy_result_is_taken_in_a_workflow() -> None:
    @task
    def zero() -> int:
        return 0

    @task
    def after(value: int) -> str:
        return f"after {value}"

    graph = (
        Graph("falsy_in_workflow")
        .add_node("zero", zero)
        .add_node("after", after)
        .add_edge("zero", "after")
        .start_with("zero")
        .end_with("after")
    )

    @workflow
    async def flow(ctx: WorkflowExecutionContext[None]) -> Any:
        return await graph()

    ctx = flow.run()
    assert ctx.output == "after 0"
    assert [e.name for e in ctx.events if e.type is EventType.STEP_COMPLETED] == ["zero", "after"]


def test_a_condition_returning_a_truthy_non_bool_takes_its_edge_and_a_falsy_one_does_not() -> None:
    graph = (
        Graph("truthy")
        .add_node("start", lambda: 5)
        .add_node("yes", lambda v: f"yes {v}")
        .add_node("no", lambda v: f"no {v}")
        .add_edge("start", "yes", condition=lambda v: [v])  # a non-empty list: truthy
        .add_edge("start", "no", condition=lambda v: "")  # an empty string: falsy
        .start_with("start")
        .end_with("yes")
        .end_with("no")
    )
    assert _run(graph()) == "yes 5"


# -- graphs: edges out of unreachable nodes ---------------------------------------------------------
def graph_with_an_orphan() -> Graph:
    """start -> end, and orphan -> end where nothing leads to orphan."""
    return (
        Graph("orphan")
        .add_node("start", lambda x: ran.update(["start"]) or x + 1)
        .add_node("orphan", lambda x: ran.update(["orphan"]) or 1000)
        .add_node("end", lambda x: ran.update(["end"]) or x * 2)
        .add_edge("start", "end")
        .add_edge("orphan", "end")
        .start_with("start")
        .end_with("end")
    )


def test_an_edge_out_of_an_unreachable_node_is_valid() -> None:
    graph = graph_with_an_orphan()
    assert graph.validate() is graph


def test_an_edge_out_of_an_unreachable_node_is_ignored_when_running() -> None:
    assert _run(graph_with_an_orphan()(1)) == 4  # end got start's result, not a join with orphan's
    assert ran == {"start": 1, "end": 1}


def test_an_unreachable_end_node_is_still_refused() -> None:
    graph = graph_with_an_orphan().end_with("orphan")
    with pytest.raises(GraphError, match="end node 'orphan' cannot be reached from start node 'start'"):
        graph.validate()


def test_a_cycle_among_unreachable_nodes_is_still_refused() -> None:
    graph = graph_with_an_orphan().add_node("loop", lambda x: x).add_edge("orphan", "loop").add_edge("loop", "orphan")
    with pytest.raises(GraphError, match="cycle"):
        graph.validate()


def test_a_node_reached_only_through_a_skipped_branch_is_skipped_not_waited_for() -> None:
    """start -> a (never taken) -> b -> end, and start -> end: end runs with start's result alone."""
    graph = (
        Graph("skips")
        .add_node("start", lambda: 1)
        .add_node("a", lambda v: ran.update(["a"]) or v)
        .add_node("b", lambda v: ran.update(["b"]) or v)
        .add_node("end", lambda v: v)
        .add_edge("start", "a", condition=lambda v: False)
        .add_edge("a", "b")
        .add_edge("b", "end")
        .add_edge("start", "end")
        .start_with("start")
        .end_with("end")
    )
    assert _run(graph()) == 1
    assert ran == {}


# -- built-ins: the whole range, nothing outside it -------------------------------------------------
DRAWS = 3000


def test_randint_reaches_both_ends_and_nothing_outside() -> None:
    seen = {_run(randint(1, 3)) for _ in range(DRAWS)}
    assert seen == {1, 2, 3}


def test_randint_of_one_value_is_that_value() -> None:
    assert {_run(randint(-4, -4)) for _ in range(20)} == {-4}


def test_randrange_honours_its_step() -> None:
    seen = {_run(randrange(0, 20, 5)) for _ in range(DRAWS)}
    assert seen == {0, 5, 10, 15}


def test_randrange_honours_a_negative_step() -> None:
    seen = {_run(randrange(10, 0, -3)) for _ in range(DRAWS)}
    assert seen == {10, 7, 4, 1}


def test_randrange_with_a_start_and_stop_only() -> None:
    seen = {_run(randrange(3, 6)) for _ in range(DRAWS)}
    assert seen == {3, 4, 5}


def test_randrange_with_stop_only_starts_at_zero() -> None:
    seen = {_run(randrange(4)) for _ in range(DRAWS)}
    assert seen == {0, 1, 2, 3}


def test_randint_and_randrange_in_a_workflow_stay_in_range() -> None:
    @workflow
    async def draws(ctx: WorkflowExecutionContext[None]) -> list[list[int]]:
        ints = [await randint(1, 2) for _ in range(40)]
        stepped = [await randrange(1, 10, 4) for _ in range(40)]
        return [ints, stepped]

    random.seed(7)
    ints, stepped = draws.run().output
    assert set(ints) == {1, 2}
    assert set(stepped) == {1, 5, 9}


# -- replay returns the recorded values under any seed -----------------------------------------------
def test_replayed_values_are_the_recorded_ones_whatever_the_seed() -> None:
    """Each resume replays every value step; under ten different seeds every replay sees the same values."""
    observed: list[dict[str, Any]] = []
    replays = 10

    @workflow
    async def chance(ctx: WorkflowExecutionContext[None]) -> int:
        values = {
            "now": await now(),
            "choice": await choice(["a", "b", "c", "d", "e", "f"]),
            "randint": await randint(1, 6),
            "randrange": await randrange(0, 12, 2),
            "uuid4": await uuid4(),
        }
        observed.append(values)
        for number in range(replays):
            await pause(f"again {number}")
        return len(observed)

    random.seed(0)
    ctx = chance.run()
    assert ctx.status == "paused"
    recorded = {e.name: e.value for e in ctx.events if e.type is EventType.STEP_COMPLETED}
    assert observed == [recorded]
    for seed in range(1, replays + 1):
        random.seed(seed * 7919)
        ctx = chance.resume(ctx.execution_id, seed)
    assert ctx.has_succeeded, ctx.output
    assert len(observed) == replays + 1
    assert all(values == recorded for values in observed)


# -- map: one start per item, however often it runs ----------------------------------------------------
def start_counts(execution_id: str) -> Counter[str | None]:
    return Counter(e.step_id for e in default_store().load_events(execution_id) if e.type is EventType.STEP_STARTED)


def test_rerunning_a_map_after_a_pause_writes_no_second_start() -> None:
    @task
    def square(n: int) -> int:
        ran["square"] += 1
        return n * n

    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> list[int]:
        squares: list[int] = await square.map([1, 2, 3])
        await pause("look")
        return squares

    ctx = mapped.run()
    assert ctx.status == "paused"
    ctx = mapped.resume(ctx.execution_id, None)
    assert ctx.output == [1, 4, 9]
    assert ran["square"] == 3
    counts = start_counts(ctx.execution_id)
    assert counts == {"1": 1, "2": 1, "3": 1, "4": 1}, counts


def test_rerunning_a_map_interrupted_mid_way_writes_no_second_start() -> None:
    """Items 1 and 2 finish, item 3 is cut off while running; the re-run runs 3 again under its one start."""
    blocked = asyncio.Event()
    release: dict[str, asyncio.Event] = {}

    @task
    async def item(n: int) -> int:
        ran[f"item {n}"] += 1
        if n == 3 and "first" not in release:
            release["first"] = asyncio.Event()
            blocked.set()
            await release["first"].wait()  # cancelled: as if the process died here
        return n * 10

    @workflow
    async def mapped(ctx: WorkflowExecutionContext[None]) -> list[int]:
        values: list[int] = await item.map([1, 2, 3])
        return values

    execution_id = mapped.create()

    async def interrupted() -> None:
        running = asyncio.create_task(mapped.arun(execution_id=execution_id))
        await asyncio.wait_for(blocked.wait(), DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while sum(1 for e in default_store().load_events(execution_id) if e.type is EventType.STEP_COMPLETED) < 2:
            assert time.monotonic() < deadline, "items 1 and 2 never completed"
            await asyncio.sleep(0.005)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(interrupted())
    assert start_counts(execution_id) == {"1": 1, "2": 1, "3": 1}
    ctx = mapped.run(execution_id=execution_id)
    assert ctx.output == [10, 20, 30]
    assert ran == {"item 1": 1, "item 2": 1, "item 3": 2}
    assert start_counts(execution_id) == {"1": 1, "2": 1, "3": 1}


# -- clear errors naming the argument (exact wording: a user reads these) ---------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: randrange(1.5), "randrange(): start must be an integer, got 1.5"),  # type: ignore[arg-type]
        (lambda: randrange(0, "9"), "randrange(): stop must be an integer, got '9'"),  # type: ignore[arg-type]
        (lambda: randrange(0, 9, 1.0), "randrange(): step must be an integer, got 1.0"),  # type: ignore[arg-type]
        (lambda: randrange(True), "randrange(): start must be an integer, got True"),
        (lambda: randrange(0, 10, 0), "randrange(): step must not be zero"),
        (lambda: sleep(-1), "sleep(): duration must be seconds >= 0 or a timedelta, got -1"),
        (lambda: pause("p", timeout=-2), "pause('p'): timeout must be seconds >= 0 or a timedelta, got -2"),
        (lambda: pause("p", timeout="soon"), "pause('p'): timeout must be seconds >= 0"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_refused_naming_the_argument_exactly(call: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value).startswith(message), str(caught.value)


def test_pipeline_of_nothing_says_what_it_needs() -> None:
    with pytest.raises(ValueError) as caught:
        _run(pipeline())
    assert str(caught.value) == "pipeline() needs at least one task"


def test_pause_outside_a_workflow_names_the_pause() -> None:
    with pytest.raises(WorkflowError) as caught:
        pause("approval")
    assert str(caught.value) == "pause('approval') only works inside a running workflow"


# -- pause: its name and timeout reach the execution -------------------------------------------------------
def test_a_pause_records_its_name_and_deadline_and_times_out_after_it() -> None:
    @workflow
    async def approval(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            decision = await pause("manager", timeout=dt.timedelta(seconds=0.2))
        except TimeoutError:
            return "timed out"
        return f"decided {decision}"

    before = time.time()
    ctx = approval.run()
    assert ctx.status == "paused"
    started = next(e for e in ctx.events if e.type is EventType.STEP_STARTED and e.name == "pause")
    assert started.data["pause"] == "manager"
    assert before + 0.2 <= started.data["deadline"] <= time.time() + 0.2
    paused = next(e for e in ctx.events if e.type is EventType.EXECUTION_PAUSED)
    assert paused.name == "manager"
    deadline = started.data["deadline"]
    wait_for(lambda: time.time() >= deadline, timeout=DEADLINE, what="the pause's deadline")
    ctx = approval.run(execution_id=ctx.execution_id)
    assert ctx.output == "timed out"


def test_a_pause_without_timeout_has_no_deadline_and_waits_for_its_resume() -> None:
    @workflow
    async def approval(ctx: WorkflowExecutionContext[None]) -> str:
        return f"decided {await pause('manager')}"

    ctx = approval.run()
    started = next(e for e in ctx.events if e.type is EventType.STEP_STARTED and e.name == "pause")
    assert started.data == {"pause": "manager"}
    assert ctx.execution_id not in {r.id for r in interrupted(default_store())}  # no worker or recover wakes it
    assert approval.resume(ctx.execution_id, "yes").output == "decided yes"


# -- parallel: a pause in one branch wins over an error in another ------------------------------------------
def test_a_pause_in_one_branch_wins_over_a_failure_in_another() -> None:
    @task
    async def fails() -> None:  # fails without yielding: settled by the time parallel() looks, as the pause is
        raise ValueError("branch failed")

    @workflow
    async def mixed(ctx: WorkflowExecutionContext[None]) -> Any:
        return await parallel(fails(), pause("wait here"))

    ctx = mixed.run()
    assert ctx.status == "paused", ctx.output
    assert [e.type for e in ctx.events if e.step_id == "1"] == [EventType.STEP_STARTED, EventType.STEP_FAILED]


# -- graphs: names in messages, insertion order, async conditions ------------------------------------------
def test_graph_errors_name_the_graph() -> None:
    graph = Graph("orders")
    assert graph.name == "orders"
    with pytest.raises(GraphError) as caught:
        graph.validate()
    assert str(caught.value) == "graph 'orders': no start node; call start_with(name)"
    with pytest.raises(GraphError) as caught:
        graph.add_node("", lambda: None)
    assert str(caught.value) == "graph 'orders': node name must be a non-empty string, got ''"
    assert "orders" in repr(graph)


def test_a_condition_that_raises_names_its_error_type() -> None:
    graph = (
        Graph("raising")
        .add_node("a", lambda: 0)
        .add_node("b", lambda v: v)
        .add_edge("a", "b", condition=lambda v: 1 / v > 0)
        .start_with("a")
        .end_with("b")
    )
    with pytest.raises(GraphError) as caught:
        _run(graph())
    assert "condition of edge 'a' -> 'b' raised ZeroDivisionError: division by zero" in str(caught.value)


def test_an_async_condition_is_awaited_and_leaves_no_never_awaited_coroutine() -> None:
    async def condition(value: Any) -> bool:
        return False  # a coroutine object is truthy: not awaiting it would take the edge

    graph = (
        Graph("async_condition")
        .add_node("a", lambda: 1)
        .add_node("b", lambda v: v)
        .add_edge("a", "b", condition=condition)
        .start_with("a")
        .end_with("a")
        .end_with("b")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _run(graph()) == 1  # only "a" ended: the edge to "b" was not taken
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_nodes_added_before_the_nodes_they_wait_for_still_run() -> None:
    """Scheduling walks nodes in the order they were added; a node added early may wait on later ones."""
    graph = (
        Graph("late_sources")
        .add_node("end", lambda upstream: upstream)
        .add_node("b", lambda v: ran.update(["b"]) or v)
        .add_node("a", lambda v: ran.update(["a"]) or v)
        .add_node("start", lambda: 7)
        .add_node("mid", lambda v: v + 1)
        .add_edge("start", "a", condition=lambda v: False)  # a is skipped, and b behind it
        .add_edge("a", "b")
        .add_edge("b", "end")
        .add_edge("start", "mid")
        .add_edge("mid", "end")
        .add_edge("start", "end")
        .start_with("start")
        .end_with("end")
    )
    assert _run(graph()) == {"start": 7, "mid": 8}
    assert ran == {}


def test_nodes_ready_together_run_together_even_with_a_skipped_node_between_them() -> None:
    """x and y are ready in the same wave; a skipped node added between them must not split the wave.

    Each waits (boundedly) for the other to have started, so they pass only when run concurrently.
    """
    started = {"x": asyncio.Event(), "y": asyncio.Event()}

    def together(name: str, other: str) -> Any:
        async def node(value: int) -> str:
            started[name].set()
            await asyncio.wait_for(started[other].wait(), DEADLINE)
            return name

        return node

    graph = (
        Graph("one_wave")
        .add_node("start", lambda: 1)
        .add_node("x", together("x", "y"))
        .add_node("skipped", lambda v: v)
        .add_node("y", together("y", "x"))
        .add_node("end", lambda upstream: sorted(upstream.values()))
        .add_edge("start", "x")
        .add_edge("start", "skipped", condition=lambda v: False)
        .add_edge("start", "y")
        .add_edge("x", "end")
        .add_edge("y", "end")
        .start_with("start")
        .end_with("end")
    )
    assert _run(graph()) == ["x", "y"]
