"""The schedules table, on both stores (``[sqlite]`` / ``[postgres]``): the store's half of issue 10's
schedules, and the start data that carries a tick to ``ctx.scheduled_at``."""

from __future__ import annotations

import threading

import pytest

from taskloom.errors import ExecutionStateError
from taskloom.events import EventType
from taskloom.store import ExecutionStatus, Store
from taskloom.store.base import ScheduleRecord

NOW = 1_764_579_600.0  # 2026-12-01T09:00:00Z


def upsert(store: Store, name: str = "nightly", /, **changes: object) -> ScheduleRecord | None:
    fields: dict[str, object] = {
        "workflow": "report",
        "target": "app:report",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "input": b"in",
        "catchup": "latest",
        "now": NOW,
    }
    fields.update(changes)
    return store.upsert_schedule(name, **fields)  # type: ignore[arg-type]


def test_a_new_schedule_reads_back_with_every_field_and_starts_at_now(store: Store) -> None:
    created = upsert(store)
    assert created == ScheduleRecord(
        "nightly", "report", "app:report", "0 3 * * *", "UTC", b"in", "latest", False, NOW, NOW, NOW
    )
    assert store.get_schedule("nightly") == created
    assert store.get_schedule("other") is None


def test_changing_a_schedule_keeps_its_last_tick_paused_flag_and_creation_time(store: Store) -> None:
    upsert(store)
    assert store.advance_schedule("nightly", NOW, NOW + 600)
    store.set_schedule_paused("nightly", True, now=NOW + 700)
    changes: dict[str, object] = {"cron": "*/5 * * * *", "timezone": "Europe/Oslo", "input": None, "catchup": "all"}
    changed = upsert(store, target="app2:report", now=NOW + 900, **changes)
    assert changed == ScheduleRecord(
        "nightly", "report", "app2:report", "*/5 * * * *", "Europe/Oslo", None, "all", True, NOW + 600, NOW, NOW + 900
    )
    assert store.get_schedule("nightly") == changed


def test_a_name_taken_by_another_workflow_is_refused_and_nothing_written(store: Store) -> None:
    upsert(store)
    assert upsert(store, workflow="other", cron="* * * * *") is None
    kept = store.get_schedule("nightly")
    assert kept is not None and (kept.workflow, kept.cron) == ("report", "0 3 * * *")


def test_listing_is_by_name_and_filters_by_workflow(store: Store) -> None:
    upsert(store, "b-second")
    upsert(store, "a-first", workflow="other")
    upsert(store, "c-third")
    assert [s.name for s in store.list_schedules()] == ["a-first", "b-second", "c-third"]
    assert [s.name for s in store.list_schedules(["report"])] == ["b-second", "c-third"]
    assert [s.name for s in store.list_schedules(["other", "none"])] == ["a-first"]
    assert store.list_schedules([]) == []


def test_advancing_is_a_compare_and_set_of_the_last_tick(store: Store) -> None:
    upsert(store)
    assert store.advance_schedule("nightly", NOW, NOW + 1.5)
    assert not store.advance_schedule("nightly", NOW, NOW + 3)  # another process moved it first
    assert store.get_schedule("nightly").last_tick == NOW + 1.5  # type: ignore[union-attr]
    assert store.advance_schedule("nightly", NOW + 1.5, NOW + 3)
    assert not store.advance_schedule("gone", NOW, NOW + 3)


def test_of_many_threads_advancing_from_the_same_tick_exactly_one_wins(store: Store) -> None:
    upsert(store)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def advance(n: int) -> None:
        barrier.wait()
        wins.append(store.advance_schedule("nightly", NOW, NOW + 1 + n))

    threads = [threading.Thread(target=advance, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_resuming_skips_the_ticks_that_fell_while_paused(store: Store) -> None:
    upsert(store)
    paused = store.set_schedule_paused("nightly", True, now=NOW + 10)
    assert paused is not None and paused.paused and paused.last_tick == NOW
    resumed = store.set_schedule_paused("nightly", False, now=NOW + 86_400)
    assert resumed is not None and not resumed.paused
    assert resumed.last_tick == NOW + 86_400 and resumed.updated_at == NOW + 86_400
    store.advance_schedule("nightly", NOW + 86_400, NOW + 100_000)
    again = store.set_schedule_paused("nightly", False, now=NOW + 90_000)  # never moves the tick back
    assert again is not None and again.last_tick == NOW + 100_000
    assert store.set_schedule_paused("gone", True, now=NOW) is None


def test_removing_a_schedule(store: Store) -> None:
    upsert(store)
    assert store.delete_schedule("nightly")
    assert store.get_schedule("nightly") is None
    assert not store.delete_schedule("nightly")


def test_start_data_is_kept_with_the_started_event_and_a_tick_is_created_once(store: Store) -> None:
    data = {"schedule": "nightly", "scheduled_at": NOW, "timezone": "UTC"}
    store.create_execution("nightly@x", "report", None, ExecutionStatus.QUEUED, "app:report", started_data=data)
    with pytest.raises(ExecutionStateError):
        store.create_execution("nightly@x", "report", None, ExecutionStatus.QUEUED, "app:report", started_data=data)
    (started,) = store.load_events("nightly@x")
    assert started.type is EventType.EXECUTION_STARTED and started.data == data
    store.create_execution("plain", "report", None, ExecutionStatus.QUEUED)
    assert store.load_events("plain")[0].data == {}
