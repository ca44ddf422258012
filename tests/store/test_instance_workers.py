"""Contract of the served-targets registry (migration 004), on SQLite and PostgreSQL alike.

Instance workers register the task targets they serve; the server asks which targets a worker was seen
serving lately before it queues instances of them.
"""

from __future__ import annotations

import time

from taskloom.store import Store
from taskloom.store.instances import WORKER_SEEN_SECONDS, instance_queue_for


def test_a_registered_target_is_served_and_an_unknown_one_is_not(store: Store) -> None:
    queue = instance_queue_for(store)
    assert queue.served_targets(["app.tasks:a"], WORKER_SEEN_SECONDS) == set()
    queue.register_worker("w1", ["app.tasks:a", "app.tasks:b"])
    queue.register_worker("w1", ["app.tasks:a", "app.tasks:b"])  # a heartbeat: the same rows, renewed
    assert queue.served_targets(["app.tasks:a", "app.tasks:b", "app.tasks:c"], WORKER_SEEN_SECONDS) == {
        "app.tasks:a",
        "app.tasks:b",
    }
    assert queue.served_targets([], WORKER_SEEN_SECONDS) == set()


def test_a_worker_not_seen_within_the_window_serves_nothing(store: Store) -> None:
    queue = instance_queue_for(store)
    queue.register_worker("w1", ["app.tasks:a"])
    seen = time.time()
    # A window that ends before the registration: the worker was last seen longer ago than that.
    assert queue.served_targets(["app.tasks:a"], -1.0) == set()
    assert queue.served_targets(["app.tasks:a"], time.time() - seen + WORKER_SEEN_SECONDS) == {"app.tasks:a"}


def test_a_stopped_worker_serves_nothing_while_another_still_serves_its_targets(store: Store) -> None:
    queue = instance_queue_for(store)
    queue.register_worker("w1", ["app.tasks:a", "app.tasks:b"])
    queue.register_worker("w2", ["app.tasks:a"])
    queue.unregister_worker("w1")
    assert queue.served_targets(["app.tasks:a", "app.tasks:b"], WORKER_SEEN_SECONDS) == {"app.tasks:a"}
    queue.unregister_worker("w2")
    assert queue.served_targets(["app.tasks:a"], WORKER_SEEN_SECONDS) == set()
