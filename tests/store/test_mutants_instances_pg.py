"""The instance queue where ``tests/store/test_mutants_instances.py`` left mutants alive (issue 14, mutation
testing of ``taskloom/store/instances.py``): the workers seen lately, on both stores, and on PostgreSQL the
advisory lock a claim takes per (session, task), which keeps ``max_parallel`` across workers.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from processes import wait_for

from taskloom.store import Store
from taskloom.store.instances import ClaimedInstance, NewInstance, _group_lock_key, instance_queue_for
from taskloom.store.postgres import PostgresStore

TARGET = "app.tasks:work"


def test_the_workers_seen_lately_come_by_worker_then_target_with_when_each_was_seen(store: Store) -> None:
    queue = instance_queue_for(store)
    before = time.time()
    queue.register_worker("worker-b", ["app:z", "app:a"])
    queue.register_worker("worker-a", ["app:m"])
    after = time.time()

    seen = queue.seen_workers(30.0)

    assert [(worker, target) for worker, target, _ in seen] == [
        ("worker-a", "app:m"),
        ("worker-b", "app:a"),
        ("worker-b", "app:z"),
    ]
    for _, _, last_seen in seen:
        assert type(last_seen) is float
        assert before <= last_seen <= after


def test_a_worker_not_seen_within_the_window_is_left_out(store: Store) -> None:
    queue = instance_queue_for(store)
    queue.register_worker("worker-a", ["app:m"])
    registered = time.time()
    wait_for(lambda: time.time() > registered, timeout=5, what="the clock to move on")

    assert queue.seen_workers(0.0) == []  # registered before the window's start
    assert [w for w, _, _ in queue.seen_workers(60.0)] == ["worker-a"]
    queue.unregister_worker("worker-a")
    assert queue.seen_workers(60.0) == []


def _waiting_for_an_advisory_lock(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return bool(row and row[0])


@pytest.mark.postgres
def test_a_claim_waits_for_the_lock_of_its_session_and_task(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    queue = instance_queue_for(store)
    queue.add_instances([NewInstance("i1", "s1", "session s1", "work", TARGET, 1, '{"args":[],"kwargs":{}}')])
    claimed: list[ClaimedInstance] = []
    try:
        with psycopg.connect(pg_fresh_url, autocommit=True) as holder:  # another worker, mid-claim
            holder.execute("SELECT pg_advisory_lock(%s)", (_group_lock_key("s1", "work"),))
            claimer = threading.Thread(target=lambda: claimed.extend(queue.claim_instances("w1", [TARGET], 5, 30.0)))
            claimer.start()
            wait_for(
                lambda: _waiting_for_an_advisory_lock(holder) or not claimer.is_alive(),
                timeout=30,
                what="the claim to wait for the lock or end",
            )
            assert claimer.is_alive(), "the claim counted running instances without the (session, task) lock"
            assert claimed == []
            holder.execute("SELECT pg_advisory_unlock(%s)", (_group_lock_key("s1", "work"),))
            claimer.join(timeout=30)
            assert not claimer.is_alive()
        assert [c.instance_id for c in claimed] == ["i1"]
    finally:
        store.close()
