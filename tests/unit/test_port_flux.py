"""Code written for Flux runs on taskloom with only its imports rewritten (issue 8, Flux items 1-4).

1. ``wf.run(execution_id=ID)`` of a paused execution continues it (its ``pause`` returns None), under a
   lease like any run, through the same deferred resume writes as ``resume``; a pause deadline still holds.
2. ``parallel(*calls, max_concurrent=N, raise_on_error=True)``: a bound on running branches, the first
   failure cancelling the others at once, failures kept in place, a pause not waiting for slow siblings.
3. A Graph edge condition may be ``async def``: it is awaited.
4. ``pause(name, output=value)`` puts ``value`` on the pause event, for whoever continues it to see.

Every test here runs on both stores (tests/unit/conftest.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
import threading
import time
import warnings
from collections import Counter
from typing import Any

import httpx
import pytest
from processes import wait_for

from taskloom import TaskControl, WorkflowExecutionContext, serde, task, workflow
from taskloom.cli.main import main as cli_main
from taskloom.errors import ExecutionStateError, SerializationError, TaskTimeoutError
from taskloom.events import Event, EventType
from taskloom.leases import new_owner
from taskloom.secret_store import default_secret_store
from taskloom.store import default_store
from taskloom.tasks import Graph, parallel, pause

#: generous upper bound for anything that should take milliseconds; a branch that is never released
#: would wait this long
SLOW_SECONDS = 30.0

ran: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def reset_ran() -> None:
    ran.clear()


def of_type(events: list[Event], kind: EventType, step_id: str | None = None) -> list[Event]:
    return [e for e in events if e.type is kind and (step_id is None or e.step_id == step_id)]


def outcome_of(execution_id: str, step_id: str) -> list[EventType]:
    """The outcomes (completed/failed) the store has for one step."""
    events = default_store().load_events(execution_id)
    outcomes = (EventType.STEP_COMPLETED, EventType.STEP_FAILED)
    return [e.type for e in events if e.step_id == step_id and e.type in outcomes]


# == 1. run(execution_id=...) continues a paused execution ==============================================
@task
def prepare(item: str) -> str:
    ran["prepare"] += 1
    return f"{item} prepared"


@workflow
async def approval(ctx: WorkflowExecutionContext[str]) -> str:
    prepared = await prepare(ctx.input)
    decision = await pause("sign-off")
    return f"{prepared}, decision {decision!r}"


def test_run_by_id_continues_a_paused_execution_and_its_pause_returns_none() -> None:
    ctx = approval.run("invoice 7")
    assert ctx.is_paused

    done = approval.run(execution_id=ctx.execution_id)

    assert done.has_succeeded, done.output
    assert done.output == "invoice 7 prepared, decision None"
    assert ran["prepare"] == 1  # replayed from the store, not run again
    resumed = of_type(done.events, EventType.EXECUTION_RESUMED)
    assert [(e.step_id, e.value) for e in resumed] == [("2", None)]
    assert approval.run(execution_id=ctx.execution_id).output == done.output  # finished: returned as it is


def test_resume_with_a_value_still_passes_that_value() -> None:
    ctx = approval.run("invoice 8")
    assert approval.resume(ctx.execution_id, "approved").output == "invoice 8 prepared, decision 'approved'"


def test_arun_by_id_continues_a_paused_execution_in_async_code() -> None:
    async def main() -> WorkflowExecutionContext[str]:
        ctx = await approval.arun("invoice 9")
        assert ctx.is_paused
        return await approval.arun(execution_id=ctx.execution_id)

    assert asyncio.run(main()).output == "invoice 9 prepared, decision None"


gate = threading.Event()
seen_lease: dict[str, Any] = {}


@task
def after_sign_off(execution_id: str, decision: Any) -> str:
    record = default_store().get_execution(execution_id)
    assert record is not None
    seen_lease.update(status=record.status, owner=record.lease_owner)
    if not gate.wait(SLOW_SECONDS):
        raise TimeoutError("the test never opened the gate")
    return f"signed off with {decision!r}"


@workflow
async def held(ctx: WorkflowExecutionContext[None]) -> str:
    decision = await pause("sign-off")
    return await after_sign_off(ctx.execution_id, decision)


def test_run_by_id_drives_the_continued_execution_under_a_lease_of_its_own() -> None:
    gate.clear()
    seen_lease.clear()
    ctx = held.run()
    result: dict[str, Any] = {}
    driver = threading.Thread(target=lambda: result.update(ctx=held.run(execution_id=ctx.execution_id)))
    driver.start()
    try:
        wait_for(lambda: seen_lease, timeout=SLOW_SECONDS, what="the step after the pause to run")
        assert seen_lease["status"] == "running"
        assert str(seen_lease["owner"]).startswith("run:")
        # Like any run: a second driver does not run it too, and it is no longer paused for a resume.
        with pytest.raises(ExecutionStateError, match=f"being run by {seen_lease['owner']}"):
            asyncio.run(held.arun(execution_id=ctx.execution_id, wait=False))
        with pytest.raises(ExecutionStateError, match="not paused"):
            held.resume(ctx.execution_id, "too late")
    finally:
        gate.set()
        driver.join(SLOW_SECONDS)
    assert result["ctx"].output == "signed off with None"


crashes: list[str] = []


@task
def exits_once(execution_id: str) -> str:
    if not crashes:
        crashes.append("crashed")

        def start_written() -> bool:
            return bool(of_type(default_store().load_events(execution_id), EventType.STEP_STARTED, "2"))

        # Once this step's start is in the store, so is the resume written with it; then the process "dies".
        wait_for(start_written, timeout=SLOW_SECONDS, what="the step's start to be written")
        sys.exit(3)
    return "finished"


@workflow
async def crashes_after_the_pause(ctx: WorkflowExecutionContext[None]) -> str:
    decision = await pause("sign-off")
    return f"{await exits_once(ctx.execution_id)} after {decision!r}"


def test_a_run_by_id_that_dies_after_its_first_write_is_recovered_with_the_pause_answered() -> None:
    crashes.clear()
    ctx = crashes_after_the_pause.run()
    with pytest.raises(SystemExit):
        crashes_after_the_pause.run(execution_id=ctx.execution_id)
    assert crashes_after_the_pause.status(ctx.execution_id).status == "queued"  # back for the next owner

    done = crashes_after_the_pause.run(execution_id=ctx.execution_id)

    assert done.output == "finished after None"
    assert len(of_type(done.events, EventType.EXECUTION_RESUMED)) == 1
    assert len(of_type(done.events, EventType.EXECUTION_PAUSED)) == 1  # the recovery did not pause again


@task
def between_pauses() -> str:
    ran["between"] += 1
    return "counted"


@workflow
async def two_pauses(ctx: WorkflowExecutionContext[None]) -> str:
    first = await pause("one")
    middle = await between_pauses()
    second = await pause("two")
    return f"{first} {middle} {second}"


def test_a_continue_that_read_the_log_before_a_whole_resume_and_pause_went_by_runs_no_step_twice() -> None:
    """The driver reads the record and log, then takes the execution: if meanwhile another caller resumed
    it and it paused again, the log read is stale and must be read again, or the steps in between rerun."""
    ctx = two_pauses.run()
    store = default_store()
    record = store.get_execution(ctx.execution_id)
    assert record is not None
    stale = store.load_events(ctx.execution_id)
    assert two_pauses.resume(ctx.execution_id, "a").is_paused  # ran the step, paused at "two"

    done = asyncio.run(
        two_pauses._resume(store, record, None, serde.dumps("b", what="test"), new_owner("run"), 10.0, stale)
    )

    assert isinstance(done, WorkflowExecutionContext)
    assert done.output == "a counted b"
    assert ran["between"] == 1


@workflow
async def sign_off_by(ctx: WorkflowExecutionContext[float]) -> str:
    try:
        decision = await pause("sign-off", timeout=ctx.input)
    except TimeoutError:
        return "timed out"
    return f"signed: {decision!r}"


def test_a_pause_with_a_timeout_continues_with_none_before_its_deadline_and_times_out_after_it() -> None:
    early = sign_off_by.run(SLOW_SECONDS)
    assert sign_off_by.run(execution_id=early.execution_id).output == "signed: None"

    late = sign_off_by.run(0.2)
    deadline = of_type(late.events, EventType.EXECUTION_PAUSED)[0].data["deadline"]
    wait_for(lambda: time.time() > deadline, timeout=SLOW_SECONDS, what="the pause's deadline to pass")
    done = sign_off_by.run(execution_id=late.execution_id)
    assert done.output == "timed out"
    assert isinstance(of_type(done.events, EventType.STEP_FAILED, "1")[0].value, TaskTimeoutError)


def test_a_recovering_caller_can_ask_not_to_continue_a_pause_that_waits_for_its_resume() -> None:
    ctx = sign_off_by.run(SLOW_SECONDS)
    again = asyncio.run(sign_off_by.arun(execution_id=ctx.execution_id, continue_paused=False))
    assert again.is_paused
    assert of_type(sign_off_by.status(ctx.execution_id).events, EventType.EXECUTION_RESUMED) == []


# == 2. parallel(max_concurrent=, raise_on_error=) =====================================================
@task
async def hold(n: int, state: dict[str, int]) -> int:
    state["running"] += 1
    state["peak"] = max(state["peak"], state["running"])
    for _ in range(20):  # give every other branch the chance to start meanwhile
        await asyncio.sleep(0)
    state["running"] -= 1
    return n


def test_max_concurrent_bounds_the_branches_running_at_once_and_keeps_results_and_step_ids_in_order() -> None:
    @workflow
    async def bounded(ctx: WorkflowExecutionContext[int | None]) -> tuple[list[int], int]:
        state = {"running": 0, "peak": 0}
        results = await parallel(*(hold(n, state) for n in range(6)), max_concurrent=ctx.input)
        return results, state["peak"]

    unbounded = bounded.run(None)
    assert unbounded.output == ([0, 1, 2, 3, 4, 5], 6)  # without a bound every branch runs at once

    ctx = bounded.run(2)
    assert ctx.output == ([0, 1, 2, 3, 4, 5], 2)
    completed = of_type(ctx.events, EventType.STEP_COMPLETED)
    assert sorted((e.step_id, e.value) for e in completed) == [(str(n + 1), n) for n in range(6)]


@task
async def never_finishes(label: str, cancelled: list[str]) -> str:
    try:
        await asyncio.wait_for(asyncio.Event().wait(), SLOW_SECONDS)
    except asyncio.CancelledError:
        cancelled.append(label)
        raise
    return label


@task
async def boom() -> None:
    await asyncio.sleep(0)
    raise ValueError("boom")


def test_the_first_failure_cancels_the_branches_still_running_and_is_raised_at_once() -> None:
    cancelled: list[str] = []

    @workflow
    async def fails_fast(ctx: WorkflowExecutionContext[None]) -> tuple[str, float]:
        started = time.monotonic()
        try:
            await parallel(never_finishes("slow", cancelled), boom())
        except ValueError as error:
            return f"caught {error}", time.monotonic() - started
        return "no error", time.monotonic() - started

    ctx = fails_fast.run()
    caught, seconds = ctx.output
    assert caught == "caught boom"
    assert seconds < SLOW_SECONDS  # it did not wait for the slow branch
    assert cancelled == ["slow"]
    assert outcome_of(ctx.execution_id, "1") == []  # a cancelled step records no outcome
    assert outcome_of(ctx.execution_id, "2") == [EventType.STEP_FAILED]


def test_a_cancelled_sync_branch_is_asked_to_stop_and_what_it_reports_or_returns_is_dropped() -> None:
    running, stopped = threading.Event(), threading.Event()

    @task
    async def boom_once_it_runs() -> None:
        # A body cancelled before its thread took it never starts (nothing to stop): fail once it runs.
        await asyncio.to_thread(running.wait, SLOW_SECONDS)
        raise ValueError("boom")

    @task
    def polls(tc: TaskControl) -> str:
        running.set()
        deadline = time.monotonic() + SLOW_SECONDS
        while not tc.should_stop and time.monotonic() < deadline:
            time.sleep(0.005)  # a long-running body that checks should_stop
        if tc.should_stop:
            tc.update_progress(50, "stopping")
            tc.log("asked to stop")
            stopped.set()
        return "finished anyway"

    @workflow
    async def fails_fast(ctx: WorkflowExecutionContext[None]) -> str:
        try:
            await parallel(polls(), boom_once_it_runs())
        except ValueError as error:
            # still running while the cancelled body winds down: what it reports could be written
            asked = await asyncio.to_thread(stopped.wait, SLOW_SECONDS)
            return f"caught {error}, stop asked: {asked}"
        return "no error"

    ctx = fails_fast.run()
    assert ctx.output == "caught boom, stop asked: True"
    written = [e.type for e in default_store().load_events(ctx.execution_id) if e.step_id == "1"]
    assert written in ([], [EventType.STEP_STARTED])  # no progress, log or outcome after the cancel


@task
def fails_for(n: int) -> int:
    ran[f"fails {n}"] += 1
    raise ValueError(f"item {n} is bad")


@task
def doubled(n: int) -> int:
    ran[f"doubled {n}"] += 1
    return n * 2


def test_raise_on_error_false_keeps_each_failure_in_its_place_also_on_replay() -> None:
    @workflow
    async def tolerant(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        results = await parallel(doubled(1), fails_for(2), doubled(3), raise_on_error=False)
        await pause("look")
        return results

    ctx = tolerant.run()
    assert ctx.is_paused
    done = tolerant.run(execution_id=ctx.execution_id)
    first, failure, third = done.output
    assert (first, third) == (2, 6)
    assert isinstance(failure, ValueError) and str(failure) == "item 2 is bad"
    assert ran == {"doubled 1": 1, "fails 2": 1, "doubled 3": 1}  # the replay ran none of them again


@task
async def quick(label: str) -> str:
    ran[label] += 1
    return label.upper()


release_slow: list[str] = []


@task
async def slow_until_released(label: str, cancelled: list[str]) -> str:
    ran[label] += 1
    if release_slow:
        return label.upper()
    return await never_finishes(label, cancelled)


@pytest.mark.parametrize("limit", [None, 2])
def test_a_pause_in_one_branch_suspends_at_once_and_the_continued_run_replays_only_what_completed(
    limit: int | None,
) -> None:
    release_slow.clear()
    cancelled: list[str] = []

    @workflow
    async def batch(ctx: WorkflowExecutionContext[None]) -> list[Any]:
        return await parallel(
            quick("a"), pause("approve"), slow_until_released("c", cancelled), quick("d"), max_concurrent=limit
        )

    started = time.monotonic()
    ctx = batch.run()
    assert ctx.is_paused
    assert time.monotonic() - started < SLOW_SECONDS  # the slow sibling did not hold the pause up
    assert outcome_of(ctx.execution_id, "1") == [EventType.STEP_COMPLETED]
    assert outcome_of(ctx.execution_id, "3") == []  # cancelled (if it had started), not completed

    release_slow.append("go")
    done = batch.run(execution_id=ctx.execution_id)
    assert done.output == ["A", None, "C", "D"]
    assert ran["a"] == 1  # completed before the pause: replayed
    assert outcome_of(ctx.execution_id, "3") == [EventType.STEP_COMPLETED]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_max_concurrent_must_be_a_whole_number_of_at_least_one(bad: Any) -> None:
    async def branch() -> int:
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError) as error:
            parallel(branch(), max_concurrent=bad)
        gc.collect()
    assert str(error.value) == (
        f"parallel(): max_concurrent must be a whole number >= 1 (or None for no limit), got {bad!r}"
    )
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_raise_on_error_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="parallel\\(\\): raise_on_error must be True or False, got 'no'"):
        parallel(raise_on_error="no")  # type: ignore[arg-type]


# == 3. async edge conditions ===========================================================================
@task
def lookup_vip(customer: str) -> bool:
    ran[f"lookup {customer}"] += 1
    return customer == "ana"


@task
def order(customer: str) -> str:
    return customer


@task
def express(customer: str) -> str:
    return f"express for {customer}"


@task
def standard(customer: str) -> str:
    return f"standard for {customer}"


async def is_vip(customer: str) -> bool:
    return await lookup_vip(customer)  # type: ignore[no-any-return]


async def is_not_vip(customer: str) -> bool:
    return not await is_vip(customer)


shipping = (
    Graph("shipping")
    .add_node("order", order)
    .add_node("express", express)
    .add_node("standard", standard)
    .add_edge("order", "express", condition=is_vip)
    .add_edge("order", "standard", condition=is_not_vip)
    .start_with("order")
    .end_with("express")
    .end_with("standard")
    .validate()
)


@workflow
async def ship(ctx: WorkflowExecutionContext[str]) -> str:
    routed: str = await shipping(ctx.input)
    await pause("check")
    return routed


@pytest.mark.parametrize(("customer", "route"), [("ana", "express for ana"), ("bo", "standard for bo")])
def test_an_async_edge_condition_is_awaited_and_replays_the_same_way(customer: str, route: str) -> None:
    ctx = ship.run(customer)
    assert ctx.is_paused, ctx.output
    done = ship.run(execution_id=ctx.execution_id)
    assert done.output == route
    assert ran[f"lookup {customer}"] == 2  # once per condition; the replay read both from the store


# == 4. pause(name, output=value) ======================================================================
@workflow
async def review(ctx: WorkflowExecutionContext[dict[str, Any]]) -> str:
    summary = {"invoice": ctx.input["invoice"], "amount": 12.5, "due": dt.date(2026, 12, 24)}
    decision = await pause("approve", output=summary)
    return f"{ctx.input['invoice']}: {decision}"


def paused_event(events: list[Event]) -> Event:
    return of_type(events, EventType.EXECUTION_PAUSED)[0]


def test_the_pause_output_is_on_the_pause_event_in_events_the_cli_and_the_http_api(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = review.run({"invoice": "INV-3"})
    expected = {"invoice": "INV-3", "amount": 12.5, "due": dt.date(2026, 12, 24)}
    assert paused_event(ctx.events).value == expected  # the events API keeps the types
    assert paused_event(review.status(ctx.execution_id).events).value == expected

    capsys.readouterr()
    assert cli_main(["events", ctx.execution_id]) == 0
    line = next(text for text in capsys.readouterr().out.splitlines() if "execution_paused" in text)
    assert '"invoice": "INV-3"' in line and '"due": "2026-12-24"' in line

    from taskloom.server.app import create_app

    app = create_app(token="t", store=default_store())

    async def get_events() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(f"/executions/{ctx.execution_id}/events", headers={"Authorization": "Bearer t"})

    response = asyncio.run(get_events())
    assert response.status_code == 200, response.text
    body = response.json()
    views = body["events"] if isinstance(body, dict) else body
    paused = next(v for v in views if v["type"] == "execution_paused")
    assert paused["value"] == {"invoice": "INV-3", "amount": 12.5, "due": "2026-12-24"}

    assert review.resume(ctx.execution_id, "approved").output == "INV-3: approved"


def test_a_pause_without_output_has_no_value() -> None:
    ctx = approval.run("x")
    assert paused_event(ctx.events).raw_value is None


SECRET = "sk-live-Q9w8E7r6T5y4"


@workflow.with_options(secret_requests=["API_KEY"])
async def shows_its_key(ctx: WorkflowExecutionContext[None]) -> Any:
    return await pause("check the key", output={"header": f"Bearer {ctx.secrets['API_KEY']}"})


def test_the_pause_output_has_the_workflows_secrets_masked() -> None:
    default_secret_store().set("API_KEY", SECRET)
    ctx = shows_its_key.run()
    event = paused_event(ctx.events)
    assert event.value == {"header": "Bearer ***"}
    assert SECRET.encode() not in (event.raw_value or b"")


def test_a_pause_output_that_cannot_be_stored_fails_the_pause_naming_it_and_writes_no_pause() -> None:
    @workflow
    async def unstorable(ctx: WorkflowExecutionContext[None]) -> Any:
        return await pause("approve", output=threading.Lock())

    ctx = unstorable.run()
    assert ctx.has_failed
    assert isinstance(ctx.output, SerializationError)
    assert "pause 'approve' output" in str(ctx.output)
    assert of_type(ctx.events, EventType.STEP_STARTED) == []


def test_repeating_a_start_with_its_input_never_approves_a_pause() -> None:
    """run(input, execution_id=ID) is an idempotent start: only run(execution_id=ID) continues a pause."""

    @workflow
    async def approval_by_id(ctx: WorkflowExecutionContext[str]) -> str:
        decision = await pause("manager")
        return f"{ctx.input}: {decision}"

    first = approval_by_id.run("laptop", execution_id="approval-7")
    again = approval_by_id.run("laptop", execution_id="approval-7")  # a client retrying its start
    assert (first.status, again.status) == ("paused", "paused")
    assert approval_by_id.run(execution_id="approval-7").output == "laptop: None"  # the Flux form continues
