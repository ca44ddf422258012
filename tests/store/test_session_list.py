"""Contract of ``InstanceQueue.list_sessions`` (the dashboard's sessions page), on SQLite and PostgreSQL."""

from __future__ import annotations

from taskloom.store import Store
from taskloom.store.instances import NewInstance, instance_queue_for


def queue(store: Store, session_id: str, *instance_ids: str, name: str | None = None) -> None:
    instance_queue_for(store).add_instances(
        [
            NewInstance(iid, session_id, name or session_id, "work", "app:work", 1, '{"args":[],"kwargs":{}}')
            for iid in instance_ids
        ]
    )


def test_sessions_are_listed_newest_first_with_their_counts(store: Store) -> None:
    queue(store, "s-old", "a1", "a2", name="nightly")
    queue(store, "s-new", "b1")
    instances = instance_queue_for(store)
    instances.request_stop("a1", cancel=True)  # a queued instance cancelled: finished

    sessions = instances.list_sessions(10)

    assert [(s.id, s.name, s.instances, s.unfinished) for s in sessions] == [
        ("s-new", "s-new", 1, 1),
        ("s-old", "nightly", 2, 1),
    ]
    assert sessions[0].created_at >= sessions[1].created_at


def test_the_session_list_stops_at_its_limit(store: Store) -> None:
    for n in range(3):
        queue(store, f"s-{n}", f"i-{n}")

    assert len(instance_queue_for(store).list_sessions(2)) == 2
    assert instance_queue_for(store).list_sessions(5)[-1].id == "s-0"
