"""The instance queue's contract (``taskloom/store/instances.py``), method by method, on SQLite and
PostgreSQL alike (issue 14, mutation testing).

The remote backend's integration tests drive the queue through HTTP and real workers; these pin down
each method's own rules with exact values: what a claim takes and in which order, ``max_parallel`` per
(session, task), leases that expire and are renewed, outcomes that count only for the holder, stops and
cancels, and the numbered update stream a client follows.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from taskloom.store import Store
from taskloom.store.instances import (
    ClaimedInstance,
    InstanceQueue,
    InstanceUpdate,
    NewInstance,
    Outcome,
    Report,
    _group_lock_key,
    instance_queue_for,
)

TARGET = "app.tasks:work"
OTHER = "app.tasks:other"


def new(
    instance_id: str,
    *,
    session: str = "s1",
    task: str = "work",
    target: str = TARGET,
    max_parallel: int = 10,
    arguments: str = '{"args":[1],"kwargs":{}}',
) -> NewInstance:
    return NewInstance(instance_id, session, f"session {session}", task, target, max_parallel, arguments)


def updates(queue: InstanceQueue, session: str = "s1") -> list[tuple[int, str, str, Any]]:
    _, found = queue.load_updates(session, 0, 1000)
    return [(u.seq, u.instance_id, u.kind, json.loads(u.data)) for u in found]


def claimed_ids(claimed: list[ClaimedInstance]) -> list[str]:
    return [c.instance_id for c in claimed]


@pytest.fixture
def queue(store: Store) -> InstanceQueue:
    return instance_queue_for(store)


# -- queueing ------------------------------------------------------------------------------------------


def test_a_queued_instance_reads_back_with_every_field(queue: InstanceQueue) -> None:
    before = time.time()
    assert queue.add_instances([new("i1", max_parallel=3, arguments='{"args":[],"kwargs":{"x":2}}')]) == 1

    record = queue.get_instance("i1")

    assert record is not None
    assert (record.id, record.session_id, record.task, record.target) == ("i1", "s1", "work", TARGET)
    assert (record.max_parallel, record.arguments) == (3, '{"args":[],"kwargs":{"x":2}}')
    assert (record.status, record.stop_requested, record.result, record.error) == ("queued", False, None, None)
    assert (record.attempts, record.started_at, record.finished_at) == (0, None, None)
    assert before - 1 <= record.created_at <= time.time() + 1
    assert queue.get_instance("nope") is None


def test_adding_counts_only_new_ids_and_leaves_existing_ones_as_they_are(queue: InstanceQueue) -> None:
    assert queue.add_instances([]) == 0
    assert queue.add_instances([new("i1"), new("i2")]) == 2
    queue.claim_instances("w1", [TARGET], 1, 60)

    assert queue.add_instances([new("i1", arguments='{"changed":true}'), new("i3")]) == 1

    first = queue.get_instance("i1")
    assert first is not None and first.status == "running" and first.arguments == '{"args":[1],"kwargs":{}}'
    assert [r.status for r in map(queue.get_instance, ["i2", "i3"]) if r] == ["queued", "queued"]


def test_queueing_new_instances_wakes_a_waiting_worker_and_a_repeat_does_not(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    assert queue.wait_for_instances(5.0) is True
    while queue.wait_for_instances(0.05):  # a spurious wake-up is allowed; then it is quiet
        pass

    queue.add_instances([new("i1")])

    assert queue.wait_for_instances(0.05) is False


# -- claiming ------------------------------------------------------------------------------------------


def test_a_claim_takes_the_oldest_instances_of_the_given_targets_up_to_the_limit(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("x1", target=OTHER), new("i2"), new("i3"), new("i4")])
    assert queue.claim_instances("w1", [], 5, 60) == []
    assert queue.claim_instances("w1", [TARGET], 0, 60) == []

    claimed = queue.claim_instances("w1", [TARGET], 2, 60)

    assert claimed == [
        ClaimedInstance("i1", "s1", "work", TARGET, '{"args":[1],"kwargs":{}}', 1, False),
        ClaimedInstance("i2", "s1", "work", TARGET, '{"args":[1],"kwargs":{}}', 1, False),
    ]
    assert claimed_ids(queue.claim_instances("w2", [TARGET, OTHER], 10, 60)) == ["x1", "i3", "i4"]
    assert queue.claim_instances("w3", [TARGET, OTHER], 10, 60) == []


def test_a_claimed_instance_is_running_under_the_workers_lease_with_a_running_update(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    before = time.time()

    queue.claim_instances("w1", [TARGET], 1, 60)

    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.attempts) == ("running", 1)
    assert record.started_at is not None and before - 1 <= record.started_at <= time.time() + 1
    assert updates(queue) == [(1, "i1", "running", {"worker": "w1", "attempt": 1})]
    assert queue.renew_leases("w1", 60) == ["i1"]
    assert queue.renew_leases("w2", 60) == []


def test_max_parallel_counts_running_instances_per_session_and_task(queue: InstanceQueue) -> None:
    queue.add_instances(
        [
            new("a1", max_parallel=2),
            new("a2", max_parallel=2),
            new("a3", max_parallel=2),
            new("b1", task="other", max_parallel=1),
            new("b2", task="other", max_parallel=1),
            new("c1", session="s2", max_parallel=2),
        ]
    )

    assert claimed_ids(queue.claim_instances("w1", [TARGET], 10, 60)) == ["a1", "a2", "b1", "c1"]
    assert queue.claim_instances("w2", [TARGET], 10, 60) == []  # every group is full

    queue.record("w1", [], [Outcome("s1", "a1", "completed", "1", None, '{"result":1}')])
    assert claimed_ids(queue.claim_instances("w2", [TARGET], 10, 60)) == ["a3"]


def test_a_full_group_at_the_head_of_the_queue_does_not_hide_the_others(queue: InstanceQueue) -> None:
    queue.add_instances([new(f"a{n}", max_parallel=1) for n in range(1, 6)] + [new("b1", session="s2")])

    assert claimed_ids(queue.claim_instances("w1", [TARGET], 1, 60)) == ["a1"]
    assert claimed_ids(queue.claim_instances("w1", [TARGET], 1, 60)) == ["b1"]


def test_an_expired_lease_puts_the_instance_back_with_a_warning_and_it_runs_again(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("i2")])
    queue.claim_instances("w1", [TARGET], 1, -1.0)  # a lease that has already run out: w1 "died"

    again = queue.claim_instances("w2", [TARGET], 1, 60)

    assert again == [ClaimedInstance("i1", "s1", "work", TARGET, '{"args":[1],"kwargs":{}}', 2, False)]
    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.attempts) == ("running", 2)
    assert updates(queue) == [
        (1, "i1", "running", {"worker": "w1", "attempt": 1}),
        (
            2,
            "i1",
            "log",
            {
                "level": "warning",
                "message": "its worker stopped renewing its lease (the worker died or hung); the instance runs again",
                "extra": {"attempt": 1},
            },
        ),
        (3, "i1", "running", {"worker": "w2", "attempt": 2}),
    ]
    assert queue.renew_leases("w1", 60) == []  # w1 holds nothing any more
    assert queue.record("w1", [], [Outcome("s1", "i1", "completed", "1", None, "{}")]) == set()


def test_a_renewed_lease_keeps_the_instance_from_being_put_back(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 1, -1.0)

    assert queue.renew_leases("w1", 60) == ["i1"]

    assert queue.claim_instances("w2", [TARGET], 1, 60) == []
    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.attempts) == ("running", 1)


# -- outcomes and reports ----------------------------------------------------------------------------


def test_reports_and_outcomes_are_numbered_per_session_in_the_order_written(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("i2"), new("j1", session="s2")])
    queue.claim_instances("w1", [TARGET], 10, 60)
    before = time.time()

    accepted = queue.record(
        "w1",
        [
            Report("s1", "i1", "progress", '{"done":1}'),
            Report("s2", "j1", "log", '{"message":"hi"}'),
            Report("s1", "i2", "status", '{"text":"busy"}'),
        ],
        [
            Outcome("s1", "i1", "completed", '{"v":1}', None, '{"result":{"v":1}}'),
            Outcome("s2", "j1", "failed", None, '{"type":"ValueError"}', '{"error":{"type":"ValueError"}}'),
        ],
    )

    assert accepted == {"i1", "j1"}
    assert updates(queue, "s1")[2:] == [
        (3, "i1", "progress", {"done": 1}),
        (4, "i2", "status", {"text": "busy"}),
        (5, "i1", "completed", {"result": {"v": 1}}),
    ]
    assert updates(queue, "s2")[1:] == [
        (2, "j1", "log", {"message": "hi"}),
        (3, "j1", "failed", {"error": {"type": "ValueError"}}),
    ]
    done, failed = queue.get_instance("i1"), queue.get_instance("j1")
    assert done is not None and (done.status, done.result, done.error) == ("completed", '{"v":1}', None)
    assert failed is not None and (failed.status, failed.result, failed.error) == (
        "failed",
        None,
        '{"type":"ValueError"}',
    )
    assert done.finished_at is not None and before - 1 <= done.finished_at <= time.time() + 1
    assert queue.renew_leases("w1", 60) == ["i2"]  # the finished ones are no longer leased


def test_nothing_to_record_writes_nothing(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 1, 60)

    assert queue.record("w1", [], []) == set()

    assert len(updates(queue)) == 1


def test_an_outcome_counts_only_for_the_worker_holding_the_instance(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("i2")])
    queue.claim_instances("w1", [TARGET], 1, 60)

    assert queue.record("w2", [], [Outcome("s1", "i1", "completed", "1", None, "{}")]) == set()
    assert queue.record("w1", [], [Outcome("s1", "i2", "completed", "1", None, "{}")]) == set()  # queued

    record = queue.get_instance("i1")
    assert record is not None and record.status == "running"
    assert [kind for _, _, kind, _ in updates(queue)] == ["running"]


def test_a_recorded_outcome_frees_a_slot_and_wakes_a_waiting_worker(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1", max_parallel=1), new("i2", max_parallel=1)])
    queue.claim_instances("w1", [TARGET], 10, 60)
    while queue.wait_for_instances(0.05):
        pass

    queue.record("w1", [], [Outcome("s1", "i1", "completed", "1", None, "{}")])

    assert queue.wait_for_instances(5.0) is True


def test_a_report_alone_does_not_wake_workers(store: Store, queue: InstanceQueue) -> None:
    if store.url.startswith("postgresql"):
        pytest.skip("PostgreSQL wakes on any notification; only SQLite's in-process wake-up is exact")
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 10, 60)
    while queue.wait_for_instances(0.05):
        pass

    assert queue.record("w1", [Report("s1", "i1", "progress", "{}")], []) == set()

    assert queue.wait_for_instances(0.05) is False


# -- stop, cancel, release ---------------------------------------------------------------------------


def test_cancelling_a_queued_instance_ends_it_at_once_and_it_never_runs(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    before = time.time()

    assert queue.request_stop("i1", cancel=True) == "cancelled"

    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.stop_requested) == ("cancelled", True)
    assert record.finished_at is not None and before - 1 <= record.finished_at <= time.time() + 1
    assert updates(queue) == [(1, "i1", "cancelled", {})]
    assert queue.claim_instances("w1", [TARGET], 10, 60) == []


def test_stopping_a_queued_instance_flags_it_and_it_still_runs(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])

    assert queue.request_stop("i1", cancel=False) == "queued"

    assert updates(queue) == []
    (claimed,) = queue.claim_instances("w1", [TARGET], 10, 60)
    assert claimed.stop_requested is True


def test_stopping_a_running_instance_tells_its_worker_and_its_outcome_stands(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("i2")])
    queue.claim_instances("w1", [TARGET], 10, 60)
    assert queue.stop_requests("w1") == []

    assert queue.request_stop("i1", cancel=False) == "running"

    assert queue.stop_requests("w1") == ["i1"]
    assert queue.stop_requests("w2") == []
    assert queue.record("w1", [], [Outcome("s1", "i1", "completed", "1", None, "{}")]) == {"i1"}
    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.stop_requested) == ("completed", True)
    assert queue.stop_requests("w1") == []  # finished: no longer its worker's to stop


def test_cancelling_a_running_instance_ends_it_cancelled_whatever_it_returns(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 10, 60)

    assert queue.request_stop("i1", cancel=True) == "running"
    assert queue.request_stop("i1", cancel=False) == "running"  # a later stop keeps the cancel

    assert queue.stop_requests("w1") == ["i1"]
    assert queue.record("w1", [], [Outcome("s1", "i1", "completed", "1", None, '{"result":1}')]) == {"i1"}
    record = queue.get_instance("i1")
    assert record is not None and record.status == "cancelled"
    assert updates(queue)[-1] == (2, "i1", "cancelled", {"result": 1})


def test_a_finished_or_missing_instance_is_left_as_it_is(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 10, 60)
    queue.record("w1", [], [Outcome("s1", "i1", "failed", None, "{}", "{}")])

    assert queue.request_stop("i1", cancel=True) == "failed"
    assert queue.request_stop("nope", cancel=True) is None

    record = queue.get_instance("i1")
    assert record is not None and (record.status, record.stop_requested) == ("failed", False)


def test_released_instances_go_back_to_the_queue_and_wake_workers(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1"), new("i2"), new("i3")])
    queue.claim_instances("w1", [TARGET], 2, 60)
    queue.claim_instances("w2", [TARGET], 1, 60)
    while queue.wait_for_instances(0.05):
        pass
    queue.release_instances("w1", [])
    assert queue.wait_for_instances(0.05) is False

    queue.release_instances("w1", ["i1", "i3"])  # i3 is w2's: it stays w2's

    assert queue.wait_for_instances(5.0) is True
    statuses = {i: r.status for i in ("i1", "i2", "i3") if (r := queue.get_instance(i))}
    assert statuses == {"i1": "queued", "i2": "running", "i3": "running"}
    assert queue.renew_leases("w1", 60) == ["i2"]
    assert claimed_ids(queue.claim_instances("w3", [TARGET], 10, 60)) == ["i1"]


# -- the update stream -------------------------------------------------------------------------------


def test_updates_are_read_after_a_seq_up_to_a_limit_saying_whether_more_may_come(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])
    queue.claim_instances("w1", [TARGET], 1, 60)
    queue.record("w1", [Report("s1", "i1", "progress", f'{{"n":{n}}}') for n in range(3)], [])

    more, page = queue.load_updates("s1", 1, 2)
    assert more is True and page == [
        InstanceUpdate(2, "i1", "progress", '{"n":0}'),
        InstanceUpdate(3, "i1", "progress", '{"n":1}'),
    ]
    more, page = queue.load_updates("s1", 3, 10)
    assert more is True and [u.seq for u in page] == [4]  # still running: more may come

    queue.record("w1", [], [Outcome("s1", "i1", "completed", "1", None, "{}")])

    more, page = queue.load_updates("s1", 4, 10)
    assert more is False and [u.seq for u in page] == [5]
    more, page = queue.load_updates("s1", 4, 1)
    assert more is True and [u.seq for u in page] == [5]  # a full page: the reader asks again
    assert queue.load_updates("s1", 5, 10) == (False, [])
    assert queue.load_updates("nobody", 0, 10) == (False, [])


# -- which queue -------------------------------------------------------------------------------------


def test_each_store_object_has_one_queue_of_its_kind(store: Store) -> None:
    queue = instance_queue_for(store)

    assert instance_queue_for(store) is queue
    kind = "Postgres" if store.url.startswith("postgresql") else "SQLite"
    assert type(queue).__name__ == f"{kind}InstanceQueue"


def test_a_store_of_another_kind_has_no_instance_queue() -> None:
    class Elsewhere:
        url = "memory://"

    with pytest.raises(TypeError) as raised:
        instance_queue_for(Elsewhere())  # type: ignore[arg-type]

    assert str(raised.value) == f"no instance queue for a store of type {Elsewhere.__qualname__}"


def test_a_groups_advisory_lock_key_is_the_same_in_every_process_and_fits_a_bigint() -> None:
    key = _group_lock_key("s1", "work")
    digest = hashlib.blake2b(b"s1\x00work", digest_size=8).digest()

    assert key == int.from_bytes(digest, "big", signed=True)  # a worker of another version agrees on it
    assert -(2**63) <= key < 2**63
    assert _group_lock_key("s1", "work2") != key and _group_lock_key("s", "1work") != key


def test_a_claim_admits_only_the_slots_its_group_has_left(queue: InstanceQueue) -> None:
    queue.add_instances([new(f"a{n}", max_parallel=3) for n in range(1, 6)])
    assert claimed_ids(queue.claim_instances("w1", [TARGET], 1, 60)) == ["a1"]

    assert claimed_ids(queue.claim_instances("w2", [TARGET], 10, 60)) == ["a2", "a3"]  # 1 running + 2 = 3


@pytest.mark.parametrize(("targets", "limit"), [([TARGET], 0), ([TARGET], -1), ([], 5)])
def test_a_claim_that_can_take_nothing_changes_nothing(queue: InstanceQueue, targets: list[str], limit: int) -> None:
    queue.add_instances([new("i1"), new("i2")])
    queue.claim_instances("w1", [TARGET], 1, -1.0)  # i1's lease has run out

    assert queue.claim_instances("w2", targets, limit, 60) == []

    first, second = queue.get_instance("i1"), queue.get_instance("i2")
    assert first is not None and first.status == "running"  # not put back by a claim that takes nothing
    assert second is not None and second.status == "queued"
    assert len(updates(queue)) == 1


def test_the_queues_own_updates_are_compact_ascii_json(queue: InstanceQueue) -> None:
    queue.add_instances([new("i1")])

    queue.claim_instances("wörker-ü", [TARGET], 1, -1.0)
    queue.claim_instances("w2", [TARGET], 1, 60)

    _, found = queue.load_updates("s1", 0, 10)
    assert [u.data for u in found] == [
        '{"worker":"w\\u00f6rker-\\u00fc","attempt":1}',
        '{"level":"warning","message":"its worker stopped renewing its lease (the worker died or hung); the '
        'instance runs again","extra":{"attempt":1}}',
        '{"worker":"w2","attempt":2}',
    ]


def test_a_group_named_with_a_lone_surrogate_still_gets_its_lock_key() -> None:
    session = "s-\ud800"  # JSON from a client may carry one: "\\ud800"
    digest = hashlib.blake2b(f"{session}\x00work".encode("utf-8", "surrogatepass"), digest_size=8).digest()

    assert _group_lock_key(session, "work") == int.from_bytes(digest, "big", signed=True)
