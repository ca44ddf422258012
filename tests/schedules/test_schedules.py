"""Schedules in one process, on both stores: declaring, validating, ticking with the clock moved (catch-up
policies, a crash between a tick's start and its advance, tickers racing), pausing, and
``ctx.scheduled_at`` in the execution a tick started (issue 10, point 3)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from processes import wait_for

from taskloom import ScheduleError, StoreUnavailableError, WorkflowExecutionContext, workflow
from taskloom.schedule_ticks import tick_execution_id
from taskloom.schedules import (
    Ticker,
    declare_schedules,
    pause_schedule,
    resume_schedule,
    run_schedules,
    start_tick,
    start_ticker,
    tick,
)
from taskloom.store import ExecutionStatus, Store, open_store
from taskloom.tasks import pause


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


T0 = at("2026-12-01T10:00:00")


@workflow
async def report(ctx: WorkflowExecutionContext[Any]) -> Any:
    return {"input": ctx.input, "scheduled_at": ctx.scheduled_at}


@workflow
async def approve(ctx: WorkflowExecutionContext[Any]) -> str:
    before = ctx.scheduled_at
    decision = await pause("approval")
    return f"{decision} for {before.isoformat() if before else None} / {ctx.scheduled_at}"


@workflow(schedule="*/5 * * * *")
async def declared(ctx: WorkflowExecutionContext[Any]) -> None:
    return None


def scheduled_ids(store: Store, name: str) -> list[str]:
    return sorted(r.id for r in store.list_executions(id_prefix=f"{name}@", limit=10_000))


# -- declaring and validating ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"cron": "61 * * * *"}, r"61 \* \* \* \*"),
        ({"cron": "every day"}, "every day"),
        ({"cron": ""}, "cron must be"),
        ({"cron": 5}, "cron must be"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus'"),
        ({"catchup": "some"}, "catchup must be one of latest, all, none, got 'some'"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_a_bad_schedule_is_refused_when_called_naming_the_argument(
    default: Store, arguments: dict[str, Any], named: str
) -> None:
    call: dict[str, Any] = {"cron": "*/5 * * * *", **arguments}
    with pytest.raises(ScheduleError, match=named):
        report.schedule(**call)
    assert default.list_schedules() == []


def test_a_bad_declared_schedule_fails_at_decoration_naming_the_workflow() -> None:
    with pytest.raises(ScheduleError, match=r"workflow 'nightly': .*'61 \* \* \* \*'"):

        @workflow.with_options(name="nightly", schedule="61 * * * *")
        async def nightly(ctx: WorkflowExecutionContext[Any]) -> None: ...

    with pytest.raises(ScheduleError, match="workflow: cron must be a cron expression"):

        @workflow(schedule=["* * * * *"])
        async def listed(ctx: WorkflowExecutionContext[Any]) -> None: ...


def test_wf_schedule_stores_the_schedule_and_a_change_keeps_its_last_tick(default: Store) -> None:
    created = report.schedule("*/5 * * * *", input={"n": 1}, timezone="Europe/Oslo")
    assert (created.name, created.workflow, created.cron, created.timezone) == (
        "report",
        "report",
        "*/5 * * * *",
        "Europe/Oslo",
    )
    assert created.input == {"n": 1} and created.catchup == "latest" and not created.paused
    assert created.next_tick is not None and created.next_tick.minute % 5 == 0
    record = default.get_schedule("report")
    assert record is not None and record.target == f"{__name__}:report"
    default.advance_schedule("report", record.last_tick, T0)

    changed = report.schedule("0 * * * *", catchup="all")
    assert (changed.cron, changed.timezone, changed.catchup, changed.input) == ("0 * * * *", "UTC", "all", None)
    assert changed.last_tick == datetime.fromtimestamp(T0, UTC)


def test_a_schedule_name_of_another_workflow_is_refused(default: Store) -> None:
    report.schedule("*/5 * * * *", name="shared")
    with pytest.raises(ScheduleError, match="schedule 'shared' belongs to workflow 'report', not 'approve'"):
        approve.schedule("* * * * *", name="shared")
    assert default.get_schedule("shared").cron == "*/5 * * * *"  # type: ignore[union-attr]


def test_a_declared_schedule_is_registered_by_declare_schedules_keeping_its_progress(default: Store) -> None:
    assert declared.declared_schedule is not None
    assert report.declared_schedule is None
    (first,) = declare_schedules(default, [report, declared], now=T0)
    assert (first.name, first.cron, first.timezone) == ("declared", "*/5 * * * *", "UTC")
    default.advance_schedule("declared", T0, T0 + 300)
    declare_schedules(default, [declared], now=T0 + 900)  # a worker restarting
    assert default.get_schedule("declared").last_tick == T0 + 300  # type: ignore[union-attr]


# -- ticking with the clock moved -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("all", [T0 + 300 * n for n in range(1, 13)]),  # every tick of the hour nothing ran
        ("latest", [T0 + 3600]),  # only the newest
        ("none", []),  # none: the newest fell more than a minute before now
    ],
)
def test_ticks_missed_while_nothing_ran_are_caught_up_per_policy(
    default: Store, catchup: str, expected: list[float]
) -> None:
    report.schedule("*/5 * * * *", catchup=catchup)
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]

    done = tick(default, ["report"], T0 + 3600 + 90)

    assert done.started == [tick_execution_id("report", t) for t in expected]
    assert scheduled_ids(default, "report") == sorted(done.started)
    assert default.get_schedule("report").last_tick == T0 + 3600  # type: ignore[union-attr]
    assert done.next_due == T0 + 3900
    # Back on time, every policy starts the next tick.
    assert tick(default, ["report"], T0 + 3900.5).started == [tick_execution_id("report", T0 + 3900)]
    assert tick(default, ["report"], T0 + 3900.9).started == []


def test_a_tick_is_queued_with_the_schedule_input_and_its_time(default: Store) -> None:
    report.schedule("*/5 * * * *", input={"region": "eu"})
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    (execution_id,) = tick(default, None, T0 + 301).started
    record = default.get_execution(execution_id)
    assert record is not None
    assert (record.workflow, record.status, record.target) == ("report", ExecutionStatus.QUEUED, f"{__name__}:report")
    started = default.load_events(execution_id)[0]
    assert started.value == {"region": "eu"}
    assert started.data == {"schedule": "report", "scheduled_at": T0 + 300, "timezone": "UTC"}


def test_only_the_schedules_of_the_given_workflows_tick(default: Store) -> None:
    report.schedule("* * * * *")
    approve.schedule("* * * * *")
    for name in ("report", "approve"):
        default.advance_schedule(name, default.get_schedule(name).last_tick, T0)  # type: ignore[union-attr]
    assert tick(default, ["approve"], T0 + 61).started == [tick_execution_id("approve", T0 + 60)]
    assert scheduled_ids(default, "report") == []


def test_a_crash_between_starting_a_tick_and_advancing_neither_loses_nor_doubles_it(default: Store) -> None:
    report.schedule("*/5 * * * *", catchup="all")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    record = default.get_schedule("report")
    assert record is not None
    # A ticker created the first tick's execution and died before advancing the schedule.
    assert start_tick(default, record, T0 + 300)
    assert default.get_schedule("report").last_tick == T0  # type: ignore[union-attr]

    done = tick(default, ["report"], T0 + 601)

    assert done.started == [tick_execution_id("report", T0 + 600)]  # the first one existed: not again
    assert scheduled_ids(default, "report") == [tick_execution_id("report", t) for t in (T0 + 300, T0 + 600)]
    assert default.get_schedule("report").last_tick == T0 + 600  # type: ignore[union-attr]


def test_tickers_racing_on_one_backlog_start_each_tick_once(default: Store, store_url: str) -> None:
    report.schedule("* * * * * *", catchup="all")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    stores = [open_store(store_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    started: list[list[str]] = []

    def race(store: Store) -> None:
        barrier.wait()
        for _ in range(3):  # a few passes each, with the schedule advancing under them
            started.append(tick(store, ["report"], T0 + 40.5).started)

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    everything = [i for pass_ in started for i in pass_]
    assert sorted(everything) == sorted(set(everything)), "a tick was started by two tickers"
    assert sorted(everything) == scheduled_ids(default, "report")
    assert scheduled_ids(default, "report") == sorted(tick_execution_id("report", T0 + n) for n in range(1, 41))
    assert default.get_schedule("report").last_tick == T0 + 40  # type: ignore[union-attr]


def test_a_paused_schedule_starts_nothing_and_resuming_skips_the_paused_ticks(default: Store) -> None:
    report.schedule("*/5 * * * *", catchup="all")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    paused = pause_schedule(default, "report", now=T0 + 10)
    assert paused.paused and paused.next_tick is None
    assert tick(default, None, T0 + 3600).started == []

    resumed = resume_schedule(default, "report", now=T0 + 3600)
    assert not resumed.paused
    assert tick(default, None, T0 + 3601).started == []  # the paused hour is not caught up
    assert tick(default, None, T0 + 3901).started == [tick_execution_id("report", T0 + 3900)]
    with pytest.raises(ScheduleError, match="no schedule named 'other' \\(schedules: report\\)"):
        pause_schedule(default, "other")


def test_the_ticker_thread_starts_due_ticks_and_stops(default: Store) -> None:
    report.schedule("*/5 * * * *", catchup="all")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    ticker = Ticker(default, ["report"], clock=lambda: T0 + 901).start()
    try:
        wait_for(lambda: len(scheduled_ids(default, "report")) == 3, timeout=10, what="three ticks")
    finally:
        ticker.stop()
    assert not ticker._thread.is_alive()
    assert default.get_schedule("report").last_tick == T0 + 900  # type: ignore[union-attr]


# -- ctx.scheduled_at -----------------------------------------------------------------------------------
def test_the_execution_reads_its_tick_as_ctx_scheduled_at(default: Store) -> None:
    report.schedule("0 9 * * *", input="daily", timezone="Europe/Oslo")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    (execution_id,) = tick(default, None, at("2026-12-02T08:00:01")).started  # 09:00 in Oslo (CET)

    ctx = report.run(execution_id=execution_id)

    assert ctx.status == ExecutionStatus.COMPLETED
    moment = ctx.output["scheduled_at"]
    assert moment == datetime(2026, 12, 2, 9, 0, tzinfo=ZoneInfo("Europe/Oslo"))
    assert (moment.hour, moment.utcoffset().total_seconds()) == (9, 3600)
    assert ctx.output["input"] == "daily"
    assert report.status(execution_id).scheduled_at == moment  # read back outside the run too


def test_ctx_scheduled_at_is_the_same_after_a_replay(default: Store) -> None:
    approve.schedule("*/5 * * * *")
    default.advance_schedule("approve", default.get_schedule("approve").last_tick, T0)  # type: ignore[union-attr]
    (execution_id,) = tick(default, None, T0 + 301).started
    assert approve.run(execution_id=execution_id).status == ExecutionStatus.PAUSED

    ctx = approve.resume(execution_id, "yes")  # the body runs again from the top, replaying

    tick_time = datetime.fromtimestamp(T0 + 300, UTC)
    assert ctx.output == f"yes for {tick_time.isoformat()} / {tick_time}"


def test_an_execution_no_schedule_started_has_no_scheduled_at(default: Store) -> None:
    assert report.run("by hand").output == {"input": "by hand", "scheduled_at": None}


def test_a_declared_schedule_whose_name_another_workflow_holds_fails_the_workers_start(default: Store) -> None:
    report.schedule("* * * * *", name="declared")
    with pytest.raises(ScheduleError, match="schedule 'declared' belongs to workflow 'report', not 'declared'"):
        start_ticker(default, {"declared": declared})


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: run_schedules(), "name the workflows"),
        (lambda: run_schedules(report, seconds=0), "seconds must be a positive number or None, got 0"),
    ],
)
def test_run_schedules_refuses_bad_arguments_by_name(call: Any, named: str) -> None:
    with pytest.raises(ScheduleError, match=named):
        call()


class StoreFailingOnCreate:
    """The real store, except that its ``fail_on``-th ``create_execution`` fails as a lost database would."""

    def __init__(self, store: Store, fail_on: int) -> None:
        self._store = store
        self._creates = 0
        self._fail_on = fail_on

    def create_execution(self, *args: Any, **kwargs: Any) -> None:
        self._creates += 1
        if self._creates == self._fail_on:
            raise StoreUnavailableError("the database went away")
        self._store.create_execution(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_store_failure_in_the_middle_of_a_pass_leaves_the_schedule_where_it_was(default: Store) -> None:
    report.schedule("*/5 * * * *", catchup="all")
    default.advance_schedule("report", default.get_schedule("report").last_tick, T0)  # type: ignore[union-attr]
    failing = StoreFailingOnCreate(default, fail_on=2)

    with pytest.raises(StoreUnavailableError):
        tick(failing, ["report"], T0 + 901)  # type: ignore[arg-type]

    assert default.get_schedule("report").last_tick == T0  # type: ignore[union-attr]  # not advanced
    assert scheduled_ids(default, "report") == [tick_execution_id("report", T0 + 300)]
    # The next pass starts the ticks that were not, and only those, then advances.
    assert tick(default, ["report"], T0 + 901).started == [tick_execution_id("report", T0 + t) for t in (600, 900)]
    assert default.get_schedule("report").last_tick == T0 + 900  # type: ignore[union-attr]
