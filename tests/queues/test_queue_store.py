"""The claim's queue rules, on each store: which queues, priority order, and the three limits.

A lease of -1 s expires the moment it is taken: how these tests make a dead worker's execution without
waiting for a lease to run out.
"""

from __future__ import annotations

from taskloom.store import Store
from taskloom.store.base import QueueRecord

WF = ["wf"]


def queue_up(store: Store, queue: str, count: int, *, prefix: str = "", priority: int = 0) -> list[str]:
    ids = [f"{prefix or queue}-{n}" for n in range(count)]
    for execution_id in ids:
        store.create_execution(execution_id, "wf", None, "queued", queue=queue, priority=priority)
    return ids


def claimed_ids(store: Store, worker: str, times: int, queues: list[str] | None = None) -> list[str | None]:
    found = [store.claim_next_execution(worker, 30.0, WF, queues=queues) for _ in range(times)]
    return [None if record is None else record.id for record in found]


def test_a_worker_claims_only_from_the_queues_it_serves(store: Store) -> None:
    queue_up(store, "a", 1)
    queue_up(store, "b", 1)
    assert claimed_ids(store, "w", 2, ["a"]) == ["a-0", None]
    assert claimed_ids(store, "w", 1, ["b"]) == ["b-0"]


def test_an_execution_started_without_a_queue_is_on_the_default_queue(store: Store) -> None:
    store.create_execution("plain", "wf", None, "queued")
    assert claimed_ids(store, "w", 1, ["other"]) == [None]
    assert claimed_ids(store, "w", 1, ["default"]) == ["plain"]


def test_the_lowest_priority_runs_first_then_the_oldest(store: Store) -> None:
    queue_up(store, "q", 2, prefix="late", priority=5)
    queue_up(store, "q", 2, prefix="urgent", priority=-1)
    queue_up(store, "q", 1, prefix="normal", priority=0)
    assert claimed_ids(store, "w", 5) == ["urgent-0", "urgent-1", "normal-0", "late-0", "late-1"]


def test_a_queue_at_its_concurrency_is_passed_over_for_other_queues(store: Store) -> None:
    store.upsert_queue(QueueRecord("limited", concurrency=2))
    queue_up(store, "limited", 3)
    queue_up(store, "plain", 1)
    assert claimed_ids(store, "w1", 1) == ["limited-0"]
    assert claimed_ids(store, "w2", 3) == ["limited-1", "plain-0", None]
    store.append_events("limited-0", [], status="completed", lease_owner="w1")
    assert claimed_ids(store, "w3", 2) == ["limited-2", None]


def test_a_paused_execution_holds_no_slot_and_waking_needs_one(store: Store) -> None:
    store.upsert_queue(QueueRecord("limited", concurrency=1))
    queue_up(store, "limited", 2)
    assert claimed_ids(store, "w", 1) == ["limited-0"]
    store.append_events("limited-0", [], status="paused", wake_at=0.0, lease_owner="w")
    store.release_execution("limited-0", "w", requeue=False)
    assert claimed_ids(store, "w", 2) == ["limited-0", None]  # due again: it takes the free slot, and holds it
    store.append_events("limited-0", [], status="paused", wake_at=1e12, lease_owner="w")
    assert claimed_ids(store, "w", 2) == ["limited-1", None]  # asleep: its slot is free


def test_a_dead_workers_execution_is_taken_over_at_full_concurrency(store: Store) -> None:
    store.upsert_queue(QueueRecord("limited", concurrency=1))
    queue_up(store, "limited", 2)
    dead = store.claim_next_execution("dead", -1.0, WF)
    assert dead is not None and dead.id == "limited-0"
    taken = store.claim_next_execution("alive", 30.0, WF)
    assert taken is not None and (taken.id, taken.crashes) == ("limited-0", 1)
    assert claimed_ids(store, "other", 1) == [None]


def test_worker_concurrency_caps_each_worker_not_the_queue(store: Store) -> None:
    store.upsert_queue(QueueRecord("limited", worker_concurrency=2))
    queue_up(store, "limited", 5)
    assert claimed_ids(store, "w1", 3) == ["limited-0", "limited-1", None]
    assert claimed_ids(store, "w2", 3) == ["limited-2", "limited-3", None]


def test_a_rate_limit_counts_claims_within_its_window(store: Store) -> None:
    store.upsert_queue(QueueRecord("slow", rate_count=3, rate_seconds=3600.0))
    queue_up(store, "slow", 4)
    queue_up(store, "plain", 1)
    assert claimed_ids(store, "w", 5) == ["slow-0", "slow-1", "slow-2", "plain-0", None]
    for n in range(3):  # finishing does not give the starts back: the window does
        store.append_events(f"slow-{n}", [], status="completed", lease_owner="w")
    assert claimed_ids(store, "w", 1) == [None]


def test_a_rate_window_that_passed_lets_claims_through_again(store: Store) -> None:
    store.upsert_queue(QueueRecord("fast", rate_count=1, rate_seconds=1e-6))
    queue_up(store, "fast", 3)
    assert claimed_ids(store, "w", 3) == ["fast-0", "fast-1", "fast-2"]


def test_changed_limits_take_effect_at_the_next_claim(store: Store) -> None:
    store.upsert_queue(QueueRecord("q", concurrency=1))
    queue_up(store, "q", 3)
    assert claimed_ids(store, "w", 2) == ["q-0", None]
    store.upsert_queue(QueueRecord("q", concurrency=3))
    assert claimed_ids(store, "w", 3) == ["q-1", "q-2", None]


def test_claims_record_their_time(store: Store) -> None:
    queue_up(store, "q", 1)
    record = store.claim_next_execution("w", 30.0, WF)
    assert record is not None
    assert store.list_queues()[0].running == 1


def test_queues_list_declared_ones_and_those_with_work_with_their_depth(store: Store) -> None:
    store.upsert_queue(QueueRecord("declared", concurrency=2, worker_concurrency=1, rate_count=5, rate_seconds=2.0))
    queue_up(store, "orphan", 3)
    store.create_execution("plain", "wf", None, "queued")
    claimed_ids(store, "w", 1, ["orphan"])
    assert store.list_queues() == [
        QueueRecord("declared", 2, 1, 5, 2.0, queued=0, running=0),
        QueueRecord("default", queued=1),
        QueueRecord("orphan", queued=2, running=1),
    ]


def test_an_idle_worker_waits_only_for_the_expiries_of_its_own_queues(store: Store) -> None:
    queue_up(store, "other", 1)
    assert store.claim_next_execution("dead", -1.0, WF) is not None  # a lease already run out, on "other"
    assert store.next_lease_expiry(WF, queues=["mine"]) is None  # not a takeover this worker could make
    assert store.next_lease_expiry(WF, queues=["mine", "other"]) is not None
    assert store.next_lease_expiry(WF) is not None
