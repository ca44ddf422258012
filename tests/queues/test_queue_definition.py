"""Declaring queues and starting on them: bad arguments are refused at once, naming the argument;
a start on a declared queue brings its limits to the store; a program without queues sees no change."""

from __future__ import annotations

import pytest
import queueapp

import taskloom
from taskloom import Queue, QueueError
from taskloom.queues import DEFAULT_QUEUE, served_queues
from taskloom.store import Store
from taskloom.store.base import QueueRecord


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"name": ""}, "Queue name"),
        ({"name": 7}, "Queue name"),
        ({"name": "q", "concurrency": 0}, "concurrency"),
        ({"name": "q", "concurrency": 1.5}, "concurrency"),
        ({"name": "q", "concurrency": True}, "concurrency"),
        ({"name": "q", "worker_concurrency": -1}, "worker_concurrency"),
        ({"name": "q", "rate_limit": 10}, "rate_limit"),
        ({"name": "q", "rate_limit": (0, 1.0)}, "rate_limit"),
        ({"name": "q", "rate_limit": (10, 0)}, "rate_limit"),
        ({"name": "q", "rate_limit": (10, float("inf"))}, "rate_limit"),
        ({"name": "q", "rate_limit": (10, 1, 2)}, "rate_limit"),
        ({"name": "q", "concurrency": 2, "worker_concurrency": 3}, "worker_concurrency=3"),
    ],
)
def test_a_bad_queue_argument_is_refused_naming_it(arguments: dict[str, object], named: str) -> None:
    with pytest.raises(QueueError, match=named) as raised:
        Queue(**arguments)  # type: ignore[arg-type]
    assert isinstance(raised.value, taskloom.TaskloomError) and isinstance(raised.value, ValueError)


def test_one_name_declared_twice_with_other_limits_is_refused() -> None:
    Queue("twice", concurrency=3)
    assert Queue("twice", concurrency=3) == Queue("twice", concurrency=3)  # the same declaration is fine
    with pytest.raises(QueueError, match="'twice' is declared twice with different limits"):
        Queue("twice", concurrency=4)


def test_the_rate_limit_is_kept_as_a_count_and_seconds() -> None:
    assert Queue("rated", rate_limit=[5, 2]).rate_limit == (5, 2.0)


def test_a_worker_without_queue_flags_serves_the_default_queue_and_every_declared_one() -> None:
    served = served_queues()
    assert {DEFAULT_QUEUE, "limited", "one_each", "single_file"} <= set(served)
    assert served_queues(["b", "a", "b"]) == ["a", "b"]
    with pytest.raises(QueueError, match="--queue"):
        served_queues([""])


def test_a_start_on_a_declared_queue_queues_it_and_brings_its_limits_to_the_store(default: Store) -> None:
    handle = queueapp.job.start(0.0, queue="limited", priority=3)
    assert handle.status() == "queued"  # for a worker serving the queue, never run in this process
    assert default.list_queues() == [QueueRecord("limited", 2, None, 10, 1.0, queued=1)]
    assert default.claim_next_execution("w", 30.0, ["job"], queues=["default"]) is None
    claimed = default.claim_next_execution("w", 30.0, ["job"], queues=["limited"])
    assert claimed is not None and claimed.id == handle.execution_id


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"queue": ""}, "queue= must be a queue name"),
        ({"priority": 1.5}, "priority"),
        ({"priority": 2**40}, "priority"),
    ],
)
def test_a_bad_start_placement_is_refused_naming_it(default: Store, arguments: dict[str, object], named: str) -> None:
    with pytest.raises(QueueError, match=named):
        queueapp.job.start(0.0, **arguments)  # type: ignore[arg-type]
    assert default.list_executions() == []
